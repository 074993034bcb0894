"""Nothing lost: exact resume after SIGKILL, SIGTERM, corrupt checkpoints, a full disk."""

import errno
import json
import signal
import subprocess
import time

import pytest
import torch

from conftest import compose_train
from gan_cli.checkpoint import load_checkpoint, load_for_resume
from gan_cli.errors import UserError
from test_cli import SMOKE, run, script

# 600 steps, a checkpoint every 50, rows every 10 (plots off: only speed differs)
SHORT = [*SMOKE, "train.steps=600", "train.log_every=10", "train.eval_every=100",
         "train.ckpt_every=50", "eval.plots=false", "eval.n_samples=1000"]


def start(tmp_path, *overrides, folder="run"):
    return subprocess.Popen([script("gan-train"), *SHORT, *overrides, f"hydra.run.dir={folder}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")


def test_sigkill_then_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path):
    whole = start(tmp_path, folder="whole")
    killed = start(tmp_path, folder="killed")
    # kill it some time after its second checkpoint, mid-interval
    wait_for(tmp_path / "killed" / "checkpoints" / "step_0000100.pt", killed)
    time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL  # killed mid-run, not after finishing
    assert whole.wait(timeout=300) == 0
    resumed_from = load_checkpoint(tmp_path / "killed")["step"]
    assert 100 <= resumed_from < 600

    proc = run(["gan-train", "resume=killed"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"resumed at step {resumed_from}" in proc.stdout

    a, b = (load_checkpoint(tmp_path / d) for d in ("whole", "killed"))
    assert a["step"] == b["step"] == 600
    for key in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d", "schedulers",
                "eval_z", "rng", "rng_eval", "health"):
        assert_same_tensors(a[key], b[key], key)
    # the curves continue: no duplicated, missing or different rows
    assert (tmp_path / "whole" / "metrics.csv").read_text() == \
        (tmp_path / "killed" / "metrics.csv").read_text()
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["metrics"] == {k: a["final_metrics"][k] for k in summary["metrics"]}


def test_sigterm_saves_and_resume_continues_exactly(tmp_path):
    # 2-D data and dropout: evaluation's random projections and dropout's draws must not
    # shift the training random stream, wherever the stop lands
    extra = ["data=ring8", "model.discriminator.dropout=0.2", "train.ema=null"]
    whole = start(tmp_path, *extra, folder="whole")
    proc = start(tmp_path, *extra)
    wait_for(tmp_path / "run" / "checkpoints" / "step_0000050.pt", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    stopped = summary["step"]
    assert summary["status"] == "interrupted" and 50 <= stopped < 600
    assert summary["resume_command"] == f"gan-train resume={(tmp_path / 'run').resolve()}"
    assert load_checkpoint(tmp_path / "run")["step"] == stopped
    assert "SIGTERM: stopped at step" in (tmp_path / "run" / "train.log").read_text()

    proc = run(["gan-train", "resume=run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"resumed at step {stopped}" in proc.stdout
    assert whole.wait(timeout=300) == 0
    a, b = (load_checkpoint(tmp_path / d) for d in ("whole", "run"))
    for key in ("generator", "discriminator", "opt_g", "opt_d", "rng", "rng_eval"):
        assert_same_tensors(a[key], b[key], key)
    assert (tmp_path / "whole" / "metrics.csv").read_text() == \
        (tmp_path / "run" / "metrics.csv").read_text()


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    proc = run(["gan-train", *SHORT, "train.steps=100", "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated, as by a crash mid-copy

    # naming the file itself: a clear one-line error, nothing written
    before = (tmp_path / "run" / "metrics.csv").read_text()
    proc = run(["gan-train", f"resume={last}"], tmp_path)
    assert proc.returncode == 2
    assert "last.pt: not a readable gan_cli checkpoint" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert (tmp_path / "run" / "metrics.csv").read_text() == before

    # naming the run folder: documented fallback to the newest readable step_*.pt
    proc = run(["gan-train", "resume=run", "train.steps=120"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stdout and "resuming from step_0000100.pt (step 100)" in proc.stdout
    assert load_checkpoint(tmp_path / "run")["step"] == 120


def test_resume_keeps_the_runs_config(tmp_path):
    proc = run(["gan-train", *SHORT, "train.steps=50", "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0
    proc = run(["gan-train", "resume=run", "data=bimodal"], tmp_path)
    assert proc.returncode == 2
    assert "data=bimodal: a resumed run keeps its own config" in proc.stderr
    proc = run(["gan-train", "resume=run", "train.steps=20"], tmp_path)
    assert proc.returncode == 2 and "already at step 50" in proc.stderr
    # the original .hydra record is not replaced by the resume command's
    proc = run(["gan-train", "resume=run", "train.steps=60"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resume" not in (tmp_path / "run" / ".hydra" / "overrides.yaml").read_text()
    assert load_checkpoint(tmp_path / "run")["config"]["data"]["means"] == [-4.0, 0.0, 4.0]
    # how it runs may change: compiled or eager (as device= and threads=)
    asked = compose_train([*SMOKE, "data=bimodal", "train.compile=true"])
    _, run_cfg = load_for_resume(str(tmp_path / "run"), asked, ["train.compile=true"])
    assert run_cfg.train.compile is True and run_cfg.data.means == [-4.0, 0.0, 4.0]


def test_keep_checkpoints_prunes_old_periodic_ones(run_tiny):
    _, run_dir = run_tiny("train.ckpt_every=10", "train.keep_checkpoints=2")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == \
        ["last.pt", "step_0000050.pt", "step_0000060.pt"]


def test_full_disk_keeps_the_previous_checkpoint(run_tiny, tmp_path, monkeypatch):
    real_save, saves = torch.save, []

    def save_until_disk_full(state, path):
        saves.append(path)
        if len(saves) > 2:  # step_30 and last.pt go through; step_60 finds the disk full
            with open(path, "wb") as f:
                f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(state, path)

    monkeypatch.setattr(torch, "save", save_until_disk_full)
    with pytest.raises(UserError, match="the disk is full.*previous checkpoint is intact"):
        run_tiny("train.ckpt_every=30")
    monkeypatch.setattr(torch, "save", real_save)
    ckpts = tmp_path / "run" / "checkpoints"
    assert load_checkpoint(ckpts / "last.pt")["step"] == 30
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.pt", "step_0000030.pt"]  # no .tmp
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "disk is full" in summary["error"]


def test_a_folder_that_holds_a_run_is_continued_or_refused_never_overwritten(tmp_path):
    # a requeued cluster job, or a reused hydra.run.dir, lands in a folder holding a run
    command = ["gan-train", *SHORT, "train.steps=100", "hydra.run.dir=run"]
    assert run(command, tmp_path).returncode == 0
    record = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes((tmp_path / "run" / "checkpoints" / "step_0000050.pt").read_bytes())
    proc = run(command, tmp_path)  # the same config: continues from step 50, as if requeued
    assert proc.returncode == 0, proc.stderr
    assert "already holds this run: continuing it" in proc.stdout
    assert "resumed at step 50" in proc.stdout
    assert load_checkpoint(tmp_path / "run")["step"] == 100
    before = (tmp_path / "run" / "metrics.csv").read_text()

    proc = run([*command[:-1], "data=bimodal", "hydra.run.dir=run"], tmp_path)  # another config
    assert proc.returncode == 2
    assert "already holds a run with another config" in proc.stderr
    assert (tmp_path / "run" / "metrics.csv").read_text() == before
    assert (tmp_path / "run" / ".hydra" / "config.yaml").read_text() == record


def test_a_resumed_run_applies_its_own_threads_setting(tmp_path):
    """threads decides speed (and, on the CPU, bit-exactness): a resumed run keeps the
    setting it was started with, read from its folder before torch starts a thread pool."""
    from omegaconf import OmegaConf

    from gan_cli.launchers import run_threads

    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"threads": 1, "seed": 0}),
                   tmp_path / "run" / ".hydra" / "config.yaml")
    command_line = OmegaConf.create({"threads": None, "resume": str(tmp_path / "run")})
    assert run_threads(command_line, ["resume=x"]) == 1
    command_line.threads = 2  # given on the resume command line: that one
    assert run_threads(command_line, ["resume=x", "threads=2"]) == 2
    fresh = OmegaConf.create({"threads": 3, "resume": None})
    assert run_threads(fresh, []) == 3
