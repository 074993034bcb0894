"""Schemas catch typos and wrong types at compose time; value checks catch the rest before training."""

import re

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from conftest import compose_train
from gan_cli.config import validate_train_config
from gan_cli.device import pick_device
from gan_cli.errors import UserError


def test_defaults_compose_to_the_trimodal_run():
    cfg = compose_train()
    assert list(cfg.data.means) == [-4.0, 0.0, 4.0]
    assert cfg.device == "auto" and cfg.resume is None
    assert {"steps", "batch_size", "d_steps", "g_steps", "log_every", "eval_every",
            "ckpt_every"} <= set(cfg.train)
    assert cfg.optim.generator._target_ == "torch.optim.Adam"
    assert cfg.optim.discriminator._target_ == "torch.optim.Adam"
    validate_train_config(cfg)


@pytest.mark.parametrize("override", ["train.stepz=5", "model.generator.widht=3", "sed=1"])
def test_misspelt_key_fails_at_compose_time(override):
    with pytest.raises(ConfigCompositionException, match=override.split("=")[0].split(".")[-1]):
        compose_train([override])


def test_wrong_type_fails_at_compose_time():
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_train(["train.steps=many"])


def test_unknown_group_option_fails():
    with pytest.raises(ConfigCompositionException, match="nosuchdata"):
        compose_train(["data=nosuchdata"])


@pytest.mark.parametrize("override, key", [
    ("optim.generator.lr=-1", "optim.generator.lr"),
    ("optim.discriminator.lr=0", "optim.discriminator.lr"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.steps=-5", "train.steps"),
    ("device=gpu", "device"),
    ("train.ema=1.5", "train.ema"),
    ("model.generator.activation=swish", "model.generator.activation"),
    ("model.noise.dist=cauchy", "model.noise.dist"),
    ("model.discriminator.hidden=[8,0]", "model.discriminator.hidden"),
    ("loss.label_smoothing=0.7", "loss.label_smoothing"),
    ("eval.w1_tol=-0.1", "eval.w1_tol"),
    ("train.instance_noise=-1", "train.instance_noise"),
    ("train.unroll_steps=-1", "train.unroll_steps"),
    ("train.d_steps=0", "train.d_steps"),
    ("model.discriminator.minibatch=magic", "model.discriminator.minibatch"),
    ("model.discriminator.pack=0", "model.discriminator.pack"),
    ("loss=wgan_gp loss.gp_weight=0", "loss.gp_weight"),
    ("loss=wgan loss.clip=-0.01", "loss.clip"),
])
def test_bad_values_fail_before_training_naming_the_key(override, key):
    with pytest.raises(UserError, match=f"^{key}="):
        validate_train_config(compose_train(override.split()))


@pytest.mark.parametrize("overrides, must_say", [
    # weight clipping with momentum (Adam's default preset) is unstable (Arjovsky et al.)
    (["loss=wgan", "optim=adam"], "optim.discriminator=Adam with momentum 0.5: loss=wgan clips"),
    (["loss=wgan", "optim=sgd", "optim.discriminator.momentum=0.9"], "use optim=rmsprop"),
    # the gradient penalty needs a per-sample gradient: no minibatch layers
    (["loss=wgan_gp", "model.discriminator.minibatch=stddev"],
     "model.discriminator.minibatch=stddev: loss=wgan_gp needs a D that judges each sample"),
    (["model.discriminator.pack=3"], "model.discriminator.pack=3: must divide train.batch_size=512"),
])
def test_incompatible_combinations_fail_at_start(overrides, must_say):
    with pytest.raises(UserError, match=re.escape(must_say)):
        validate_train_config(compose_train(overrides))


def test_label_smoothing_with_a_critic_fails_when_the_loss_is_built():
    from gan_cli.build import build_loss

    with pytest.raises(UserError, match="loss.label_smoothing=0.1: a critic has no labels"):
        build_loss(compose_train(["loss=hinge", "loss.label_smoothing=0.1"]).loss)


def test_every_shipped_preset_composes_and_validates():
    for group, names in {"data": ["unimodal", "bimodal", "trimodal", "ring8", "grid25"],
                         "loss": ["minimax", "nonsaturating", "maxlik", "lsgan", "hinge", "wgan",
                                  "wgan_gp"],
                         "optim": ["adam", "sgd", "rmsprop", "gd_exp_decay", "ttur"],
                         "model": ["mlp", "blog_onestop"],
                         "experiment": ["smoke", "ring8_best"]}.items():
        for name in names:
            validate_train_config(compose_train([f"{group}={name}"]))


def test_devices():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="device=cuda:1: no CUDA GPU"):
            pick_device("cuda:1")


def test_derived_sizes_are_injected_at_build_time():
    import torch

    from gan_cli.build import build_data, build_models

    cfg = compose_train(["data=ring8", "model.generator.hidden=[7]"])
    data = build_data(cfg.data, torch.device("cpu"))
    models = build_models(cfg.model, data, torch.device("cpu"))
    assert models.noise.dim == 2  # noise.dim: null = the data's dimension
    assert models.generator(models.noise(5)).shape == (5, 2)
    assert models.discriminator(data.sample(5)).shape == (5, 1)
    # seed 000's one-stop generator: hidden widths x number of modes
    cfg = compose_train(["model=blog_onestop"])
    data = build_data(cfg.data, torch.device("cpu"))
    widths = [m.out_features for m in build_models(cfg.model, data, "cpu").generator
              if isinstance(m, torch.nn.Linear)]
    assert widths == [12, 12, 12, 1]


def test_networks_see_the_data_centred_unless_turned_off():
    import torch

    from gan_cli.build import build_data, build_models

    def build(*overrides):
        cfg = compose_train(["data=unimodal", *overrides])
        torch.manual_seed(0)  # the same initial weights for both builds
        return build_models(cfg.model, build_data(cfg.data, torch.device("cpu")), "cpu")

    centred, raw = build(), build("model.center=false")
    z, x = torch.rand(5, 1), torch.randn(5, 1) + 4.0
    with torch.no_grad():
        # data=unimodal is N(4, 0.5): G's output moves by +4, D's input by -4
        assert torch.allclose(centred.generator(z), raw.generator(z) + 4.0)
        assert torch.allclose(centred.discriminator(x), raw.discriminator(x - 4.0))
        assert not torch.allclose(centred.discriminator(x), raw.discriminator(x))
