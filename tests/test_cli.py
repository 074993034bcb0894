"""The installed console scripts, run as a user runs them: as subprocesses, from a scratch folder."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SMOKE = ["experiment=smoke", "device=cpu"]


def script(name: str) -> str:
    """The console script installed beside this Python (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


def run(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([script(args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One `gan-train experiment=smoke` in a scratch folder; returns (process, run folder)."""
    cwd = tmp_path_factory.mktemp("smoke")
    proc = run(["gan-train", *SMOKE], cwd)
    day = next((cwd / "outputs").iterdir())
    return proc, next(day.iterdir())


def test_smoke_run_writes_a_complete_run_folder(smoke_run):
    proc, run_dir = smoke_run
    assert proc.returncode == 0, proc.stderr
    assert "completed:" in proc.stdout and "w1" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 200
    assert summary["metrics"]["n_modes"] == 3
    assert summary["metrics"]["modes_covered"] >= 2  # it learns, even in 200 steps
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "train.log", "metrics.csv",
                 "checkpoints/last.pt", "checkpoints/step_0000100.pt",
                 "checkpoints/step_0000200.pt", "plots/losses.png", "plots/training.gif",
                 "plots/samples_0000200.png"):
        assert (run_dir / name).is_file(), name
    assert "experiment=smoke" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    # train.log mirrors the console's plain lines (not a TTY here)
    log = (run_dir / "train.log").read_text()
    assert "step 100/200" in proc.stdout and "step 100/200" in log


def test_sample_writes_npy_and_png(smoke_run, tmp_path):
    _, run_dir = smoke_run
    proc = run(["gan-sample", f"ckpt={run_dir}", "n=123", "out=s.npy", "device=cpu"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (123, 1) and np.isfinite(x).all()
    proc = run(["gan-sample", f"ckpt={run_dir}/checkpoints/step_0000100.pt", "n=500",
                "out=pic.png", "device=cpu"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pic.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pic.png", "s.npy"]  # nothing else


@pytest.mark.parametrize("args, must_say", [
    (["ckpt=nowhere", "out=s.npy"], "ckpt=nowhere"),
    (["out=s.txt"], "out=s.txt"),
])
def test_sample_errors_are_one_line(smoke_run, tmp_path, args, must_say):
    _, run_dir = smoke_run
    args = [a if not a.startswith("out") else a for a in args]
    if not any(a.startswith("ckpt=") for a in args):
        args.append(f"ckpt={run_dir}")
    proc = run(["gan-sample", *args], tmp_path)
    assert proc.returncode == 2
    assert must_say in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    proc = run(["gan-sample", f"ckpt={bad}", "out=s.npy"], tmp_path)
    assert proc.returncode == 2
    assert "bad.pt: not a readable gan_cli checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("override, must_say", [
    ("train.stepz=10", "stepz"),                    # a misspelt key
    ("data=nosuchdata", "nosuchdata"),              # an unknown group option
    ("optim.generator.lr=-1", "optim.generator.lr=-1"),
    ("data.stds=0", "data.stds"),
    ("train.steps=many", "train.steps"),            # a wrong type
    ("optim/schedule=null", "pick one of its options (e.g. optim/schedule=constant)"),
    ("loss=wgan optim=adam", "loss=wgan clips the critic's weights"),  # a bad combination
])
def test_user_errors_exit_2_with_one_line(tmp_path, override, must_say):
    proc = run(["gan-train", *SMOKE, *override.split()], tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("gan-train: error: ")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert must_say in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_diverged_run_exits_1_and_keeps_a_loadable_checkpoint(tmp_path):
    # D's lr 1e6: its weights reach 1e6 in one step and G's gradient overflows in the next
    proc = run(["gan-train", *SMOKE, "optim.discriminator.lr=1e6", "train.log_every=1",
                "train.ckpt_every=1", "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    message = ("training diverged: grad_norm_g is inf at step 2; checkpoints/last.pt (step 1) "
               "is the last good state")
    assert message in proc.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["error"] == message
    sampled = run(["gan-sample", "ckpt=run", "n=10", "out=s.npy"], tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    assert np.isfinite(np.load(tmp_path / "s.npy")).all()


def test_runs_started_together_get_their_own_folders(tmp_path):
    procs = [subprocess.Popen([script("gan-train"), *SMOKE, "train.steps=2", "eval.plots=false"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    folders = [d for day in (tmp_path / "outputs").iterdir() for d in day.iterdir()]
    assert len(folders) == 2
    assert all(json.loads((d / "summary.json").read_text())["step"] == 2 for d in folders)


def test_hydra_flags_keep_working(tmp_path):
    proc = run(["gan-train", "--help"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("gan-train: train a GAN")
    assert "bimodal, evenly_spaced, fashion_mnist, grid25, image_folder, mnist, points, ring8, " \
        "trimodal, unimodal" in proc.stdout
    proc = run(["gan-sample", "--help"], tmp_path)
    assert proc.returncode == 0 and "ckpt=<run folder or .pt>" in proc.stdout
    proc = run(["gan-train", "--cfg", "job", "data=bimodal"], tmp_path)
    assert proc.returncode == 0 and "- -2.0" in proc.stdout
    assert not (tmp_path / "outputs").exists()


def test_the_quick_help_leaves_other_flags_and_bad_overrides_to_hydra():
    from gan_cli.help import quick_help

    assert quick_help("train", ["-m", "seed=1,2", "--help"]) is None
    assert quick_help("train", ["--config-dir", "mine", "--help"]) is None
    assert quick_help("train", ["data=no_such_preset", "--help"]) is None
    assert quick_help("train", ["data=ring8"]) is None  # no --help: a run
    assert quick_help("train", ["--help", "--cfg", "job"]) is None
    assert quick_help("train", ["data=ring8", "--help", "seed=3"]) is None  # Hydra refuses it
    assert quick_help("train", ["--help", "hydra.help.template=$FLAGS_HELP"]) is None


def test_user_config_dir(tmp_path):
    (tmp_path / "mine" / "data").mkdir(parents=True)
    (tmp_path / "mine" / "data" / "far.yaml").write_text(
        "defaults:\n  - base_gaussian\n  - _self_\nmeans: [-10.0, 10.0]\nstds: 1.0\n")
    proc = run(["gan-train", "--config-dir", "mine", "data=far", *SMOKE, "train.steps=2",
                "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["metrics"]["n_modes"] == 2


def test_package_is_imported_from_an_install_not_the_checkout():
    # the README's test command installs the package (not editable), so these tests
    # check the wheel's contents, configs included
    import gan_cli

    if os.environ.get("CI"):  # CI runs the README's command: a real install, not editable
        assert "site-packages" in Path(gan_cli.__file__).resolve().parts
    conf = Path(gan_cli.__file__).parent / "conf"
    assert (conf / "train.yaml").is_file() and (conf / "data" / "trimodal.yaml").is_file()


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    proc = subprocess.Popen([script("gan-train"), *SMOKE, "train.steps=1000000", "train.log_every=10",
                             "hydra.run.dir=run"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):  # training has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 10 <= summary["step"] < 1000000
    from gan_cli.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "run")["step"] == summary["step"]


def test_a_failing_job_does_not_sink_a_sweep(tmp_path):
    proc = run(["gan-train", "-m", *SMOKE, "train.steps=2", "eval.plots=false",
                "print_config=false", "seed=0,1", "data.stds=0.5,0"], tmp_path)
    assert proc.returncode == 2  # some job failed
    assert "#3 : " in proc.stdout  # Hydra announced every job
    jobs = sorted((tmp_path / "outputs" / "multirun").glob("*/*/[0-9]*"))
    statuses = {}
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        overrides = (job / ".hydra" / "overrides.yaml").read_text().splitlines()
        stds = next(o.split("=")[1] for o in overrides if "data.stds=" in o)
        statuses[job.name] = (stds, summary["status"])
        if summary["status"] == "failed":
            assert summary["error"] == "data.stds=0: every std must be > 0"
    assert sorted(statuses.values()) == [("0", "failed"), ("0", "failed"),
                                         ("0.5", "completed"), ("0.5", "completed")]


def test_run_folder_names_carry_the_process_tag_after_the_time():
    """Two processes starting in the same microsecond (a cluster's array job on a shared
    disk) still get different folders: the name ends with the process's id and a random
    suffix, after the time, so folders still sort by time."""
    import os
    import re

    from hydra import compose, initialize_config_module

    from gan_cli import cli  # registers the folder-naming resolvers
    from gan_cli.runfolder import PROCESS_TAG

    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    run_dir = str(cfg.hydra.run.dir)
    assert PROCESS_TAG.startswith(str(os.getpid())) and len(PROCESS_TAG) > len(str(os.getpid()))
    assert re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}-" + PROCESS_TAG, run_dir)
    assert str(cfg.hydra.sweep.dir).endswith(PROCESS_TAG)
    assert cli.PROCESS_TAG == PROCESS_TAG
