"""`--help`: every key with its meaning from the schema comments, one group's keys on
request, gan-sample's own keys only, and gan_cli's --version (issue 26)."""

import re

import pytest

from conftest import compose_train
from gan_cli.help import quick_help, schema_comments
from test_cli import run

KEY_LINE = re.compile(r"^  ([\w.]+)=(.*?)(?:\s{2,}(.*))?$")


def key_lines(text: str) -> dict[str, tuple[str, str]]:
    """{key: (value, meaning)} of a help text's key lines."""
    found = {}
    for line in text.splitlines():
        m = KEY_LINE.match(line)
        if m and not line.startswith("  data: ") and "=" in line.split()[0]:
            found[m.group(1)] = (m.group(2), m.group(3) or "")
    return found


@pytest.mark.parametrize("overrides", [
    [], ["data=evenly_spaced"], ["model=dcgan", "data=mnist"], ["loss=wgan"], ["loss=wgan_gp"],
    ["optim=sgd"], ["optim=rmsprop"], ["optim/schedule=step"], ["optim/schedule=constant"],
    ["logger=tensorboard"], ["experiment=mnist_acgan"]])
def test_every_key_has_its_meaning_and_no_hydra_internals(overrides):
    from gan_cli import help

    text = "\n".join(help.key_lines(compose_train(overrides)))  # the whole listing
    keys = key_lines(text)
    assert {"seed", "train.steps", "optim.generator.lr"} <= set(keys)
    assert not [k for k, (_, meaning) in keys.items() if not meaning], "keys without a meaning"
    assert "_target_" not in text and "_partial_" not in text


def test_the_default_help_lists_every_key_with_its_value_and_unit():
    keys = key_lines(quick_help("train", ["--help"]))
    assert keys["train.steps"] == ("5000", "total training steps (one step = d_steps D "
                                           "updates + g_steps G updates)")
    assert keys["data.means"][0] == "[-4.0, 0.0, 4.0]"
    assert keys["data.weights"][0] == "null"
    # a field commented above and beside: both parts
    assert keys["eval.rejection_quantile"][1].startswith("q in (0, 1]; null = off (discriminator")
    for key in ("model.center", "eval.hq_sigmas", "eval.plots", "eval.spread_tol"):
        assert keys[key][1], key
    assert key_lines(quick_help("train", ["--help", "seed=3"]))["seed"][0] == "3"


def test_help_with_a_group_option_lists_that_groups_keys():
    text = quick_help("train", ["--help", "data=ring8"])
    keys = key_lines(text)
    assert set(keys) == {"data.means", "data.stds", "data.weights"}
    assert keys["data.stds"][0] == "0.02"
    assert "data=ring8: 8 modes on a circle of radius 2" in text  # the preset's own comment
    keys = key_lines(quick_help("train", ["--help", "loss=wgan", "optim/schedule=step"]))
    assert set(keys) == {"loss.label_smoothing", "loss.aux_weight", "loss.clip", "loss.r1_gamma",
                         "optim.schedule.step_size", "optim.schedule.gamma"}


def test_sample_help_shows_only_sampling_keys():
    text = quick_help("sample", ["--help"])
    keys = key_lines(text)
    assert {"ckpt", "n", "out", "seed", "device", "ema", "rejection_quantile"} <= set(keys)
    assert not [k for k in keys if "." in k]  # no train.*, data.*, ...
    assert "data:" not in text and "loss:" not in text  # no training groups


def test_comments_are_read_from_the_schema_source():
    comments = schema_comments()
    assert comments["TrainLoop"]["batch_size"] == "real and fake samples per update"
    assert comments["MLPGANConfig"]["center"].startswith("subtract the data's mean")


def test_help_is_quick_and_imports_no_torch(tmp_path):
    import subprocess
    import sys
    import time

    code = ("import sys; sys.argv = ['gan-train', '--help']\nfrom gan_cli.cli import train_main\n"
            "try:\n    train_main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "train.steps=5000" in proc.stdout
    assert time.perf_counter() - start < 10  # measured 0.4-0.9 s; generous for a loaded CI


def test_version_flag(tmp_path):
    import gan_cli

    proc = run(["gan-sample", "--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(f"gan-sample (gan_cli) "
                                                           f"{gan_cli.__version__};")
