"""logger=mlflow and logger=wandb: what each wrote, read back through its own library
(MLflow's MlflowClient; the records of W&B's offline run file, parsed with W&B's protobufs)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf, read_write

from conftest import TINY, compose_train


def csv_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    """(step, value) of key on the rows that have it (evaluation metrics: eval rows only)."""
    return [(int(r["step"]), float(r[key])) for r in rows if r[key] != ""]


def approx(pairs: list[tuple[int, float]]) -> list:
    return [(step, pytest.approx(value, rel=1e-6)) for step, value in pairs]


def drive(logger, run_dir: Path, config: dict) -> None:
    """What train() does with a logger, replayed from a finished run folder: every
    metrics.csv row, the evaluation pictures, then finish with the run folder."""
    import torch

    from gan_cli.loggers import flat_hparams

    summary = json.loads((run_dir / "summary.json").read_text())
    for row in csv_rows(run_dir):
        step = int(row["step"])
        frame = run_dir / "plots" / f"samples_{step:07d}.png"
        if frame.is_file():
            logger.picture("samples", frame, torch.zeros(5, 1), step)
        logger.scalars({"step": step, **{k: float(v) for k, v in row.items()
                                         if k != "step" and v != ""}})
    logger.finish(flat_hparams(config), {k: v for k, v in summary["metrics"].items()},
                  run_dir)


@pytest.fixture(scope="module")
def tiny_run_folder(tmp_path_factory) -> Path:
    """One tiny run made with logger=none, for the tests below to copy."""
    from gan_cli.train import train

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    train(compose_train(TINY + ["print_config=false"]), run_dir)
    return run_dir


@pytest.fixture
def finished_run(tiny_run_folder, tmp_path):
    """A copy of the tiny run folder: (summary, run_dir, config as a dict)."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run_folder, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    return summary, run_dir, OmegaConf.to_container(compose_train(TINY), resolve=True)


# ------------------------------------------------------------------------------ MLflow
@pytest.fixture
def mlflow_here(tmp_path, monkeypatch):
    """The working directory is tmp_path, so the default store lands there; returns a
    client on that store."""
    mlflow = pytest.importorskip("mlflow", reason="pip install 'gan-cli[mlflow]'")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def the_only_run(client, experiment: str = "gan-train"):
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1
    return runs[0]


def mlflow_series(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def artifacts(client, run_id: str, folder: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, folder)}


def test_mlflow_run_holds_the_series_params_and_pictures(run_tiny, mlflow_here, tmp_path):
    summary, run_dir = run_tiny("logger=mlflow", "print_config=false")
    assert (tmp_path / "mlflow.db").is_file()  # the default store: the working directory
    run = the_only_run(mlflow_here)
    rows = csv_rows(run_dir)
    for key in ("d_loss", "g_loss", "d_real", "d_fake", "lr_g", "w1", "modes_covered",
                "hq_fraction"):
        assert mlflow_series(mlflow_here, run.info.run_id, key) == approx(series(rows, key))
    assert [s for s, _ in mlflow_series(mlflow_here, run.info.run_id, "w1")] == [30, 60]
    assert run.data.metrics["final/w1"] == pytest.approx(summary["metrics"]["w1"])
    params = run.data.params
    assert params["train.steps"] == "60" and params["eval.n_samples"] == "500"
    assert params["data._target_"] == "gan_cli.data.gaussian.GaussianMixture"
    assert params["model.generator.hidden"] == "[128, 128]"
    # the evaluation pictures (as they were made), then the final ones with the folder
    assert artifacts(mlflow_here, run.info.run_id, "plots") == {
        "plots/samples_0000030.png", "plots/samples_0000060.png", "plots/losses.png",
        "plots/metrics.png", "plots/training.gif"}
    assert run.data.tags["gan_cli.run_dir"] == str(run_dir.resolve())
    assert run.info.status == "FINISHED"


def test_mlflow_run_ends_with_the_run_folders_files_and_summary_names_it(run_tiny,
                                                                        mlflow_here):
    summary, run_dir = run_tiny("logger=mlflow", "print_config=false")
    run = the_only_run(mlflow_here)
    assert {"summary.json", "metrics.csv", "plots/losses.png",
            "plots/training.gif"} <= artifacts(mlflow_here, run.info.run_id) | artifacts(
        mlflow_here, run.info.run_id, "plots")
    assert summary["logger"]["run_id"] == run.info.run_id


