"""Misspelt keys, group options and --flags get one line with the closest valid spelling;
`+key=` cannot add a key that nothing reads (issue 26)."""

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from conftest import compose_train
from gan_cli.errors import UserError
from gan_cli.suggest import error_line
from gan_cli.suggest import check_addition, closest, flag_hint
from test_cli import run


def message_for(*overrides: str) -> str:
    """The one line gan-train would print for overrides that do not compose."""
    with pytest.raises(Exception) as failed:
        compose_train(list(overrides))
    message = error_line(failed.value)
    assert message is not None and "\n" not in message
    return message


@pytest.mark.parametrize("override, must_say", [
    ("+train.step=1", "+train.step=1: train.step is not a config key; did you mean train.steps=1?"),
    ("++train.step=1", "did you mean train.steps=1?"),
    ("train.stepz=1", "train.stepz=1: train.stepz is not a config key; did you mean train.steps=1?"),
    ("train.step=1", "did you mean train.steps=1?"),
    ("steps=100", "steps=100: steps is not a config key; did you mean train.steps=100?"),
    ("optim.lr=1e-3", "did you mean optim.discriminator.lr=1e-3 or optim.generator.lr=1e-3?"),
    ("dat=ring8", "did you mean data=ring8?"),
    ("data=ring9", "Available options in 'data': bimodal, evenly_spaced, fashion_mnist, grid25, "
                   "image_folder, mnist, points, ring8, trimodal, unimodal; did you mean "
                   "data=ring8?"),
    ("+data.mean=1", "did you mean data.means=1?"),
])
def test_misspellings_get_the_closest_valid_spelling(override, must_say):
    message = message_for(override)
    assert must_say in message
    assert "To append to your config use" not in message  # Hydra's advice runs the typo


def test_plus_cannot_add_an_unknown_key_but_can_set_a_known_one():
    with pytest.raises(UserError, match=r"\+foo=1: foo is not a config key"):
        compose_train(["+foo=1"])
    assert compose_train(["++train.steps=7"]).train.steps == 7  # an existing key: fine
    # a node declared as a dictionary takes the keys its user names
    open_node = OmegaConf.structured({"env": DictConfig({}, ref_type=dict)})
    check_addition(open_node, "env.FOO", "+env.FOO=1")  # no error
    assert compose_train(["+hydra.job.env_set.FOO=1"], ).train.steps == 5000  # Hydra's own


def test_a_node_without_a_close_key_gets_no_guess():
    assert closest("zzzz", ["train.steps", "seed"]) == []
    assert closest("data.foo", ["data", "data.means"]) == []  # a node is no spelling of its key


@pytest.mark.parametrize("args, must_say", [
    (["--steps", "100"], "--steps 100: gan-train takes key=value overrides, not --flags; "
                         "did you mean train.steps=100?"),
    (["--batch-size=64"], "did you mean train.batch_size=64?"),
    (["data=ring8", "--lr", "1e-3"], "did you mean optim.discriminator.lr=1e-3 or "
                                     "optim.generator.lr=1e-3?"),
])
def test_argparse_style_flags_point_to_the_override(args, must_say):
    assert must_say in flag_hint("gan-train", "train", args)


def test_hydras_flags_are_not_questioned():
    assert flag_hint("gan-train", "train", ["--cfg", "job", "--config-dir", "x", "seed=1"]) is None
    assert flag_hint("gan-train", "train", ["--multirun", "seed=1,2"]) is None


def test_sample_keys_are_suggested_from_the_sample_schema():
    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        with pytest.raises(Exception) as failed:
            compose("sample", overrides=["nn=5"])
    assert "nn=5: nn is not a config key; did you mean n=5?" == error_line(failed.value)


@pytest.mark.parametrize("args, must_say", [
    (["+train.step=1"], "gan-train: error: +train.step=1: train.step is not a config key; "
                        "did you mean train.steps=1?"),
    (["--steps", "100"], "gan-train: error: --steps 100: gan-train takes key=value overrides, "
                         "not --flags; did you mean train.steps=100?"),
])
def test_the_installed_command_refuses_in_one_line(tmp_path, args, must_say):
    proc = run(["gan-train", *args, "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith(must_say) and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_version_is_gan_clis(tmp_path):
    import gan_cli

    proc = run(["gan-train", "--version"], tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"gan-train (gan_cli) {gan_cli.__version__};")
    assert "Hydra 1." not in proc.stdout  # Hydra's own --version


def test_resuming_a_finished_run_names_the_override_that_extends_it():
    from gan_cli.suggest import finished_run_hint

    assert finished_run_hint("outputs/2026-12-01/10-00-00-1", 5000) == (
        "this run already finished its train.steps=5000; to train it further, give more: "
        "gan-train resume=outputs/2026-12-01/10-00-00-1 train.steps=10000")
