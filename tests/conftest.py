"""Shared helpers: compose the real config with Hydra's compose API and run the real train()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from gan_cli.config import register_configs

register_configs()

# a run small enough for a unit test: a few hundred steps of the smoke experiment on the CPU
TINY = ["experiment=smoke", "device=cpu", "train.steps=60", "train.log_every=20",
        "train.eval_every=30", "train.ckpt_every=30", "eval.n_samples=500"]


def compose_train(overrides: list[str] = ()) -> DictConfig:
    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def run_sample(ckpt, out, *overrides: str):
    """gan-sample ckpt=... out=... on the CPU; returns the path written."""
    from gan_cli.sample import sample

    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        return sample(compose("sample", overrides=[f"ckpt={ckpt}", f"out={out}", "device=cpu",
                                                   *overrides]))


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test, as gan-train's threads=null picks for networks this
    small (a second thread only contends); the previous count back afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_tiny(tmp_path: Path, capsys):
    """Run train() on the tiny config plus overrides; returns (summary, run_dir)."""
    from gan_cli.train import train

    def run(*overrides: str, run_dir: Path | None = None):
        run_dir = run_dir or tmp_path / "run"
        summary = train(compose_train(TINY + list(overrides)), run_dir)
        assert json.loads((run_dir / "summary.json").read_text()) == summary
        return summary, run_dir

    return run
