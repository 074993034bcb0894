"""Studies that re-run the experiments of the source documents and write their reports."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import torch


def run_replicas(overrides: list[str], seeds: int, steps: int,
                 run_dir: Path) -> tuple[dict, list[dict], float]:
    """Train one config for seeds 0..seeds-1 as one batched run (train.replicas) on the CPU,
    quietly; returns its summary, its evaluation rows (metrics.csv) and the seconds taken."""
    from hydra import compose, initialize_config_module

    from gan_cli.config import register_configs
    from gan_cli.train import train

    register_configs()
    overrides = [*overrides, f"train.replicas={seeds}", f"train.steps={steps}", "device=cpu",
                 "print_config=false", "eval.plot_every=null", "eval.plots=false"]
    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the console's lines
        summary = train(cfg, run_dir)
    seconds = time.perf_counter() - start
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["w1"]]  # evaluation rows
    return summary, rows, seconds


def finished_summary(folder: Path, steps: int) -> Optional[dict]:
    """The summary of the run in folder if it finished: diverged, or completed at `steps`;
    else None."""
    path = folder / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    done = summary["status"] == "diverged" or (summary["status"] == "completed" and
                                               summary["step"] == steps)
    return summary if done else None


def run_seeds(overrides: list[str], seeds: int, steps: int, run_dir: Path,
              jobs: int, reuse: bool = False) -> list[dict]:
    """Train one config for seeds 0..seeds-1 as separate runs, `jobs` at a time, each a
    gan-train process with one CPU thread; returns their summaries (each records when it
    started and ended). reuse: a seed whose run in run_dir has finished (finished_summary)
    is read back instead of trained, so a study stopped part-way continues where it was.

    For networks wide enough that a step is arithmetic rather than overhead, batched
    replicas gain nothing (grid25_best: 10 replicas 17 replica-steps/s, one run alone 28
    steps/s), and separate processes use every core."""
    def one(seed: int) -> dict:
        folder = run_dir / f"seed_{seed}"
        earlier = finished_summary(folder, steps) if reuse else None
        if earlier is not None:
            return earlier
        command = [sys.executable, "-c", "import sys; from gan_cli.cli import train_main; "
                   "sys.exit(train_main())", *overrides, f"seed={seed}",
                   f"train.steps={steps}", "device=cpu", "threads=1", "print_config=false",
                   "eval.plots=false", f"hydra.run.dir={folder}"]
        folder.mkdir(parents=True, exist_ok=True)
        log = folder.with_suffix(".log")
        with open(log, "w") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
        # exit code 1 is a diverged run, a result; anything else (a refused config, a
        # crash) leaves no summary of this run, only perhaps an earlier one's
        if done.returncode not in (0, 1):
            raise RuntimeError(f"seed {seed} failed (exit code {done.returncode}): see {log}")
        return json.loads((folder / "summary.json").read_text())

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, range(seeds)))


def machine(threads: bool = True) -> str:
    """The machine a report's numbers come from, in one line (threads: this process's
    torch threads, for reports whose runs train in it)."""
    name = platform.processor() or platform.machine()
    used = f", {torch.get_num_threads()} torch threads" if threads else ""
    return f"{name}{used}, torch {torch.__version__}"
