"""Live views of a run beside the always-on metrics.csv / summary.json / plots.

A logger is picked with `logger=<name>` (conf/logger/); each is a small class
with the calls the loop makes: `scalars` (a metrics.csv row), `picture` (an
evaluation picture), `finish` (the config, the final metrics and, given the run
folder, its pictures, GIF and summary.json), and a `location` saying where it
wrote, for summary.json.
"""

from __future__ import annotations

import glob
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from gan_cli.errors import UserError

# summary.json's status -> the process exit code (cli.py's EXIT_CODES), told to W&B
EXIT_CODES = {"completed": 0, "diverged": 1, "failed": 2, "interrupted": 130}
# summary.json's status -> MLflow's run status
MLFLOW_STATUS = {"completed": "FINISHED", "diverged": "FAILED", "failed": "FAILED",
                 "interrupted": "KILLED"}


class TensorBoardLogger:
    """Event files in <run>/<subdir>: scalars, evaluation pictures, histograms, hparams."""

    def __init__(self, run_dir: str | Path, subdir: str = "tb", start_step: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("logger=tensorboard: the tensorboard package is not installed; "
                            "pip install 'gan-cli[tensorboard]', or use logger=none") from None
        # purge_step: a resumed run hides the events a killed run wrote after its checkpoint
        self.log_dir = Path(run_dir).resolve() / subdir
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=start_step or None)

    @property
    def location(self) -> dict[str, str]:
        """Where the events went (summary.json's `logger`)."""
        return {"logger": "tensorboard", "dir": str(self.log_dir)}

    def scalars(self, row: dict[str, Any]) -> None:
        """One metrics.csv row: every number in it, at its step."""
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, row["step"])
            elif isinstance(value, list):  # e.g. mode_mass: one curve per mode
                for i, v in enumerate(value):
                    self.writer.add_scalar(f"{key}/{i}", v, row["step"])

    def picture(self, tag: str, png: Path, samples: torch.Tensor, step: int) -> None:
        """An evaluation picture, and for 1-D data a histogram of G's samples (N, 1)."""
        from PIL import Image

        with Image.open(png) as image:
            self.writer.add_image(tag, np.asarray(image.convert("RGB")), step,
                                  dataformats="HWC")
        if samples.shape[1] == 1:
            self.writer.add_histogram("generated", samples[:, 0].cpu(), step)

    def finish(self, hparams: dict[str, Any], metrics: dict[str, float],
               run_dir: Optional[Path] = None) -> None:
        """The run's settings and final metrics (TensorBoard's HParams view), then close.
        (The run folder's files need no upload: the events are beside them.)"""
        if metrics:
            self.writer.add_hparams(hparams, {f"final/{k}": v for k, v in metrics.items()},
                                    run_name=".")
        self.writer.close()


