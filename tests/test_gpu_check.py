"""benchmarks/gpu_check.py: its CPU mode runs end to end (so the GPU check cannot rot), and
the pieces it is built from count what they claim to."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_value_reads_are_counted_on_any_device():
    x = torch.arange(4.0)
    with gpu_check.ScalarReads() as reads:
        x.sum().item()
        float(x[1])
        y = x * 2  # no read
        if y[0] == 0:
            pass
    assert reads.count == 3


def test_variants_are_run_only_where_the_config_has_their_key():
    assert gpu_check.has_key("train.steps") and gpu_check.has_key("deterministic")
    assert not gpu_check.has_key("train.no_such_key")


def test_weights_differences():
    a = {"w": torch.tensor([1.0, 2.0])}
    assert gpu_check.max_difference(a, {"w": torch.tensor([1.0, 2.0])}) == 0.0
    assert gpu_check.max_difference(a, {"w": torch.tensor([1.0, 2.5])}) == 0.5


@pytest.mark.slow  # a minute or two: ~20 tiny runs
def test_the_cpu_mode_writes_the_table(tmp_path):
    out = tmp_path / "check.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    table = out.read_text()
    assert table.startswith("# GPU check, ")
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and
            not line.startswith("| check")]
    assert len(rows) == 19 and not any("FAILED" in line for line in table.splitlines())
    syncs = {r[1]: r[2] for r in rows if r[0] == "| host syncs per step"}
    assert syncs["default"] == "0 value reads"
    assert syncs["unrolled"] == "6 value reads"  # float(Adam's step) per D parameter
    for variant, key in (("compiled", "train.compile"), ("bf16", "train.precision")):
        if not gpu_check.has_key(key):
            assert f"| steps/s | toy, {variant} | skipped: no {key} in the config |" in table
    assert re.search(r"\| steps/s \| MNIST DCGAN, eager, cpu \| [\d.e+-]+ \|", table)
    for check in ("| resume | 4 steps vs stopped at 2 and resumed, cpu | bit-identical | ok |",
                  "| gan-sample device=cpu | from the resume check's run | (64, 1) samples | ok |",
                  "| deterministic=true | conditional DCGAN, two runs, cpu | bit-identical | ok |",
                  "| deterministic=true | classifier training, two runs, cpu | bit-identical | ok |"):
        assert check in table
