"""The benchmarks' fast modes run end to end and print their ratios (no timing thresholds:
speed goals live in benchmarks/, measured against a reference in the same run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_toy_benchmark_fast_mode_prints_both_sides_and_the_ratio():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "toy.py"), "--fast"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "toy, 200 steps, batch 64, 1 thread(s), median of 1:" in out
    for name in ("gan-train", "reference"):
        assert re.search(rf"^  {name} +\d+ steps/s in training +[\d.]+ s wall$", out, re.M), name
    assert re.search(r"ratio \(gan-train / reference\): steps/s \d+\.\d\dx", out)
