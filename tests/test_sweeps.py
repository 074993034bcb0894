"""Sweeps (docs/sweeps.md): the exit code and summary of a sweep, its launchers (joblib,
submitit's local executor, the SLURM presets), Optuna, gan-report and thread pinning."""

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from test_cli import SMOKE, run, script

from gan_cli.errors import UserError
from gan_cli.launchers import auto_threads, available_cores, set_torch_threads
from gan_cli.sweep import summarise

# a job of a few seconds: the tiny smoke run, evaluated once at the end, no pictures
QUICK = [*SMOKE, "train.steps=20", "train.eval_every=null", "eval.n_samples=500",
         "eval.plots=false", "print_config=false"]


def sweep_dir(cwd: Path) -> Path:
    (folder,) = (cwd / "outputs" / "multirun").glob("*/*")
    return folder


def summary_rows(folder: Path) -> list[dict]:
    with open(folder / "sweep_summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def job_summary(folder: Path, job: str) -> dict:
    return json.loads((folder / job / "summary.json").read_text())


def assert_rows_match_job_folders(folder: Path, rows: list[dict]) -> None:
    """Each CSV row says what its job's own summary.json says."""
    for row in rows:
        summary = job_summary(folder, row["job"])
        assert row["status"] == summary["status"]
        assert row["step"] == str(summary["step"])
        w1 = summary.get("metrics", {}).get("w1")
        assert row["w1"] == ("" if w1 is None else f"{w1:.6g}")
        assert row["error"] == summary.get("error", "")


# ---------------------------------------------------------------- one job never sinks a sweep
def test_a_sweep_runs_every_job_and_fails_only_for_a_failed_one(tmp_path):
    # job 1 has a bad value (a failure), job 2 a learning rate that makes the losses NaN
    proc = run(["gan-train", "-m", *QUICK, "optim.discriminator.lr=2e-4,-1,1e38"], tmp_path)
    assert proc.returncode == 2, proc.stderr  # because of the failed job, not the diverged one
    folder = sweep_dir(tmp_path)
    rows = summary_rows(folder)
    assert [(r["job"], r["optim.discriminator.lr"], r["status"]) for r in rows] == [
        ("0", "0.0002", "completed"), ("1", "-1", "failed"), ("2", "1e+38", "diverged")]
    assert_rows_match_job_folders(folder, rows)
    assert rows[1]["error"] == "optim.discriminator.lr=-1.0: must be a positive number"
    assert rows[2]["error"].startswith("training diverged:") and rows[2]["w1"] == ""
    assert float(rows[0]["w1"]) > 0 and rows[0]["error"] == ""
    # the table: one line per setting, with what happened to the jobs that did not complete
    table = proc.stdout[proc.stdout.index("sweep summary: 3 jobs"):]
    assert "1 failed" in table and "1 diverged" in table
    assert "job 1 failed: optim.discriminator.lr=-1.0: must be a positive number" in table
    assert (folder / "sweep_summary.png").read_bytes()[:4] == b"\x89PNG"


def test_a_replica_job_counts_as_one_row_per_seed(tmp_path):
    proc = run(["gan-train", "-m", *QUICK, "train.replicas=3", "seed=5",
                "optim.generator.lr=1e-3,1e-4"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = sweep_dir(tmp_path)
    rows = summary_rows(folder)
    assert [(r["job"], r["seed"], r["optim.generator.lr"]) for r in rows] == [
        (f"{job}.{k}", str(5 + k), lr) for job, lr in (("0", "0.001"), ("1", "0.0001"))
        for k in range(3)]
    for row in rows:
        job, k = row["job"].split(".")
        replica = job_summary(folder, job)["per_replica"][int(k)]
        assert row["w1"] == f"{replica['metrics']['w1']:.6g}"
    # grouped by learning rate, each group the 3 seeds of its job
    table = proc.stdout[proc.stdout.index(
        "sweep summary: 2 jobs (6 runs: train.replicas counted one by one)"):]
    assert table.count("│  3/3 │") == 2, table  # done: 3 of the 3 seeds in each group


def test_a_diverged_job_is_a_result_not_a_failure(tmp_path):
    # a single run that diverges exits 1 (test_cli); in a sweep it is a legitimate result
    proc = run(["gan-train", "-m", *QUICK, "optim.discriminator.lr=1e38"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in summary_rows(sweep_dir(tmp_path))] == ["diverged"]


def test_sigterm_stops_a_sweep_and_summarises_the_jobs_so_far(tmp_path):
    proc = subprocess.Popen([script("gan-train"), "-m", *QUICK, "train.steps=1000000",
                             "train.log_every=10", "seed=0,1"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("outputs/multirun/*/*/0/metrics.csv")) or list(
            tmp_path.glob("outputs/multirun/*/*/0/metrics.csv"))[0].read_text().count("\n") < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "sweep interrupted by SIGTERM; the jobs after it did not run" in err
    folder = sweep_dir(tmp_path)
    assert not (folder / "1").exists()  # the second job never started
    (row,) = summary_rows(folder)
    assert row["status"] == "interrupted" and int(row["step"]) >= 20
    assert job_summary(folder, "0")["stop_signal"] == "SIGTERM"
    assert "job 0 interrupted" in out


# ---------------------------------------------------------------- launchers
def test_joblib_runs_the_jobs_in_parallel_processes_with_their_share_of_the_cores(tmp_path):
    proc = run(["gan-train", "-m", *QUICK, "seed=0,1,2,3", "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = sweep_dir(tmp_path)
    rows = summary_rows(folder)
    assert [(r["seed"], r["status"]) for r in rows] == [(str(s), "completed") for s in range(4)]
    assert_rows_match_job_folders(folder, rows)
    assert len({r["w1"] for r in rows}) == 4  # four seeds, four results
    for row in rows:
        manifest = job_summary(folder, row["job"])["manifest"]
        assert manifest["torch_threads"] == max(1, available_cores() // 2)  # 2 jobs at a time
    # the table: the four seeds make one group, their w1 a mean ± std
    (group,) = summarise(folder).groups
    assert len(group.jobs) == group.count("completed") == 4
    assert "sweep summary: 4 jobs" in proc.stdout and "±" in proc.stdout


def submitit_jobs(tmp_path: Path) -> list[int]:
    """Process ids of the submitit jobs running below tmp_path (their command names it)."""
    pids = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "submitit.core._submit" in command and str(tmp_path) in command:
            pids.append(int(proc_dir.name))
    return pids


@pytest.mark.slow  # (tens of seconds: CI's suite stays under ~10 minutes)
def test_submitit_local_runs_each_job_as_its_own_process(tmp_path):
    proc = run(["gan-train", "-m", *QUICK, "seed=0,1,2,3", "hydra/launcher=submitit_local"],
               tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = sweep_dir(tmp_path)
    rows = summary_rows(folder)
    assert [(r["seed"], r["status"]) for r in rows] == [(str(s), "completed") for s in range(4)]
    assert_rows_match_job_folders(folder, rows)
    # every job ran in a process of its own, started by submitit, one torch thread each
    assert len(list((folder / ".submitit").glob("*/*_result.pkl"))) == 4
    assert {job_summary(folder, r["job"])["manifest"]["torch_threads"] for r in rows} == {1}


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the job in /proc")
@pytest.mark.slow  # (tens of seconds: CI's suite stays under ~10 minutes)
def test_submitit_requeues_a_job_stopped_by_sigusr2_and_it_continues(tmp_path):
    # SIGUSR2 is what SLURM (through submitit) sends before a time-out or a pre-emption
    proc = subprocess.Popen([script("gan-train"), "-m", *QUICK, "train.steps=2000",
                             "train.log_every=10", "hydra/launcher=submitit_local"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    metrics = None
    while metrics is None or metrics.read_text().count("\n") < 3:  # training has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
        metrics = next(tmp_path.glob("outputs/multirun/*/*/0/metrics.csv"), None)
    (job,) = submitit_jobs(tmp_path)
    os.kill(job, signal.SIGUSR2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    folder = sweep_dir(tmp_path)
    log = (folder / "0" / "train.log").read_text()
    stopped_at = int(log.split("SIGUSR2: stopped at step ")[1].split(",")[0])
    assert 0 < stopped_at < 2000
    assert f"resumed at step {stopped_at}" in log  # the requeued job, from last.pt
    summary = job_summary(folder, "0")
    assert summary["status"] == "completed" and summary["step"] == 2000
    steps = [row["step"] for row in csv.DictReader(open(folder / "0" / "metrics.csv"))]
    assert steps == [str(s) for s in range(10, 2001, 10)]  # nothing lost, nothing twice
    assert [r["status"] for r in summary_rows(folder)] == ["completed"]


def test_a_stop_on_a_logging_step_keeps_its_row_and_resumes_exactly(run_tiny, tmp_path,
                                                                      monkeypatch):
    # the signal lands during step 40, which writes a metrics.csv row: the run must write it
    # before it stops, or the resumed run never does (and averages 40 steps into row 60)
    from gan_cli.console import RunConsole

    whole, _ = run_tiny(run_dir=tmp_path / "whole")
    step = RunConsole.step

    def signal_at_40(self, n):
        if n == 40:
            os.kill(os.getpid(), signal.SIGTERM)
        step(self, n)

    monkeypatch.setattr(RunConsole, "step", signal_at_40)
    stopped, run_dir = run_tiny(run_dir=tmp_path / "stopped")
    assert (stopped["status"], stopped["step"]) == ("interrupted", 40)
    monkeypatch.setattr(RunConsole, "step", step)
    resumed, _ = run_tiny(run_dir=run_dir)  # a requeued job: same folder, same config
    assert (resumed["status"], resumed["step"]) == ("completed", 60)
    assert (run_dir / "metrics.csv").read_text() == (tmp_path / "whole/metrics.csv").read_text()
    assert resumed["metrics"] == whole["metrics"]


@pytest.mark.parametrize("preset, expected", [
    ("slurm_cpu", {"timeout_min": 60, "cpus_per_task": 2, "gpus_per_node": None,
                   "array_parallelism": 64}),
    ("slurm_gpu", {"timeout_min": 240, "cpus_per_task": 4, "gpus_per_node": 1,
                   "array_parallelism": 16}),
])
def test_slurm_presets_make_a_valid_sbatch_script(tmp_path, monkeypatch, preset, expected):
    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={preset}"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert {k: launcher[k] for k in expected} == expected
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s == 120  # requeued, warned
    # what hydra-submitit-launcher hands submitit (its launch()), as an sbatch script; submitit
    # only checks that srun exists
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    params = OmegaConf.to_container(launcher, resolve=False)
    params = {k: v for k, v in params.items() if k not in ("_target_", "submitit_folder", "name")}
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("gan-train", "uid")
    assert f"#SBATCH --time={expected['timeout_min']}" in sbatch
    assert f"#SBATCH --cpus-per-task={expected['cpus_per_task']}" in sbatch
    assert "#SBATCH --signal=USR2@120" in sbatch
    assert ("#SBATCH --gpus-per-node=1" in sbatch) == (expected["gpus_per_node"] == 1)


# ---------------------------------------------------------------- Optuna
def test_optuna_search_of_6_trials_reports_the_best_overrides(tmp_path):
    proc = run(["gan-train", "-m", "hparams_search=trimodal_optuna", "hydra.sweeper.n_trials=6",
                *QUICK], tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = sweep_dir(tmp_path)
    rows = summary_rows(folder)
    assert len(rows) == 6
    from omegaconf import OmegaConf

    result = OmegaConf.load(folder / "optimization_results.yaml")
    assert set(result.best_params) == {"optim.generator.lr", "optim.discriminator.lr", "loss"}
    assert result.best_params.loss in ("nonsaturating", "minimax", "maxlik")
    # Optuna minimised each job's objective, the final w1: its best is the sweep's lowest
    done = [r for r in rows if r["status"] == "completed"]
    best = min(done, key=lambda r: float(r["objective"]))
    assert result.best_value == pytest.approx(float(best["objective"]), rel=1e-5)
    assert best["loss"] == result.best_params.loss
    assert float(best["optim.generator.lr"]) == pytest.approx(
        result.best_params["optim.generator.lr"], rel=1e-6)
    assert f"best: job {best['job']} (" in proc.stdout


# ---------------------------------------------------------------- gan-report
def fake_sweep(folder: Path) -> None:
    """Six jobs of loss x seed as a cluster leaves them: one diverged, one killed."""
    w1 = {("minimax", 0): 0.30, ("minimax", 1): 0.50, ("minimax", 2): None,
          ("nonsaturating", 0): 0.10, ("nonsaturating", 1): 0.20, ("nonsaturating", 2): "killed"}
    for num, ((loss, seed), value) in enumerate(w1.items()):
        job = folder / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(
            f"- loss={loss}\n- seed={seed}\n- train.steps=100\n")
        if value == "killed":
            continue
        metrics = {} if value is None else {"w1": value, "hq_fraction": 0.9, "modes_covered": 3,
                                            "n_modes": 3, "mode_kl": 0.01}
        (job / "summary.json").write_text(json.dumps({
            "status": "diverged" if value is None else "completed", "step": 100,
            "metrics": metrics, "converged_at_step": 100 if value == 0.10 else None,
            "objective": value, "wall_time_s": 2.0 + num,
            **({"error": "training diverged: d_loss is nan"} if value is None else {})}))


def test_summarise_groups_by_the_swept_parameters_except_seed(tmp_path):
    fake_sweep(tmp_path)
    report = summarise(tmp_path)
    assert report.swept == ["loss", "seed"] and report.group_by == ["loss"]
    minimax, nonsat = report.groups
    assert minimax.params == {"loss": "minimax"} and nonsat.params == {"loss": "nonsaturating"}
    assert [j["status"] for j in minimax.jobs] == ["completed", "completed", "diverged"]
    assert [j["status"] for j in nonsat.jobs] == ["completed", "completed", "missing"]
    mean, std, n = minimax.stats["w1"]  # over the completed jobs only
    assert (mean, n) == (pytest.approx(0.4), 2) and std == pytest.approx(0.1414, abs=1e-4)
    assert nonsat.converged == 1 and minimax.converged == 0
    assert report.best()["job"] == "3"
    assert report.exit_code() == 0  # diverged and missing jobs are not failures


def test_gan_report_summarises_a_sweep_from_its_job_folders(tmp_path):
    fake_sweep(tmp_path / "sweep")
    proc = run(["gan-report", "sweep"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for text in ("sweep summary: 6 jobs", "minimax", "0.4±0.1", "1 diverged", "1 missing",
                 "best: job 3 (loss=nonsaturating seed=0), objective (final w1) 0.1",
                 "job 5 missing: no summary.json (killed, or still running)"):
        assert text in proc.stdout, text
    rows = summary_rows(tmp_path / "sweep")
    assert [(r["loss"], r["seed"], r["status"]) for r in rows][-2:] == [
        ("nonsaturating", "1", "completed"), ("nonsaturating", "2", "missing")]
    assert rows[0]["overrides"] == "loss=minimax seed=0 train.steps=100"
    assert "train.steps" not in rows[0]  # the same in every job: not a swept column
    assert (tmp_path / "sweep" / "sweep_summary.png").read_bytes()[:4] == b"\x89PNG"

    proc = run(["gan-report", "nowhere"], tmp_path)
    assert proc.returncode == 2 and proc.stderr == "gan-report: error: nowhere: no such folder\n"


def test_a_sweep_of_image_runs_reports_the_image_metrics(tmp_path, capsys):
    """Image jobs have fd, not w1: the table, CSV, best line and plot use their metrics."""
    from gan_cli.sweep import print_table, write_csv

    for num, (lr, fd) in enumerate([("1e-4", 40.0), ("2e-4", 25.0)]):
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- optim.generator.lr={lr}\n")
        (job / "summary.json").write_text(json.dumps({
            "status": "completed", "step": 50, "converged_at_step": None, "objective": fd,
            "wall_time_s": 3.0, "metrics": {"fd": fd, "classifier_score": 7.5,
                                            "classes_covered": 9, "n_classes": 10,
                                            "class_kl": 0.05}}))
    report = summarise(tmp_path)
    assert report.metrics[0] == "fd" and report.best()["job"] == "1"
    print_table(report)
    out = capsys.readouterr().out
    assert "objective (final fd) 25" in out and "classes" in out and "9 of 10" in out
    assert "spread" not in out and "not completed" not in out  # no such metric; all completed
    write_csv(report, tmp_path / "sweep_summary.csv")
    assert [r["fd"] for r in summary_rows(tmp_path)] == ["40", "25"]


def test_unlabelled_image_jobs_with_inception_weights_show_features_fid_and_kid(tmp_path):
    for num, fid in enumerate([80.0, 60.0]):
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- seed={num}\n")
        (job / "summary.json").write_text(json.dumps({
            "status": "completed", "step": 50, "converged_at_step": None, "objective": 2.0,
            "wall_time_s": 3.0, "metrics": {"fd": 2.0, "precision": 0.5, "recall": 0.4,
                                            "density": 0.8, "coverage": 0.3, "bin_kl": 0.2,
                                            "fid": fid, "kid": fid / 1000, "kid_std": 0.01}}))
    report = summarise(tmp_path)
    assert report.metrics == ["fd", "precision", "recall", "density", "coverage", "bin_kl",
                              "fid", "kid"]
    assert report.groups[0].stats["fid"][:2] == (70.0, pytest.approx(14.142, abs=1e-3))


def test_a_sweep_of_point_set_runs_reports_the_point_metrics(tmp_path):
    """data=points jobs have no modes: the table and CSV show w1, energy and the k-NN metrics."""
    import numpy as np

    angle = np.random.default_rng(0).uniform(0, np.pi, 400)
    np.save(tmp_path / "arc.npy", np.c_[np.cos(angle), np.sin(angle)])
    proc = run(["gan-train", "-m", "data=points", f"data.path={tmp_path / 'arc.npy'}",
                "device=cpu", "train.steps=20", "train.eval_every=null", "eval.plots=false",
                "print_config=false", "eval.knn_k=3", "optim.generator.lr=1e-3,2e-3"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = sweep_dir(tmp_path)
    rows = summary_rows(folder)
    for row in rows:
        metrics = job_summary(folder, row["job"])["metrics"]
        for key in ("w1", "energy", "precision", "recall", "density", "coverage", "bin_kl"):
            assert row[key] == f"{metrics[key]:.6g}", key
        assert "hq_fraction" not in row and "fd" not in row  # mixture / image metrics: none
    table = proc.stdout[proc.stdout.index("sweep summary: 2 jobs"):]
    heading = next(line for line in table.splitlines() if "prec" in line)
    for name in ("w1", "energy", "prec", "recall", "dens", "cover", "bin_kl"):
        assert name in heading, name
    assert "objective (final w1)" in table and "modes" not in heading


# ---------------------------------------------------------------- threads and plugins
@pytest.mark.parametrize("launcher, cores, threads", [
    (None, 8, None),  # a single run: torch's default
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8, None),
    ({"_target_": "x.JoblibLauncher", "n_jobs": 2}, 8, 4),
    ({"_target_": "x.JoblibLauncher", "n_jobs": -1}, 8, 1),  # one job per core
    ({"_target_": "x.JoblibLauncher", "n_jobs": -5}, 8, 2),  # 4 jobs
    ({"_target_": "x.JoblibLauncher", "n_jobs": 16}, 8, 1),
    ({"_target_": "x.LocalLauncher", "cpus_per_task": None}, 8, 1),  # submitit_local: all at once
    ({"_target_": "x.SlurmLauncher", "cpus_per_task": 6}, 8, 6),
    ({"_target_": "x.SlurmLauncher", "cpus_per_task": None}, 8, 8),  # what SLURM gave the job
])
def test_auto_threads(launcher, cores, threads):
    assert auto_threads(launcher, cores) == threads


def test_threads_must_be_positive():
    import torch

    before = torch.get_num_threads()
    try:
        set_torch_threads(1, None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UserError, match=r"^threads=0: must be a positive integer, or null"):
        set_torch_threads(0, None)


@pytest.mark.parametrize("override, group, name, says", [
    ("hydra/launcher=joblib", "launcher", "joblib.yaml", "hydra/launcher=joblib comes from the "
     "Hydra plugin hydra-joblib-launcher"),
    ("hydra/launcher=slurm_cpu", "launcher", "submitit_slurm.yaml", "hydra-submitit-launcher"),
    ("hparams_search=trimodal_optuna", "sweeper", "optuna.yaml", "hydra-optuna-sweeper"),
])
def test_a_missing_plugin_is_named_with_its_install(override, group, name, says):
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from gan_cli.suggest import error_line

    Plugins.instance()  # the installed plugins register their configs; hide one of them
    configs = ConfigStore.instance().repo["hydra"][group]
    hidden = configs.pop(name)
    try:
        with pytest.raises(Exception) as caught:
            with initialize_config_module("gan_cli.conf", version_base="1.3"):
                compose("train", overrides=[override], return_hydra_config=True)
    finally:
        configs[name] = hidden
    message = error_line(caught.value)
    assert says in message and message.endswith('pip install "gan-cli[sweeps]"')


@pytest.mark.parametrize("n_weights, share, picked", [
    (33_794, 2, 1),        # the default run's MLPs: one thread
    (291_076, 2, 1),       # grid25_best's wider ones too
    (33_794 * 64, 8, 8),   # 64 replicas of the default in one batched computation: the share
    (1_500_000, 4, 4),     # mnist_mlp-sized: the cores the launcher leaves the run
    (1_500_000, 1, 1),     # a parallel sweep job's single core
])
def test_threads_follow_the_network_size(n_weights, share, picked):
    import torch

    from gan_cli.launchers import fit_threads_to_model

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(share)
        line = fit_threads_to_model(None, n_weights)
        assert torch.get_num_threads() == picked
        assert line.startswith(f"torch threads: {picked} (threads=null: G and D have "
                               f"{n_weights:,} weights")
        torch.set_num_threads(2)  # an explicit count is applied (gan_cli.run, in-process),
        assert fit_threads_to_model(3, 33_794) == "torch threads: 3 (threads=3)"
        assert torch.get_num_threads() == 3  # and kept, however small G is
    finally:
        torch.set_num_threads(before)