def flat_hparams(config: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted keys with values TensorBoard's HParams accepts (numbers, strings, booleans)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_hparams(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is not None:
            flat[name] = str(value)  # lists: compared as text
    return flat


def numbers_of(row: dict[str, Any]) -> dict[str, float]:
    """A metrics.csv row's numbers by name, lists (e.g. mode_mass) as key/0, key/1, ..."""
    numbers: dict[str, float] = {}
    for key, value in row.items():
        if key == "step":
            continue
        if isinstance(value, (int, float)):
            numbers[key] = float(value)
        elif isinstance(value, list):
            numbers.update({f"{key}/{i}": float(v) for i, v in enumerate(value)})
    return numbers


def sweep_of_this_job() -> Optional[str]:
    """Hydra's sweep folder when this run is a job of a `-m` sweep; None otherwise
    (a single run, or train() called from Python)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None


def run_name_of(run_dir: Path) -> str:
    """A sweep job by its overrides (e.g. 'loss=wgan,seed=1'), a single run by its folder."""
    from hydra.core.hydra_config import HydraConfig

    if sweep_of_this_job() is not None:
        return HydraConfig.get().job.override_dirname or run_dir.name
    return run_dir.name


# what a tracker keeps of a finished run folder (glob patterns inside it)
FINISHED_RUN_FILES = ("summary.json", "metrics.csv", "train.log", "plots/*.png", "plots/*.gif")


def finished_run_files(run_dir: Path) -> list[Path]:
    """The files of FINISHED_RUN_FILES that the run folder holds."""
    return [Path(p) for pattern in FINISHED_RUN_FILES
            for p in sorted(glob.glob(str(run_dir / pattern)))]


def status_of(run_dir: Optional[Path]) -> str:
    """summary.json's status (completed when there is no run folder to read it from)."""
    try:
        return json.loads((run_dir / "summary.json").read_text())["status"]
    except (TypeError, OSError, ValueError, KeyError):
        return "completed"


class MLflowLogger:
    """One MLflow run per gan_cli run: the metrics.csv series as metrics, the flattened
    config as params, the pictures, GIF and summary.json as artifacts.

    tracking_uri None: $MLFLOW_TRACKING_URI, else a SQLite store mlflow.db in the working
    directory with artifacts in mlruns/ beside it (`mlflow ui` started there shows them).
    experiment None: the sweep folder for the jobs of a -m sweep, else "gan-train".
    """

    RUN_DIR_TAG = "gan_cli.run_dir"  # finds the MLflow run of a resumed run folder

    def __init__(self, run_dir: str | Path, start_step: int = 0,
                 tracking_uri: Optional[str] = None, experiment: Optional[str] = None):
        try:
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UserError("logger=mlflow: the mlflow package is not installed; "
                            "pip install 'gan-cli[mlflow]', or use logger=none") from None
        self.run_dir = Path(run_dir).resolve()
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
        self.experiment = experiment or sweep_of_this_job() or "gan-train"
        self.uploaded: set[Path] = set()
        try:
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            earlier = self._run_of_this_folder() if start_step else None
            if earlier is not None:  # a resumed run continues its MLflow run, where it is
                run = earlier
                self.run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
                self.experiment = self.client.get_experiment(self.experiment_id).name
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                self.experiment_id = self._experiment_id()
                run = self.client.create_run(
                    self.experiment_id, run_name=run_name_of(self.run_dir),
                    tags={self.RUN_DIR_TAG: str(self.run_dir)})
                self.run_id = run.info.run_id
            self.artifact_uri = run.info.artifact_uri
        except MlflowException as e:
            raise UserError(f"logger.tracking_uri={self.tracking_uri}: MLflow cannot use it "
                            f"({str(e).splitlines()[0]})") from None

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment)
        except MlflowException:  # another job of the sweep created it meanwhile
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def _run_of_this_folder(self) -> Optional[Any]:
        """The MLflow run this run folder started (in whichever experiment), or None."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        runs = self.client.search_runs(
            experiments, f"tags.`{self.RUN_DIR_TAG}` = '{self.run_dir}'", max_results=1,
            order_by=["attributes.start_time DESC"]) if experiments else []
        return runs[0] if runs else None

    @property
    def location(self) -> dict[str, str]:
        """Where the run went (summary.json's `logger`)."""
        return {"logger": "mlflow", "tracking_uri": self.tracking_uri,
                "experiment": self.experiment, "experiment_id": self.experiment_id,
                "run_id": self.run_id, "artifact_uri": self.artifact_uri}

    def scalars(self, row: dict[str, Any]) -> None:
        """One metrics.csv row: every number in it, at its step."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(key, value, now, row["step"]) for key, value in numbers_of(row).items()])

    def picture(self, tag: str, png: Path, samples: torch.Tensor, step: int) -> None:
        """An evaluation picture, uploaded at once to the run's plots/ artifacts."""
        self._upload(Path(png))

    def _upload(self, path: Path) -> None:
        """A file of the run folder, to the same place among the run's artifacts."""
        path = path.resolve()
        inside = path.parent != self.run_dir and path.parent.is_relative_to(self.run_dir)
        folder = path.parent.relative_to(self.run_dir).as_posix() if inside else None
        self.client.log_artifact(self.run_id, str(path), folder)
        self.uploaded.add(path)

    def finish(self, hparams: dict[str, Any], metrics: dict[str, float],
               run_dir: Optional[Path] = None) -> None:
        """The config as params, the final metrics as final/<name>; given the run folder,
        its files (finished_run_files) as artifacts and its status as the run's."""
        from mlflow.entities import Metric, Param

        # a param cannot change: a resumed run keeps the values its first start logged
        logged = self.client.get_run(self.run_id).data.params
        params = [Param(k, str(v)[:6000]) for k, v in hparams.items() if k not in logged]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a call
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(f"final/{k}", float(v), now, 0) for k, v in metrics.items()])
        if run_dir is not None:
            for path in finished_run_files(Path(run_dir).resolve()):
                if path not in self.uploaded:  # the evaluation frames went up already
                    self._upload(path)
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status_of(run_dir),
                                                                  "FINISHED"))


