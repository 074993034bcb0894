"""What a run needs to know about the Hydra launcher that started it.

- how many torch threads it may use, so that parallel sweep jobs share the cores
  instead of each taking all of them;
- whether a stop signal came from submitit (SLURM pre-emption or time-out), so
  that after our own checkpoint submitit can requeue the job.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Optional

from gan_cli.config import check_threads

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def available_cores() -> int:
    """CPUs this process may run on (a SLURM or taskset allocation, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def joblib_workers(n_jobs: int, cores: int) -> int:
    """joblib's n_jobs as a number of processes: -1 = one per core, -2 = all but one, ..."""
    return max(1, cores + 1 + n_jobs) if n_jobs < 0 else max(1, n_jobs)


def auto_threads(launcher: Any, cores: int) -> Optional[int]:
    """The torch thread count for threads=null, given the launcher's config node; None keeps
    torch's default (a single run, or the basic launcher's one job at a time)."""
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if target.endswith("JoblibLauncher"):  # n_jobs processes share this machine's cores
        return max(1, cores // joblib_workers(int(launcher.get("n_jobs", -1)), cores))
    if target.endswith(("SlurmLauncher", "LocalLauncher")):  # hydra-submitit-launcher
        cpus = launcher.get("cpus_per_task")
        if cpus:  # SLURM allocates (and submitit_local is told) this many per job
            return int(cpus)
        # submitit_local starts every job at once on this machine: one thread each is the
        # share that never oversubscribes; on SLURM the job's allocation is what it may use
        return 1 if target.endswith("LocalLauncher") else cores
    return None


def set_torch_threads(threads: Optional[int], launcher: Any) -> None:
    """Apply the `threads` config key (null = auto) before training starts."""
    check_threads(threads)
    n = threads if threads is not None else auto_threads(launcher, available_cores())
    if n is not None:
        import torch

        torch.set_num_threads(n)


def hand_over_to_submitit(stop_signal: Optional[str]) -> None:
    """After a run stopped on submitit's pre-emption / time-out signal and saved its checkpoint,
    call submitit's own handler for that signal, which requeues the job (a requeued job
    continues from checkpoints/last.pt) and exits. Outside a submitit job, nothing happens."""
    if stop_signal is None or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    try:
        from submitit import JobEnvironment

        requeue_signal = JobEnvironment._usr_sig()  # USR2 unless SUBMITIT_PREEMPT_SIGNAL says
    except (ImportError, RuntimeError):
        return
    if requeue_signal.name != stop_signal:
        return  # SIGTERM / SIGINT: a cancelled job stays stopped
    handler = signal.getsignal(requeue_signal)
    if callable(handler):
        handler(requeue_signal, None)
