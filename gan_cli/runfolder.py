"""The run folder: which folder a run writes to, and everything it writes there.

One object picks, adopts or refuses a folder (the one place that decides whether a
folder "already holds a run"), writes metrics.csv, the mass CSVs, summary.json,
checkpoints and the final pictures atomically (train.log is the console's), and
cleans up after a single run that failed before it got going.
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from gan_cli.errors import UserError
from gan_cli.files import atomic_write, write_json

# Hydra's run folder is outputs/<day>/<time with microseconds>-<this tag>: the process's
# id and a random suffix, drawn once per process, keep two runs apart even when they
# start in the same microsecond on a cluster's shared disk (the time first: sortable)
PROCESS_TAG = f"{os.getpid()}{secrets.token_hex(2)}"


def holds_a_run(folder: str | Path) -> bool:
    """Whether a folder already holds a run: it has a checkpoint to continue from."""
    return (Path(folder) / "checkpoints" / "last.pt").is_file()


def same_run(cfg: DictConfig, saved: DictConfig) -> bool:
    """Whether cfg is the config a checkpoint was written with (resume= aside)."""
    ours, theirs = (OmegaConf.to_container(c, resolve=True) for c in (cfg, saved))
    return {**ours, "resume": None} == {**theirs, "resume": None}


class RunFolder:
    """outputs/<day>/<time>/ (or the folder Hydra was told): what a run writes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints, self.plots = self.path / "checkpoints", self.path / "plots"
        self._csv = None  # metrics.csv, open while the run trains
        self._writer: Optional[csv.DictWriter] = None

    @classmethod
    def open(cls, cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str],
             warn: Callable[[str], None]) -> tuple["RunFolder", DictConfig, Optional[dict]]:
        """The folder a run writes to, its config, and the checkpoint it continues from.

        resume= continues that run in its own folder with its own config (of the
        command line's `overrides` only train.steps, device and threads change it). A
        fresh run's folder that already holds a run (a requeued cluster job, a reused
        hydra.run.dir) is continued when the config is the same and refused otherwise:
        nothing is ever overwritten.
        """
        from gan_cli.checkpoint import load_checkpoint, load_for_resume, run_config, \
            run_folder_of  # (torch: not needed by the CLI's folder-naming resolvers)

        if not cfg.resume and holds_a_run(run_dir):
            if not same_run(cfg, run_config(load_checkpoint(run_dir), run_dir)):
                raise UserError(f"{run_dir} already holds a run with another config; choose a "
                                f"new folder, or resume={run_dir} to continue that one")
            cfg.resume, overrides = str(run_dir), ()
            warn(f"{run_dir} already holds this run: continuing it")
        if not cfg.resume:
            return cls(run_dir), cfg, None
        resumed, cfg = load_for_resume(cfg.resume, cfg, overrides, warn=warn)
        return cls(run_folder_of(cfg.resume)), cfg, resumed

    def create(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.plots.mkdir(exist_ok=True)

    # ------------------------------------------------------------ metrics
    def start_metrics(self, columns: Sequence[str], rows: list[dict]) -> None:
        """metrics.csv holds exactly the checkpoint's rows, then grows: rows written after
        the checkpoint by a run that was then killed are dropped, not duplicated."""
        self._csv = open(self.path / "metrics.csv", "w", newline="")
        self._writer = csv.DictWriter(self._csv, fieldnames=list(columns), restval="",
                                      extrasaction="ignore")  # mode_mass: its own CSV
        self._writer.writeheader()
        self.append_metrics(rows)

    def append_metrics(self, rows: list[dict]) -> None:
        self._writer.writerows(rows)
        self._csv.flush()

    def close_metrics(self) -> None:
        if self._csv is not None:
            self._csv.close()

    def write_mass(self, rows: list[dict], mass_key: str, keys: Sequence[str]) -> None:
        """<mass_key>.csv: per evaluation (and replica) a histogram's shares — each mode's
        share of high-quality samples (mode_mass), or each class's (class_mass)."""
        mass = [([r[k] for k in keys], r[mass_key]) for r in rows if mass_key in r]
        prefix = mass_key.removesuffix("_mass")
        header = ",".join([*keys, *(f"{prefix}_{k}" for k in range(len(mass[0][1])))])
        lines = [header] + [",".join([*map(str, key), *(f"{m:.6g}" for m in ms)])
                            for key, ms in mass]
        atomic_write(self.path / f"{mass_key}.csv",
                     lambda tmp: tmp.write_text("\n".join(lines) + "\n"))

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)

    # ------------------------------------------------------------ checkpoints and pictures
    def save(self, state: dict, step: int, periodic: bool, keep: Optional[int]) -> None:
        """checkpoints/last.pt and, periodic, checkpoints/step_NNNNNNN.pt (the newest `keep`)."""
        from gan_cli.checkpoint import prune_checkpoints, save_checkpoint

        if periodic:
            save_checkpoint(state, self.checkpoints / f"step_{step:07d}.pt")
            prune_checkpoints(self.checkpoints, keep)
        save_checkpoint(state, self.checkpoints / "last.pt")

    def frame(self, step: int) -> Path:
        """The picture of what G makes at an evaluation step."""
        return self.plots / f"samples_{step:07d}.png"

    def frames(self) -> list[Path]:
        """The evaluation pictures written so far, in order (the training.gif's frames)."""
        return sorted(self.plots.glob("samples_*.png"))

    # ------------------------------------------------------------ failure
    def record_failure(self, message: str, in_sweep: bool) -> None:
        """After a run failed before it got going: a sweep job's folder keeps a summary
        saying why; a single run leaves no folder behind that holds nothing but Hydra's
        record."""
        path = self.path
        if not (path / ".hydra").is_dir() or any(p.name != ".hydra" for p in path.iterdir()):
            return  # a run that got going wrote its own summary; a resumed run's is its own
        if in_sweep:
            self.write_summary({"status": "failed", "step": 0, "error": message})
            return
        shutil.rmtree(path)
        if path.resolve().parent.parent.name == "outputs":  # outputs/<day>/<time>: the day's
            with contextlib.suppress(OSError):  # folder goes if that run was its only one
                path.parent.rmdir()  # (never a folder the user chose, like the current one)