class WandbLogger:
    """One Weights & Biases run per gan_cli run, its files in <run folder>/wandb/: the
    metrics.csv series, the evaluation pictures (and for 1-D data a histogram of G's
    samples), the flattened config, and at the end the pictures, GIF and summary.json.

    mode None: $WANDB_MODE, else online when this machine is logged in to W&B, else
    offline (`wandb sync <run folder>/wandb/offline-run-*` uploads it later).
    group None: the sweep folder for the jobs of a -m sweep, else no group.
    """

    def __init__(self, run_dir: str | Path, start_step: int = 0, project: str = "gan-cli",
                 entity: Optional[str] = None, group: Optional[str] = None,
                 mode: Optional[str] = None):
        try:
            import wandb
        except ImportError:
            raise UserError("logger=wandb: the wandb package is not installed; "
                            "pip install 'gan-cli[wandb]', or use logger=none") from None
        self.wandb = wandb
        self.run_dir = Path(run_dir).resolve()
        mode = mode or os.environ.get("WANDB_MODE") or (
            "online" if wandb.login(prompt=False, verify=False) else "offline")
        earlier = self._run_id_of_this_folder() if start_step else None
        self.run_dir.mkdir(parents=True, exist_ok=True)  # wandb writes into it at once
        try:
            self.run = wandb.init(
                project=project, entity=entity, group=group or sweep_of_this_job(),
                name=run_name_of(self.run_dir), dir=str(self.run_dir), mode=mode,
                id=earlier, resume="allow" if earlier and mode == "online" else None,
                reinit="create_new",  # sweep jobs one after another in one process
                settings=wandb.Settings(console="off"))  # the console is in train.log
        except wandb.errors.Error as e:
            raise UserError(f"logger=wandb: W&B cannot start a run ({e})") from None

    def _run_id_of_this_folder(self) -> Optional[str]:
        """The id of the W&B run a resumed run folder started (its wandb/ folder names it)."""
        runs = sorted(glob.glob(str(self.run_dir / "wandb" / "*run-*-*")))
        return Path(runs[-1]).name.rsplit("-", 1)[1] if runs else None

    @property
    def location(self) -> dict[str, Optional[str]]:
        """Where the run went (summary.json's `logger`)."""
        return {"logger": "wandb", "mode": self.run.settings.mode, "project": self.run.project,
                "entity": self.run.entity or None, "group": self.run.group or None,
                "run_id": self.run.id, "dir": str(Path(self.run.dir).parent.resolve()),
                "url": self.run.url}

    def scalars(self, row: dict[str, Any]) -> None:
        """One metrics.csv row: every number in it, at its step."""
        self.run.log(numbers_of(row), step=row["step"])

    def picture(self, tag: str, png: Path, samples: torch.Tensor, step: int) -> None:
        """An evaluation picture, and for 1-D data a histogram of G's samples (N, 1)."""
        data = {tag: self.wandb.Image(str(png))}
        if samples.shape[1] == 1:
            data["generated"] = self.wandb.Histogram(samples[:, 0].cpu().numpy())
        self.run.log(data, step=step)

    def finish(self, hparams: dict[str, Any], metrics: dict[str, float],
               run_dir: Optional[Path] = None) -> None:
        """The config, the final metrics as final/<name>; given the run folder, its files
        (finished_run_files) and its exit code; then close the run."""
        self.run.config.update(hparams, allow_val_change=True)
        self.run.summary.update({f"final/{k}": v for k, v in metrics.items()})
        if run_dir is not None:
            run_dir = Path(run_dir).resolve()
            for pattern in FINISHED_RUN_FILES:  # one call (and one line from W&B) a pattern
                if glob.glob(str(run_dir / pattern)):
                    self.run.save(str(run_dir / pattern), base_path=str(run_dir), policy="now")
        self.run.finish(exit_code=EXIT_CODES.get(status_of(run_dir), 0))