def test_mlflow_logger_uploads_the_finished_folder_and_its_status(finished_run, mlflow_here,
                                                                  tmp_path):
    from gan_cli.loggers import MLflowLogger

    summary, run_dir, config = finished_run
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    logger = MLflowLogger(run_dir, tracking_uri=uri, experiment="study")
    drive(logger, run_dir, config)
    client = type(mlflow_here)(uri)
    run = the_only_run(client, "study")
    assert logger.location == {
        "logger": "mlflow", "tracking_uri": uri, "experiment": "study",
        "experiment_id": run.info.experiment_id, "run_id": run.info.run_id,
        "artifact_uri": run.info.artifact_uri}
    assert artifacts(client, run.info.run_id) >= {"summary.json", "metrics.csv", "train.log",
                                                  "plots"}
    assert artifacts(client, run.info.run_id, "plots") == {
        f"plots/{p.name}" for p in (run_dir / "plots").iterdir()} >= {
        "plots/losses.png", "plots/training.gif", "plots/samples_0000030.png",
        "plots/samples_0000060.png"}
    uploaded = Path(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path)))
    assert json.loads(uploaded.read_text())["metrics"] == summary["metrics"]
    assert mlflow_series(client, run.info.run_id, "g_loss") == approx(
        series(csv_rows(run_dir), "g_loss"))
    assert run.info.status == "FINISHED"
    assert run.data.params["seed"] == "0"


def test_a_resumed_folder_continues_its_mlflow_run_and_a_diverged_one_fails(finished_run,
                                                                           mlflow_here):
    from gan_cli.loggers import MLflowLogger

    _, run_dir, config = finished_run
    first = MLflowLogger(run_dir, experiment="a sweep")  # e.g. a job of a sweep
    first.scalars({"step": 20, "d_loss": 1.5})
    first.finish({"train.steps": 60}, {})
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "diverged"}))
    again = MLflowLogger(run_dir, start_step=60)  # gan-train resume=<run_dir>
    assert (again.run_id, again.experiment) == (first.run_id, "a sweep")
    again.scalars({"step": 80, "d_loss": 1.25})
    again.finish({"train.steps": 120, "seed": 0}, {}, run_dir)  # a param cannot change
    run = the_only_run(mlflow_here, "a sweep")
    assert mlflow_series(mlflow_here, run.info.run_id, "d_loss") == [(20, 1.5), (80, 1.25)]
    assert run.data.params == {"train.steps": "60", "seed": "0"}
    assert run.info.status == "FAILED"


