"""Experiment tracking: TensorBoard event files, the run manifest, the start-up lines."""

import csv
import re
from datetime import datetime

import pytest


def test_tensorboard_events_match_metrics_csv(run_tiny):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed "
                        "(pip install 'gan-cli[tensorboard]'); CI installs it")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary, run_dir = run_tiny("logger=tensorboard")
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0,
                                                                  "histograms": 0})
    events.Reload()
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for tag in ("d_loss", "g_loss", "d_real", "d_fake", "lr_g", "lr_d"):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert logged == [(int(r["step"]), pytest.approx(float(r[tag]), rel=1e-6)) for r in rows]
    w1 = [(e.step, e.value) for e in events.Scalars("w1")]
    assert w1 == [(int(r["step"]), pytest.approx(float(r["w1"]), rel=1e-6)) for r in rows
                  if r["w1"]]
    # one picture and one histogram of G's samples per evaluation (steps 30 and 60)
    assert [e.step for e in events.Images("samples")] == [30, 60]
    assert events.Images("samples")[0].width == 700  # the 7-inch, 100-dpi density plot
    assert [e.step for e in events.Histograms("generated")] == [30, 60]
    # hparams: the run's settings and its final metrics, for the HParams view
    hparams = EventAccumulator(str(run_dir / "tb"))
    hparams.Reload()
    assert "_hparams_/experiment" in hparams.PluginTagToContent("hparams")
    assert "final/w1" in hparams.Tags()["scalars"]
    assert hparams.Scalars("final/w1")[0].value == pytest.approx(summary["metrics"]["w1"])


def test_missing_tensorboard_is_a_one_line_error(run_tiny, monkeypatch):
    import builtins

    from gan_cli.errors import UserError

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UserError, match=r"logger=tensorboard: the tensorboard package is not "
                                        r"installed; pip install 'gan-cli\[tensorboard\]'"):
        run_tiny("logger=tensorboard")


def test_manifest_fields_and_types(run_tiny):
    summary, _ = run_tiny()
    m = summary["manifest"]
    types = {"gan_cli_version": str, "git_commit": (str, type(None)), "python": str,
             "torch": str, "hydra": str, "device": str, "device_name": str,
             "cuda": (str, type(None)), "torch_threads": int, "host": str, "command": str,
             "started_at": str, "ended_at": str}
    assert set(m) == set(types)
    for key, kind in types.items():
        assert isinstance(m[key], kind), key
    assert m["device"] == "cpu" and m["device_name"] == "cpu (asked for)"
    assert re.fullmatch(r"\d+\.\d+\.\d+", m["python"])
    if m["git_commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", m["git_commit"])
    start, end = (datetime.fromisoformat(m[k]) for k in ("started_at", "ended_at"))
    assert start <= end


def test_start_up_shows_device_config_and_folder(run_tiny, capsys):
    _, run_dir = run_tiny()
    out = capsys.readouterr().out
    head = out[:out.index("step 20/60")]  # all before training starts
    assert f"run folder: {run_dir.resolve()}" in head
    assert "device: cpu (asked for)" in head
    assert "data  GaussianMixture  means=[-4.0, 0.0, 4.0]" in head
    assert "generator  Adam  lr=0.001" in head
    _, _ = run_tiny("print_config=false", run_dir=run_dir.parent / "quiet")
    assert "GaussianMixture" not in capsys.readouterr().out


def test_git_commit_of_a_package_installed_from_the_clone_it_runs_in(tmp_path, monkeypatch):
    """`pip install .` from a clone, then gan-train inside it: the clone's commit (issue 26:
    it was null), but only while its gan_cli/ holds exactly the installed files."""
    import shutil
    from pathlib import Path

    import gan_cli
    from gan_cli import manifest

    checkout = manifest._toplevel(Path(__file__).parent)
    if checkout is None or not (checkout / "gan_cli").is_dir():
        pytest.skip("the tests do not run from a git checkout")
    installed = tmp_path / "site-packages" / "gan_cli"
    shutil.copytree(checkout / "gan_cli", installed, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(gan_cli, "__file__", str(installed / "__init__.py"))
    monkeypatch.chdir(checkout / "tests")  # anywhere inside the clone
    head = manifest._git(checkout, "rev-parse", "HEAD")
    assert re.fullmatch(r"[0-9a-f]{40}", head) and manifest.git_commit() == head
    monkeypatch.chdir(tmp_path)  # run outside any clone: nothing vouches for the code
    assert manifest.git_commit() is None
    monkeypatch.chdir(checkout)
    (installed / "cli.py").write_text("# installed from another version\n")
    assert manifest.git_commit() is None
