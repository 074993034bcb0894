"""Where and how a run was made: versions, machine, command and times (summary.json's manifest)."""

from __future__ import annotations

import platform
import shlex
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch

import gan_cli


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit() -> Optional[str]:
    """The commit gan_cli's code comes from: the checkout it runs from (an editable install),
    or, for a package installed with `pip install .` from a clone, that clone when the
    command runs inside it and its gan_cli/ holds the installed files unchanged. None when
    no checkout vouches for the code (a wheel from elsewhere, or edited since)."""
    package = Path(gan_cli.__file__).resolve().parent
    if "site-packages" not in package.parts:
        return _head(package.parent)
    checkout = _toplevel(Path.cwd())
    if checkout is None or not _same_files(package, checkout / "gan_cli"):
        return None
    return _head(checkout)


def _git(folder: Path, *args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _toplevel(folder: Path) -> Optional[Path]:
    top = _git(folder, "rev-parse", "--show-toplevel")
    return Path(top) if top else None


def _head(checkout: Path) -> Optional[str]:
    if not (checkout / ".git").exists():  # a folder (or a worktree's .git file) of its own
        return None
    return _git(checkout, "rev-parse", "HEAD")


def _same_files(installed: Path, source: Path) -> bool:
    """Every .py and .yaml file of the installed package is byte-identical in source."""
    files = [f for pattern in ("*.py", "*.yaml") for f in installed.rglob(pattern)
             if "__pycache__" not in f.parts]
    return bool(files) and all((source / f.relative_to(installed)).is_file() and
                               (source / f.relative_to(installed)).read_bytes() == f.read_bytes()
                               for f in files)


def run_manifest(device: torch.device, device_description: str, started_at: str) -> dict:
    import hydra

    return {
        "gan_cli_version": gan_cli.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "hydra": hydra.__version__,
        "device": str(device),
        "device_name": device_description,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),  # CPU threads (config key threads)
        "host": socket.gethostname(),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started_at": started_at,
        "ended_at": None,  # set when the summary is written
    }