def test_the_jobs_of_a_sweep_share_an_experiment_named_after_the_sweep(mlflow_here, tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from hydra import compose, initialize_config_module

    from gan_cli.loggers import MLflowLogger

    sweep_dir = str(tmp_path / "multirun" / "2026-01-01" / "10-00-00-000000")
    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        hydra_cfg = compose("train", ["experiment=smoke"], return_hydra_config=True)
    try:
        for job, seed in enumerate((0, 1)):
            with read_write(hydra_cfg.hydra):  # what Hydra sets for each job of `gan-train -m`
                hydra_cfg.hydra.mode = RunMode.MULTIRUN
                hydra_cfg.hydra.sweep.dir = sweep_dir
                hydra_cfg.hydra.job.override_dirname = f"seed={seed}"
            HydraConfig.instance().set_config(hydra_cfg)
            logger = MLflowLogger(Path(sweep_dir) / str(job))
            logger.finish({"seed": seed}, {})
    finally:
        HydraConfig.instance().cfg = None
    found = mlflow_here.get_experiment_by_name(sweep_dir)
    runs = mlflow_here.search_runs([found.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["seed=0", "seed=1"]
    assert mlflow_here.get_experiment_by_name("gan-train") is None


def test_a_bad_tracking_uri_is_one_line_naming_the_key(finished_run, mlflow_here):
    from gan_cli.config import UserError
    from gan_cli.loggers import MLflowLogger

    with pytest.raises(UserError, match=r"^logger.tracking_uri=nosuch://x: MLflow cannot use "
                                        r"it \(.+\)$"):
        MLflowLogger(finished_run[1], tracking_uri="nosuch://x")


# ------------------------------------------------------------------------------- W&B
@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """No W&B credentials and no WANDB_MODE: the logger must pick offline by itself."""
    pytest.importorskip("wandb", reason="pip install 'gan-cli[wandb]'")
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_DIR"):
        monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/.netrc: not logged in
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))


def wandb_records(run_dir: Path, timeout_s: float = 60.0) -> list:
    """The records of the run's offline file <run>/wandb/offline-run-*/run-<id>.wandb,
    once W&B's writer (a process of its own, which may still be flushing after
    run.finish() returns) has written the run's exit record."""
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_wandb_file(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        assert time.monotonic() < deadline, f"{path} has no exit record"
        time.sleep(0.2)


def read_wandb_file(path: Path) -> list:
    """A LevelDB-style log (32 KiB blocks of chunks, each with a 7-byte header: CRC,
    length, type) of W&B's own Record protobufs; a record still being written is left out."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, records, chunk = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header: padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if pos + 7 + length > len(data):
            break
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a FULL chunk, or the LAST of a record's chunks
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(chunk)
            except DecodeError:
                break
            records.append(record)
            chunk = b""
    return records


def wandb_history(records: list) -> list[dict]:
    """The logged rows, in order: {key: value}, each with its "_step"."""
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row: dict = {}
            for item in record.history.item:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def wandb_config(records: list) -> dict:
    return {item.key: json.loads(item.value_json) for record in records
            if record.WhichOneof("record_type") == "config" for item in record.config.update}


def wandb_series(history: list[dict], key: str) -> list[tuple[int, float]]:
    return [(row["_step"], row[key]) for row in history if key in row]


def test_wandb_run_holds_the_series_config_and_pictures_offline(run_tiny, wandb_offline):
    summary, run_dir = run_tiny("logger=wandb", "print_config=false")
    records = wandb_records(run_dir)
    history = wandb_history(records)
    rows = csv_rows(run_dir)
    for key in ("d_loss", "g_loss", "d_real", "d_fake", "lr_g", "w1", "modes_covered",
                "hq_fraction"):
        assert wandb_series(history, key) == approx(series(rows, key)), key
    pictures = [(row["_step"], row["samples/path"]) for row in history if "samples/_type" in row]
    assert [step for step, _ in pictures] == [30, 60]
    (files,) = run_dir.glob("wandb/offline-run-*/files")
    assert all((files / path).is_file() for _, path in pictures)
    assert [row["generated/_type"] for row in history if "generated/_type" in row] == \
        ["histogram"] * 2  # G's 1-D samples, beside each picture
    config = wandb_config(records)
    assert config["train.steps"] == 60 and config["eval.n_samples"] == 500
    assert config["model.generator.hidden"] == "[128, 128]"
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "run" and run.project == "gan-cli"


def test_wandb_run_ends_with_the_run_folders_files_and_summary_names_it(run_tiny,
                                                                       wandb_offline):
    summary, run_dir = run_tiny("logger=wandb", "print_config=false")
    (files,) = run_dir.glob("wandb/offline-run-*/files")
    assert (files / "summary.json").is_file() and (files / "plots" / "training.gif").is_file()
    assert summary["logger"]["mode"] == "offline"


def test_wandb_logger_saves_the_finished_folder_and_its_exit_code(finished_run,
                                                                 wandb_offline):
    from gan_cli.loggers import WandbLogger

    summary, run_dir, config = finished_run
    logger = WandbLogger(run_dir, project="study", group="sweep-a")
    location = logger.location
    drive(logger, run_dir, config)
    (offline,) = run_dir.glob("wandb/offline-run-*")
    assert location == {"logger": "wandb", "mode": "offline", "project": "study",
                        "entity": None, "group": "sweep-a", "run_id": offline.name[-8:],
                        "dir": str(offline.resolve()), "url": None}
    files = offline / "files"
    for name in ("summary.json", "metrics.csv", "train.log", "plots/losses.png",
                 "plots/training.gif", "plots/samples_0000060.png"):
        assert (files / name).read_bytes() == (run_dir / name).read_bytes(), name
    records = wandb_records(run_dir)
    assert wandb_series(wandb_history(records), "g_loss") == approx(
        series(csv_rows(run_dir), "g_loss"))
    (exit_record,) = [r for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit.exit_code == 0
    summary_items = {item.key: json.loads(item.value_json) for r in records
                     if r.WhichOneof("record_type") == "summary" for item in r.summary.update}
    assert summary_items["final/w1"] == pytest.approx(summary["metrics"]["w1"])


def test_wandb_mode_comes_from_the_config_then_the_environment(finished_run, wandb_offline,
                                                               monkeypatch):
    from gan_cli.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = WandbLogger(finished_run[1])
    assert logger.location["mode"] == "disabled"
    logger.finish({}, {})
    assert not list(finished_run[1].glob("wandb/*run-*"))


def test_a_bad_wandb_mode_is_one_line_naming_the_key(run_tiny):
    from gan_cli.config import UserError

    with pytest.raises(UserError, match=r"^logger.mode=cloud: allowed: null \(WANDB_MODE, "
                                        r"else online when logged in\), online, offline, "
                                        r"disabled$"):
        run_tiny("logger=wandb", "logger.mode=cloud")


# -------------------------------------------------------------------- missing packages
@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_missing_package_is_one_line_and_exit_code_2(name, tmp_path):
    """gan-train logger=<name> without its package: one stderr line, exit 2, no folder."""
    run_dir = tmp_path / "run"
    script = (f"import sys; sys.modules[{name!r}] = None; "  # `import {name}` now fails
              "from gan_cli.cli import train_main; train_main()")
    result = subprocess.run(
        [sys.executable, "-c", script, "experiment=smoke", "device=cpu", f"logger={name}",
         f"hydra.run.dir={run_dir}"], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"gan-train: error: logger={name}: the {name} package is not installed; "
        f"pip install 'gan-cli[{name}]', or use logger=none"]
    assert not run_dir.exists()


@pytest.mark.slow  # two jobs of gan-train -m, through Hydra's own multirun
def test_a_real_sweep_lands_in_one_mlflow_experiment(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(
        ["gan-train", "-m", "experiment=smoke", "device=cpu", "print_config=false",
         "train.steps=20", "train.log_every=10", "train.eval_every=20", "seed=0,1",
         "logger=mlflow", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(str(sweep_dir)).experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert all("seed=" in r.info.run_name and r.info.status == "FINISHED" for r in runs)
    assert all([s for s, _ in mlflow_series(client, r.info.run_id, "w1")] == [20] for r in runs)
