"""What a run needs to know about the Hydra launcher that started it.

- how many torch threads it may use, so that parallel sweep jobs share the cores
  instead of each taking all of them;
- whether a stop signal came from submitit (SLURM pre-emption or time-out), so
  that after our own checkpoint submitit can requeue the job.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Optional, Sequence

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


def run_threads(cfg: Any, overrides: Sequence[str]) -> Optional[int]:
    """The `threads` setting of the run about to start: a resumed run's own (read from its
    folder's .hydra/config.yaml, without torch), unless the command line gives threads=."""
    given = any(o.split("=", 1)[0].lstrip("+~") == "threads" for o in overrides)
    if not cfg.get("resume") or given:
        return cfg.get("threads")
    from omegaconf import OmegaConf

    from gan_cli.checkpoint import run_folder_of

    saved = run_folder_of(cfg.resume) / ".hydra" / "config.yaml"
    if not saved.is_file():
        return cfg.get("threads")
    return OmegaConf.load(saved).get("threads")


def set_torch_threads(threads: Optional[int], launcher: Any) -> None:
    """Apply the `threads` config key (null = auto) before training starts: for null, the
    share of the cores the launcher leaves this run (fit_threads_to_model then narrows it
    to the network's size once the networks are built)."""
    check_threads(threads)
    n = threads if threads is not None else auto_threads(launcher, available_cores())
    if n is not None:
        import torch

        torch.set_num_threads(n)


# The rule for threads=null (docs/sweeps.md, "Launchers and threads"): the mixtures' MLPs (G and D together:
# 34,000 weights for the default run, 291,000 for grid25_best) do each matmul in
# microseconds, so a second intra-op thread only adds synchronisation, and on a shared
# machine it waits for a busy core (issue 26: 2-106 steps/s with 2 threads against
# 300-480 with 1). The image models (mnist_mlp, dcgan: millions) keep the cores.
SMALL_NETWORK_WEIGHTS = 500_000  # G + D weights (times train.replicas) below which: 1 thread


def auto_threads_for_model(n_weights: int, share: int) -> int:
    """threads=null once the networks are built: 1 for small networks, else the share of
    the cores this run may use (set by set_torch_threads from the launcher)."""
    return 1 if n_weights < SMALL_NETWORK_WEIGHTS else max(1, share)


def fit_threads_to_model(threads: Optional[int], n_weights: int) -> str:
    """Apply the network-size rule for threads=null (an explicit `threads` is kept) and
    return the console line that says what was picked and why.

    n_weights: the weights of G and D together, times train.replicas (all are trained in
    one batched computation, so their matmuls are that much larger)."""
    import torch

    if threads is not None:  # (the CLI has set it before torch started; gan_cli.run has not)
        torch.set_num_threads(threads)
        return f"torch threads: {threads} (threads={threads})"
    share = torch.get_num_threads()
    n = auto_threads_for_model(n_weights, share)
    torch.set_num_threads(n)
    if n_weights < SMALL_NETWORK_WEIGHTS:
        why = (f"G and D have {n_weights:,} weights, under {SMALL_NETWORK_WEIGHTS:,}: more "
               "threads would only add contention")
    else:
        why = f"G and D have {n_weights:,} weights: the {share} core(s) this run may use"
    return f"torch threads: {n} (threads=null: {why}; threads=N sets it)"


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
