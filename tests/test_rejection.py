"""Discriminator rejection sampling: the rule, the evaluation that uses it, gan-sample's."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from conftest import compose_train, run_sample
from gan_cli.build import build_conditioning, build_data, build_models
from gan_cli.config import validate_train_config
from gan_cli.errors import UserError
from gan_cli.rejection import judged_in_batches, keep_mask, sample_kept

CPU = torch.device("cpu")


def test_the_exact_rule_turns_a_wide_gaussian_into_the_narrow_one():
    # G draws N(0, 2^2) where the data is N(0, 1): the true logit log p_data/p_G is
    # log 2 - 3x^2/8, and keeping x with probability exp(logit - max logit) leaves N(0, 1)
    g = torch.Generator().manual_seed(0)

    def draw(m):
        return 2.0 * torch.randn(m, generator=g)

    def logits_of(x):
        return math.log(2.0) - 3.0 * x**2 / 8

    torch.manual_seed(1)  # keep_mask's draws: not the same stream as G's
    kept, share = sample_kept(draw, logits_of, 20_000, quantile=1.0)
    assert kept.shape == (20_000,)
    assert kept.std().item() == pytest.approx(1.0, abs=0.03)
    assert share == pytest.approx(0.5, abs=0.03)  # the exact rule keeps 1 / max ratio = 1/2


def test_a_lower_quantile_keeps_everything_above_it_and_thins_the_rest():
    logits = torch.cat([torch.zeros(10_000), torch.full((10_000,), math.log(0.25))])
    keep = keep_mask(logits, quantile=0.9, generator=torch.Generator().manual_seed(1))
    assert keep[:10_000].all()  # at or above the 0.9-quantile (0): always kept
    assert keep[10_000:].float().mean().item() == pytest.approx(0.25, abs=0.015)


def trained_d_logits(run_dir, x):
    """The logits of the D in run_dir's last checkpoint on samples x."""
    cfg = compose_train(["experiment=smoke"])
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    models = build_models(cfg.model, build_data(cfg.data, CPU), CPU, build_conditioning(
        cfg.model, cfg.loss, build_data(cfg.data, CPU)))
    models.discriminator.load_state_dict(state["discriminator"])
    with torch.no_grad():
        return models.discriminator.eval()(x).reshape(-1), models, state


def test_evaluation_keeps_the_share_of_samples_the_rule_predicts(run_tiny):
    summary, run_dir = run_tiny("train.steps=60", "train.eval_every=60", "eval.plots=false",
                                "eval.n_samples=4000", "eval.rejection_quantile=0.5")
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    models = trained_d_logits(run_dir, torch.zeros(1, 1))[1]
    models.generator.load_state_dict(state["generator_ema"])
    with torch.no_grad():
        fake = models.generator.eval()(state["eval_z"])
    logits = trained_d_logits(run_dir, fake)[0]
    expected = (logits - logits.quantile(0.5)).exp().clamp(max=1).mean().item()
    assert expected < 0.99  # the D is not flat, so the share says something (q=0.5: >= 0.5)
    assert summary["metrics"]["accepted"] == pytest.approx(expected, abs=0.025)
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["accepted"]]
    assert [r["step"] for r in rows] == ["60"]


def test_gan_sample_draws_n_samples_that_d_prefers(run_tiny, tmp_path, capsys):
    _, run_dir = run_tiny("train.steps=60", "eval.plots=false")
    run_sample(run_dir, tmp_path / "plain.npy", "n=3000")
    run_sample(run_dir, tmp_path / "kept.npy", "n=3000", "rejection_quantile=0.5")
    assert "rejection sampling kept" in capsys.readouterr().out
    plain, kept = (torch.from_numpy(np.load(tmp_path / f)) for f in ("plain.npy", "kept.npy"))
    assert kept.shape == plain.shape == (3000, 1)
    # the kept samples are the ones D finds more real
    assert trained_d_logits(run_dir, kept)[0].mean() > \
        trained_d_logits(run_dir, plain)[0].mean() + 0.03  # measured: -0.10 against -0.19


def test_a_d_with_a_minibatch_layer_judges_full_batches_only():
    sizes = []

    def judge(x):  # the logit of each sample: its batch's mean, as a minibatch layer sees it
        sizes.append(len(x))
        return x.mean().expand(len(x))

    x = torch.arange(10.0)
    logits = judged_in_batches(judge, x, batch=4)
    assert sizes == [4, 4, 4]  # 10 samples + the first 2 again
    assert logits.tolist() == [1.5] * 4 + [5.5] * 4 + [(8 + 9 + 0 + 1) / 4] * 2
    replicas = torch.arange(12.0).view(2, 6)  # (R, N): chunks along dim 1
    assert judged_in_batches(lambda c: c * 2, replicas, batch=4, dim=1).equal(replicas * 2)


def test_a_diverged_d_keeps_everything_in_training_and_stops_gan_sample():
    assert keep_mask(torch.tensor([0.0, float("nan"), -5.0]), 0.5).all()
    with pytest.raises(UserError, match="non-finite logits"):
        sample_kept(lambda m: torch.zeros(m), lambda x: torch.full_like(x, float("nan")),
                    10, 0.5)


def test_replicas_reject_as_their_single_runs_do(run_tiny, tmp_path):
    common = ["train.steps=100", "train.eval_every=100", "eval.plots=false",
              "eval.rejection_quantile=0.5"]
    batched, _ = run_tiny(*common, "train.replicas=2", "seed=1", run_dir=tmp_path / "b")
    single, _ = run_tiny(*common, "seed=2", run_dir=tmp_path / "s")
    ours = batched["per_replica"][1]["metrics"]
    assert ours["accepted"] == pytest.approx(single["metrics"]["accepted"], abs=0.01)
    assert ours["hq_fraction"] == pytest.approx(single["metrics"]["hq_fraction"], abs=0.01)
    assert batched["per_replica"][0]["metrics"]["accepted"] != ours["accepted"]


@pytest.mark.parametrize("overrides, message", [
    (["eval.rejection_quantile=0"], r"must be in \(0, 1\]"),
    (["eval.rejection_quantile=0.5", "loss=wgan_gp"], "log p_data/p_G"),
    (["eval.rejection_quantile=0.5", "model.discriminator.pack=2"], "pack=1"),
    (["eval.rejection_quantile=0.5", "model.conditional=true"], "conditional"),
])
def test_rejection_sampling_refuses_what_it_cannot_read(overrides, message):
    with pytest.raises(UserError, match=message):
        validate_train_config(compose_train(overrides))
