"""Console entry points `gan-train` and `gan-sample`: Hydra parses, train()/sample() work.

Heavy imports (torch, matplotlib) happen inside the task functions so that
`gan-train --help` stays quick.
"""

from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import hydra
from hydra._internal import utils as hydra_utils
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from gan_cli.config import register_configs
from gan_cli.errors import UserError
from gan_cli.exit_codes import EXIT_CODES, SWEEP_EXIT_CODES, exit_code, set_exit_code
from gan_cli.suggest import error_line
from gan_cli.runfolder import PROCESS_TAG, holds_a_run

register_configs()


def _resume_run_dir(resume: Optional[str], fresh: str) -> str:
    """hydra.run.dir: a resumed run continues in its own folder."""
    if resume is None:
        return fresh
    from gan_cli.checkpoint import run_folder_of

    if not Path(resume).expanduser().exists():
        raise UserError(f"resume={resume}: no such run folder or checkpoint file")
    return str(run_folder_of(resume))


# resolvers used by conf/train.yaml's hydra node (registered before Hydra composes)
OmegaConf.register_new_resolver("gan_run_dir", _resume_run_dir)


def _hydra_subdir(resume: Optional[str], output_dir: str) -> Optional[str]:
    """hydra.output_subdir: a folder that already holds a run (resumed, or a requeued
    cluster job's) keeps the .hydra/ record of the command that started it."""
    return None if resume is not None or holds_a_run(output_dir) else ".hydra"


OmegaConf.register_new_resolver("gan_hydra_subdir", _hydra_subdir)
OmegaConf.register_new_resolver("gan_process_tag", lambda: PROCESS_TAG)

class SweepInterrupted(KeyboardInterrupt):
    """A job of a sweep run by Hydra's basic launcher (one job after another, in this
    process) was stopped by a signal: the jobs after it must not start."""

    def __init__(self, signal_name: str, sweep_dir: str):
        super().__init__(signal_name)
        self.signal_name, self.sweep_dir = signal_name, sweep_dir


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def _train_task(cfg: DictConfig) -> Optional[float]:
    from gan_cli.device import prepare_deterministic_cuda

    # before anything can start CUDA: cuBLAS reads its workspace setting when it starts
    warning = prepare_deterministic_cuda(bool(cfg.get("deterministic")))
    if warning:
        print(f"gan-train: {warning}", file=sys.stderr)
    from gan_cli.launchers import BASIC_LAUNCHER, hand_over_to_submitit, run_threads, \
        set_torch_threads
    from gan_cli.runfolder import RunFolder
    from gan_cli.train import train

    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        # before torch starts its thread pool: a resumed run keeps its own setting
        set_torch_threads(run_threads(cfg, hydra_cfg.overrides.task), hydra_cfg.get("launcher"))
        summary = train(cfg, hydra_cfg.runtime.output_dir, overrides=hydra_cfg.overrides.task)
    except KeyboardInterrupt:
        # e.g. a Ctrl-C while a first classifier trains, before the run wrote anything: a
        # single run's folder holding only Hydra's record goes (a started run has its own)
        if not in_sweep and not cfg.resume:
            RunFolder(hydra_cfg.runtime.output_dir).record_failure("interrupted", in_sweep=False)
        raise
    except Exception as e:
        if not isinstance(e, UserError) and not in_sweep:
            if not cfg.resume:  # a crash before the run wrote anything leaves no folder either
                RunFolder(hydra_cfg.runtime.output_dir).record_failure(
                    f"{type(e).__name__}: {e}", in_sweep=False)
            raise  # a bug: Hydra shows the traceback
        # reported here, not raised, so that one bad job in a sweep does not stop the others
        if isinstance(e, UserError):
            _report("gan-train", e)
        else:  # a crash (a bug, out of memory, ...) in one job of a sweep: shown, recorded
            print(f"gan-train: job {hydra_cfg.job.num} crashed:", file=sys.stderr)
            traceback.print_exc()
            set_exit_code(EXIT_CODES["failed"])
        if not cfg.resume:  # a resumed run's folder is never touched
            RunFolder(hydra_cfg.runtime.output_dir).record_failure(
                str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}",
                in_sweep=in_sweep)
        return None
    status = summary["status"]
    set_exit_code((SWEEP_EXIT_CODES if in_sweep else EXIT_CODES)[status])
    if status == "interrupted":
        hand_over_to_submitit(summary.get("stop_signal"))  # requeue, if submitit's signal
        if in_sweep and hydra_cfg.launcher.get("_target_") == BASIC_LAUNCHER:
            raise SweepInterrupted(summary.get("stop_signal") or "a signal", hydra_cfg.sweep.dir)
    # what a sweeper (Optuna) minimises: a diverged run (or one whose replicas mostly
    # diverged: objective null) ranks last; a failed job has no value
    no_value = status == "diverged" or (status == "completed" and summary["objective"] is None)
    return float("inf") if no_value else summary["objective"]


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def _sample_task(cfg: DictConfig) -> None:
    from gan_cli.sample import sample

    try:
        sample(cfg)
    except UserError as e:
        _report("gan-sample", e)


def _report(program: str, e: UserError) -> None:
    print(f"{program}: error: {e}", file=sys.stderr)
    set_exit_code(EXIT_CODES["failed"])


@contextmanager
def _one_line_user_errors(program: str) -> Iterator[None]:
    """Report config, data and checkpoint errors as one stderr line with exit code 2.

    Hydra prints every error from composition or the task itself through
    hydra._internal.utils.run_and_report (multi-line, exit code 1); we wrap it
    and hand it everything that is not a user error, such as a bug's traceback.
    HYDRA_FULL_ERROR=1 keeps Hydra's full report.
    """
    original = hydra_utils.run_and_report

    def run_and_report(func):
        try:
            return func()
        except Exception as e:
            message = error_line(e)
            if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":

                def reraise():
                    raise e

                return original(reraise)
            print(f"{program}: error: {message}", file=sys.stderr)
            sys.exit(2)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def _quick_help_or_continue(config_name: str) -> None:
    """`--help` with overrides only: print the help and exit, without Hydra's slow path;
    `--version`: gan_cli's; an argparse-style `--steps 100`: the key=value it means."""
    from gan_cli.help import quick_help, version_text
    from gan_cli.suggest import flag_hint

    program, args = f"gan-{config_name}", sys.argv[1:]
    if "--version" in args:
        print(version_text(program))
        sys.exit(0)
    hint = flag_hint(program, config_name, args)
    if hint is not None:
        print(f"{program}: error: {hint}", file=sys.stderr)
        sys.exit(EXIT_CODES["failed"])
    text = quick_help(config_name, args)
    if text is not None:
        print(text)
        sys.exit(0)


def train_main() -> None:
    _quick_help_or_continue("train")
    try:
        with _one_line_user_errors("gan-train"):
            _train_task()
    except SweepInterrupted as e:  # Ctrl-C or SIGTERM stopped a job: summarise the jobs so far
        from gan_cli.sweep import report_sweep

        print(f"gan-train: sweep interrupted by {e.signal_name}; the jobs after it did not run",
              file=sys.stderr)
        report_sweep(Path(e.sweep_dir))
        sys.exit(EXIT_CODES["interrupted"])
    except KeyboardInterrupt:  # Ctrl-C between two jobs of a sweep
        print("gan-train: interrupted", file=sys.stderr)
        sys.exit(EXIT_CODES["interrupted"])
    sys.exit(exit_code())


def sample_main() -> None:
    _quick_help_or_continue("sample")
    with _one_line_user_errors("gan-sample"):
        _sample_task()
    sys.exit(exit_code())
