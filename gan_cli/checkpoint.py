"""Checkpoints: written atomically, loaded without executing code from the file."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from gan_cli.config import UserError


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it over `path`.

    A crash or a full disk mid-write leaves the previous file untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its checkpoints/last.pt."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "checkpoints" / "last.pt"
    if not p.is_file():
        raise UserError(f"ckpt={path}: no checkpoint there (expected a .pt file or a run folder "
                        "with checkpoints/last.pt)")
    return p


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True (tensors and plain containers only, no code)."""
    p = resolve_checkpoint(path)
    try:
        state = torch.load(p, map_location=device, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{p}: not a readable gan_cli checkpoint ({reason[:200]})")
    if not isinstance(state, dict) or "generator" not in state or "config" not in state:
        raise UserError(f"{p}: not a gan_cli checkpoint (no generator weights or config)")
    return state
