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
    """The commit of the checkout gan_cli runs from; None when it is installed as a package."""
    checkout = Path(gan_cli.__file__).resolve().parent.parent
    if not (checkout / ".git").exists() or "site-packages" in checkout.parts:
        return None
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


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
