"""train.precision: the networks' forward passes under torch.autocast, everything else fp32."""

import pytest
import torch

from conftest import TINY, compose_train
from gan_cli.checkpoint import load_checkpoint
from gan_cli.errors import UserError


def forward_dtypes(monkeypatch) -> list:
    """Record the dtype of every nn.Linear output during training."""
    seen = []
    real_forward = torch.nn.Linear.forward

    def recording(self, x):
        y = real_forward(self, x)
        seen.append(y.dtype)
        return y

    monkeypatch.setattr(torch.nn.Linear, "forward", recording)
    return seen


def test_bf16_runs_the_networks_in_bf16_and_keeps_fp32_weights(run_tiny, monkeypatch):
    seen = forward_dtypes(monkeypatch)
    summary, run_dir = run_tiny("train.precision=bf16", "train.steps=20", "eval.plots=false")
    assert summary["status"] == "completed"
    assert torch.bfloat16 in seen  # the step's passes
    assert torch.float32 in seen  # evaluation (and the penalty-free metrics) stay fp32
    ckpt = load_checkpoint(run_dir)
    assert all(w.dtype == torch.float32 for w in ckpt["generator"].values())
    assert all(w.dtype == torch.float32 for w in ckpt["discriminator"].values())


def test_fp32_runs_no_forward_pass_in_reduced_precision(run_tiny, monkeypatch):
    seen = forward_dtypes(monkeypatch)
    run_tiny("train.steps=5", "eval.plots=false")
    assert set(seen) == {torch.float32}


def test_wgan_gp_penalty_stays_fp32_under_bf16(run_tiny, monkeypatch):
    """The gradient penalty's own D passes run outside autocast (StudioGAN #175: WGAN-GP
    going NaN under mixed precision)."""
    from gan_cli.losses import WassersteinGP

    dtypes = []
    real_penalty = WassersteinGP.penalty

    def spy(self, D, real, fake, *args, **kwargs):
        value = real_penalty(self, D, real, fake, *args, **kwargs)
        dtypes.append((torch.is_autocast_enabled("cpu"), value.dtype))
        return value

    monkeypatch.setattr(WassersteinGP, "penalty", spy)
    summary, _ = run_tiny("loss=wgan_gp", "train.precision=bf16", "train.steps=4",
                          "eval.plots=false")
    assert summary["status"] == "completed" and dtypes
    assert set(dtypes) == {(False, torch.float32)}


def test_fp16_needs_a_gpu_and_unknown_precisions_are_refused():
    from gan_cli.train import train

    with pytest.raises(UserError, match=r"train\.precision=fp16: needs a GPU"):
        train(compose_train(TINY + ["train.precision=fp16"]), "unused")
    from gan_cli.config import validate_train_config

    with pytest.raises(UserError, match=r"train\.precision=fp8: .*allowed: fp32, bf16, fp16"):
        validate_train_config(compose_train(TINY + ["train.precision=fp8"]))
