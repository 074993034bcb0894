"""Studies that re-run the experiments of the source documents and write their reports."""

from __future__ import annotations

import contextlib
import csv
import io
import platform
import time
from pathlib import Path

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


def machine() -> str:
    """The machine a report's numbers come from, in one line."""
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
            f"threads, torch {torch.__version__}")
