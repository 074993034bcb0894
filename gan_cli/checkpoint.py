"""Checkpoint files: written atomically, loaded without executing code from the file.

What a checkpoint holds is defined by the run state (state.py); this module reads
and writes the files and finds the one to resume from (the generators' states:
device.py).
"""

from __future__ import annotations

import errno
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_cli.config import TrainConfig
from gan_cli.errors import UserError
from gan_cli.files import atomic_write

# the only settings a resumed run may change: the rest is the run's own config
# what a resumed run may change: how long it runs and how (where, on how many threads,
# compiled or eager); everything that defines the run comes from its checkpoint
RESUMABLE_OVERRIDES = ("resume", "train.steps", "device", "threads", "train.compile")


def save_checkpoint(state: dict, path: Path) -> None:
    try:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise UserError(f"{path}: cannot write the checkpoint ({why}); the previous "
                        "checkpoint is intact") from None


def prune_checkpoints(folder: Path, keep: Optional[int]) -> None:
    """Delete all but the newest `keep` periodic step_*.pt files (None keeps all)."""
    if keep is None:
        return
    for old in sorted(folder.glob("step_*.pt"))[:-keep or None]:
        old.unlink(missing_ok=True)


# ---------------------------------------------------------------- loading
def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True (tensors and plain containers only, no code)."""
    p = resolve_checkpoint(path)
    try:
        state = torch.load(p, map_location=device, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError,
            OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        reason = reason.split(". ")[0]  # torch's first sentence says what is wrong
        raise UserError(f"{p}: not a readable gan_cli checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or "generator" not in state or "config" not in state:
        raise UserError(f"{p}: not a gan_cli checkpoint (no generator weights or config)")
    return state


def run_config(state: dict, source: str | Path) -> DictConfig:
    """The config a checkpoint was written with. Keys added to gan_cli since then take
    their defaults, which keep the behaviour of the version that wrote it."""
    try:
        return OmegaConf.merge(OmegaConf.structured(TrainConfig), state["config"])
    except OmegaConfBaseException as e:
        reason = str(e).splitlines()[0]
        raise UserError(f"{source}: the checkpoint's config does not fit this gan_cli "
                        f"({reason})") from None


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its checkpoints/last.pt."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "checkpoints" / "last.pt"
    if not p.is_file():
        raise UserError(f"ckpt={path}: no checkpoint there (expected a .pt file or a run folder "
                        "with checkpoints/last.pt)")
    return p


def load_weights(module: torch.nn.Module, weights: dict, what: str, source: Path | str) -> None:
    """load_state_dict, with a mismatch reported as one line naming the first bad tensor."""
    expected = module.state_dict()
    problems = [f"{name} is missing from the file" for name in expected if name not in weights]
    for name, tensor in weights.items():
        if name not in expected:
            problems.append(f"the file has an unexpected tensor {name}")
        elif tensor.shape != expected[name].shape:
            problems.append(f"{name} has shape {list(tensor.shape)} in the file but "
                            f"{list(expected[name].shape)} in the network")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{source}: {what} weights do not fit the network its config builds: "
                        f"{problems[0]}{more}")
    module.load_state_dict(weights)


def run_folder_of(resume: str | Path) -> Path:
    """The run folder of `resume=`: the folder itself, or the run a .pt file belongs to."""
    p = Path(resume).expanduser().resolve()
    if p.suffix != ".pt":
        return p
    if p.parent.name != "checkpoints":
        raise UserError(f"resume={resume}: a checkpoint file to resume from must lie in its "
                        "run folder's checkpoints/ (the run continues in that folder)")
    return p.parent.parent


def load_for_resume(resume: str, cfg: DictConfig, overrides: Sequence[str],
                    device: str | torch.device = "cpu",
                    warn: Callable[[str], None] = print) -> tuple[dict, DictConfig]:
    """The checkpoint to continue from and the run's own config (plus train.steps / device).

    A run folder means its newest readable checkpoint: last.pt, else (with a
    warning) the newest readable step_*.pt. A .pt file means exactly that file.
    """
    keys = {override.split("=", 1)[0].lstrip("+~"): override for override in overrides}
    for key, override in keys.items():
        if key not in RESUMABLE_OVERRIDES and not key.startswith("hydra."):
            raise UserError(f"{override}: a resumed run keeps its own config; only "
                            f"{', '.join(k + '=' for k in RESUMABLE_OVERRIDES)} may be given")
    p = Path(resume).expanduser()
    if p.is_file():
        state = load_checkpoint(p, device)
    elif p.is_dir():
        folder = p / "checkpoints"
        candidates = [folder / "last.pt"] + sorted(folder.glob("step_*.pt"), reverse=True)
        candidates = [c for c in candidates if c.is_file()]
        if not candidates:
            raise UserError(f"resume={resume}: not a gan_cli run folder (no checkpoints/last.pt "
                            "or checkpoints/step_*.pt in it)")
        state, problems = None, []
        for candidate in candidates:
            try:
                state = load_checkpoint(candidate, device)
                break
            except UserError as e:
                problems.append(str(e))
        if state is None:
            raise UserError(f"resume={resume}: no readable checkpoint; " + "; ".join(problems))
        if problems:
            warn(f"warning: {problems[0]}; resuming from {candidate.name} (step {state['step']})")
    else:
        raise UserError(f"resume={resume}: no such run folder or checkpoint file")

    run_cfg = run_config(state, resume)
    for key in RESUMABLE_OVERRIDES[1:]:
        if key in keys:
            OmegaConf.update(run_cfg, key, OmegaConf.select(cfg, key), merge=False)
    run_cfg.resume = str(resume)
    if run_cfg.train.steps < state["step"]:
        raise UserError(f"train.steps={run_cfg.train.steps}: the run is already at step "
                        f"{state['step']}; give more steps to extend it")
    return state, run_cfg
