"""The Python API (gan_cli.compose / gan_cli.run): the example of docs/watching.md, as written, and
the same config and run folders as gan-train."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import TINY

GUIDE = Path(__file__).parents[1] / "docs" / "watching.md"


def guide_example() -> str:
    """The python block under docs/watching.md's "From Python" heading."""
    found = re.search(r"^#+ From Python\n.*?```python\n(.*?)```", GUIDE.read_text(),
                      re.S | re.M)
    assert found, "docs/watching.md has no ```python block under a 'From Python' heading"
    return found.group(1)


def test_the_guide_example_runs_as_written(tmp_path, monkeypatch, capsys):
    code = guide_example()
    assert len(code.strip().splitlines()) <= 5
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(GUIDE), "exec"), {})
    (summary_file,) = tmp_path.glob("outputs/*-*-*/*-*-*-*/summary.json")  # the CLI's layout
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "completed" and summary["step"] == 100
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed == f"completed {summary['metrics']['w1']} {summary_file.parent.resolve()}"


def test_compose_gives_the_config_gan_train_runs(tmp_path):
    from gan_cli import compose

    overrides = ["experiment=smoke", "data=bimodal", "loss=wgan", "train.steps=7"]
    shown = subprocess.run(["gan-train", *overrides, "--cfg", "job"], capture_output=True,
                           text=True, check=True, cwd=tmp_path, timeout=120).stdout
    assert OmegaConf.to_yaml(compose(overrides)) == shown


def test_compose_works_inside_a_notebooks_own_hydra_initialize(tmp_path):
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from gan_cli import compose

    with initialize_config_dir(str(tmp_path), version_base="1.3"):
        assert compose(["experiment=smoke"]).train.steps == 200
        assert GlobalHydra.instance().is_initialized()  # theirs, still there
        sources = GlobalHydra.instance().config_loader().get_sources()
        assert str(tmp_path) in [source.path for source in sources]


def test_compose_reports_a_bad_override_as_hydra_does():
    from hydra.errors import ConfigCompositionException

    from gan_cli import compose
    from gan_cli.suggest import error_line

    with pytest.raises(ConfigCompositionException) as e:
        compose(["data=no_such_preset"])
    assert "data" in error_line(e.value) and "no_such_preset" in \
        error_line(e.value)


def test_run_with_overrides_extends_a_resumed_run_in_its_own_folder(tmp_path, capsys):
    from gan_cli import run

    first = run([*TINY, "print_config=false"], run_dir=tmp_path / "run")
    assert first["step"] == 60
    again = run([f"resume={tmp_path / 'run'}", "train.steps=80"])  # as on the command line
    assert again["step"] == 80 and again["run_dir"] == str((tmp_path / "run").resolve())
    assert not (tmp_path / "outputs").exists() and not Path("outputs").exists()


def test_the_default_run_folder_follows_gan_trains_rule(tmp_path, monkeypatch):
    from gan_cli.api import default_run_dir
    from gan_cli.runfolder import PROCESS_TAG

    monkeypatch.chdir(tmp_path)
    assert re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}-" + PROCESS_TAG,
                        default_run_dir().as_posix())
    assert default_run_dir() != default_run_dir()  # microseconds: two runs, two folders


def test_import_gan_cli_stays_light():
    code = ("import sys, gan_cli; assert callable(gan_cli.compose); "
            "print('torch' in sys.modules, 'gan_cli.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.split() == ["False", "False"]
