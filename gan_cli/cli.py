"""Console entry points `gan-train` and `gan-sample`: Hydra parses, train()/sample() work.

Heavy imports (torch, matplotlib) happen inside the task functions so that
`gan-train --help` stays quick.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import hydra
from hydra._internal import utils as hydra_utils
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from gan_cli.config import UserError, register_configs
from gan_cli.errors import user_error_message

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
    holds_a_run = (Path(output_dir) / "checkpoints" / "last.pt").is_file()
    return None if resume is not None or holds_a_run else ".hydra"


OmegaConf.register_new_resolver("gan_hydra_subdir", _hydra_subdir)

# summary.json status -> process exit code (design.md, "Exit codes and errors")
EXIT_CODES = {"completed": 0, "diverged": 1, "failed": 2, "interrupted": 130}
_exit_code = 0


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def _train_task(cfg: DictConfig) -> Optional[float]:
    from gan_cli.train import record_failure, train

    hydra_cfg = HydraConfig.get()
    try:
        summary = train(cfg, hydra_cfg.runtime.output_dir, overrides=hydra_cfg.overrides.task)
    except UserError as e:
        # reported here, not raised, so that one bad job in a sweep does not stop the others
        _report("gan-train", e)
        if not cfg.resume:  # a resumed run's folder is never touched
            record_failure(hydra_cfg.runtime.output_dir, str(e),
                           in_sweep=hydra_cfg.mode == RunMode.MULTIRUN)
        return None
    _set_exit_code(EXIT_CODES[summary["status"]])
    return summary["objective"]


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def _sample_task(cfg: DictConfig) -> None:
    from gan_cli.sample import sample

    try:
        sample(cfg)
    except UserError as e:
        _report("gan-sample", e)


def _set_exit_code(code: int) -> None:
    global _exit_code
    _exit_code = max(_exit_code, code)


def _report(program: str, e: UserError) -> None:
    print(f"{program}: error: {e}", file=sys.stderr)
    _set_exit_code(EXIT_CODES["failed"])


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
            message = user_error_message(e)
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


def train_main() -> None:
    with _one_line_user_errors("gan-train"):
        _train_task()
    sys.exit(_exit_code)


def sample_main() -> None:
    with _one_line_user_errors("gan-sample"):
        _sample_task()
    sys.exit(_exit_code)
