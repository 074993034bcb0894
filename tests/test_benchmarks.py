"""The benchmarks' fast modes run end to end and print their ratios (no timing thresholds:
speed goals live in benchmarks/, measured against a reference in the same run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(*args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / args[0]), *args[1:]],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def assert_both_sides_and_ratio(out: str, unit: str) -> None:
    for name in ("gan-train", "reference"):
        assert re.search(rf"^  {name} +\d+ {unit} in training +[\d.]+ s wall +\d+ MB peak$",
                         out, re.M), name
    assert re.search(rf"ratio \(gan-train / reference\): {unit} \d+\.\d\dx", out)


def test_the_toy_benchmark_fast_mode_prints_both_sides_and_the_ratio():
    out = run_benchmark("toy.py", "--fast", "--mode", "eager")
    assert "toy, 200 steps, batch 64, sgd, 1 thread(s), median of 1:" in out
    assert_both_sides_and_ratio(out, "steps/s")


def test_the_mnist_benchmark_fast_mode_prints_both_sides_and_the_ratio():
    out = run_benchmark("mnist.py", "--fast", "--mode", "eager")
    assert "MNIST mlp, 2000 images, 20 steps, batch 100, 1 thread(s), median of 1:" in out
    assert_both_sides_and_ratio(out, "images/s")


def test_the_startup_benchmark_times_help_and_the_smoke_run():
    out = run_benchmark("startup.py", "--fast")
    for name, target in (("gan-train --help", "1.5"), ("gan-train experiment=smoke", "10")):
        assert re.search(rf"^  {re.escape(name)} +[\d.]+ s wall +\d+ MB peak +\((within|over) "
                         rf"the {target} s target\)$", out, re.M), name


@pytest.mark.slow  # trains the digit classifier once (a minute or two) and six short runs
def test_the_mnist_precision_benchmark_compares_bf16_with_fp32():
    out = run_benchmark("mnist.py", "--model", "dcgan", "--precision", "--fast")
    for name in ("bf16", "fp32"):
        assert re.search(rf"^  {name} +\d+ images/s in training", out, re.M), name
    assert re.search(r"ratio \(bf16 / fp32\): images/s \d+\.\d\dx \(target >= 1\.4\)", out)
    assert re.search(r"seed 0:  fp32: fd [\d.]+ classes \d+/10   bf16: fd [\d.]+ classes", out)
