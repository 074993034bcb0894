"""#10: class labels — conditional GANs and AC-GAN, on mixtures and on images."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch

from conftest import TINY, compose_train, run_sample
from gan_cli.build import build_conditioning, build_data, build_models
from gan_cli.config import validate_train_config
from gan_cli.errors import UserError
from gan_cli.data.gaussian import GaussianMixture
from gan_cli.evaluate import per_class_fit
from gan_cli.image_metrics import class_fidelity
from gan_cli.labels import Conditioning
from gan_cli.train import train
from test_images import digits_root, quick_classifier, tiny_image_run  # noqa: F401 (fixtures)

CPU = torch.device("cpu")


def built(*overrides: str):
    """The networks, data and conditioning a run with these overrides trains."""
    cfg = compose_train(TINY + list(overrides))
    data = build_data(cfg.data, CPU)
    cond = build_conditioning(cfg.model, cfg.loss, data)
    torch.manual_seed(0)
    return build_models(cfg.model, data, CPU, cond), data, cond


# ---------------------------------------------------------------- the pieces
def test_labels_join_the_inputs_as_one_hot_codes():
    cond = Conditioning(n_classes=3)
    z, y = torch.zeros(2, 4), torch.tensor([2, 0])
    assert cond.generator_input(z, y).tolist() == [[0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0]]
    x = torch.full((2, 1), 5.0)
    assert cond.discriminator_input(x, y, image=False).tolist() == [[5, 0, 0, 1], [5, 1, 0, 0]]
    images = torch.zeros(2, 1, 4, 4)
    stacked = cond.discriminator_input(images, y, image=True)  # (2, 1 + 3, 4, 4)
    assert stacked.shape == (2, 4, 4, 4)
    assert stacked[0, 3].eq(1).all() and stacked[0, 1:3].eq(0).all() and stacked[1, 1].eq(1).all()
    # unconditional: inputs pass through, D's output is all logit
    plain = Conditioning()
    assert plain.generator_input(z, None) is z and plain.discriminator_input(x, None, False) is x
    assert plain.split(x)[1] is None and plain.aux_loss(None, None) == 0.0


def test_acgan_auxiliary_loss_is_the_weighted_cross_entropy_of_the_class_head():
    cond = Conditioning(n_classes=3, aux_weight=0.5)
    assert not cond.to_discriminator  # AC-GAN's D infers the class instead of being told
    d_out = torch.tensor([[0.5, 2.0, 0.0, 0.0], [-1.0, 0.0, 1.0, 0.0]])  # logit, 3 class logits
    logit, classes = cond.split(d_out)
    assert logit.tolist() == [[0.5], [-1.0]]
    by_hand = 0.5 * 0.5 * (-math.log(math.exp(2) / (math.exp(2) + 2))
                           - math.log(math.e / (math.e + 2)))
    assert cond.aux_loss(classes, torch.tensor([0, 1])).item() == pytest.approx(by_hand, rel=1e-6)
    # replicas: one loss per replica, each its own batch's
    stacked = torch.stack([classes, classes.flip(0)])  # (2, B, K)
    per_replica = cond.aux_loss(stacked, torch.tensor([[0, 1], [1, 0]]))
    assert per_replica.shape == (2,) and per_replica[1].item() == pytest.approx(by_hand, rel=1e-6)


def test_the_conditional_generator_and_discriminator_depend_on_the_label():
    models, data, cond = built("model.conditional=true")
    z = torch.randn(5, models.noise.dim)
    as_0 = models.generator(cond.generator_input(z, torch.zeros(5, dtype=torch.long)))
    as_2 = models.generator(cond.generator_input(z, torch.full((5,), 2)))
    assert (as_0 - as_2).abs().min() > 1e-4  # only the label changed
    x = data.sample(5)
    d0 = models.discriminator(cond.discriminator_input(x, torch.zeros(5, dtype=torch.long), False))
    d2 = models.discriminator(cond.discriminator_input(x, torch.full((5,), 2), False))
    assert (d0 - d2).abs().min() > 1e-6
    # AC-GAN: D does not see the label and has a class head of n_modes outputs
    models, data, cond = built("model.conditional=true", "loss.aux_weight=1")
    assert models.discriminator(data.sample(4)).shape == (4, 1 + data.n_modes)


def test_mixture_labels_are_the_components_samples_come_from():
    mixture = GaussianMixture([-4.0, 0.0, 4.0], 0.1, weights=[0.2, 0.3, 0.5])
    x, k = mixture.sample_labelled(2000, generator=torch.Generator().manual_seed(0))
    assert (x.squeeze(1) - mixture.means[k, 0]).abs().max() < 0.6
    assert torch.bincount(k).tolist() == pytest.approx([400, 600, 1000], abs=80)
    assert torch.bincount(mixture.balanced_labels(10)).tolist() == [2, 3, 5]
    # the unlabelled draw is the same draw
    again = mixture.sample(2000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, x)


def test_per_class_fit_measures_whether_each_label_lands_on_its_mode():
    mixture = GaussianMixture([-4.0, 0.0, 4.0], 0.5)
    g = torch.Generator().manual_seed(1)
    real = mixture.sample(3000, generator=g, exact_weights=True)
    labels = mixture.balanced_labels(3000)
    fake = mixture.sample(3000, generator=g, exact_weights=True)  # a perfect conditional G
    good = per_class_fit(fake, labels, real, mixture, generator=g)
    assert good["class_fidelity"] > 0.99 and good["class_w1_max"] < 0.08
    # a G that draws component k+1 when asked for k: perfect marginal, wrong classes
    wrong = per_class_fit(fake, (labels + 2) % 3, real, mixture, generator=g)
    assert wrong["class_fidelity"] < 0.01 and min(wrong["class_w1"]) > 3.5


def test_class_fidelity_is_the_share_of_each_class_read_as_asked():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.1, 0.9, 0.0]])
    result = class_fidelity(probs, torch.tensor([0, 1, 1, 1]))
    assert result["fidelity_by_class"] == [1.0, pytest.approx(2 / 3), None]
    assert result["class_fidelity"] == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("overrides, key, says", [
    (["loss.aux_weight=1"], "loss.aux_weight", "model.conditional=true"),
    (["model.conditional=true", "loss.aux_weight=-1"], "loss.aux_weight", ">= 0"),
    (["model.conditional=true", "train.unroll_steps=2"], "train.unroll_steps", "conditional"),
    (["model.conditional=true", "loss.aux_weight=1", "model.discriminator.pack=2"],
     "model.discriminator.pack", "pack=1"),
    (["model=dcgan", "model.generator.norm=virtual_batch", "model.conditional=true"],
     "model.generator.norm", "labels or noise categories"),
])
def test_label_options_that_cannot_work_are_refused(overrides, key, says):
    with pytest.raises(UserError, match=key) as e:
        validate_train_config(compose_train(TINY + overrides))
    assert says in str(e.value)


# ---------------------------------------------------------------- training with labels
def test_a_conditional_gan_puts_each_label_on_its_own_mode(run_tiny, tmp_path):
    summary, run_dir = run_tiny("model.conditional=true", "train.steps=200",
                                "train.eval_every=100")
    m = summary["metrics"]
    assert m["class_fidelity"] > 0.95 and m["modes_covered"] == 3
    assert len(m["class_w1"]) == 3 and m["class_w1_max"] == max(m["class_w1"])
    with open(run_dir / "metrics.csv") as f:
        evaluated = [r for r in csv.DictReader(f) if r["w1"]]
    assert float(evaluated[-1]["class_fidelity"]) == pytest.approx(m["class_fidelity"])
    # gan-sample label=k draws from mode k only (the tri-modal modes are -4, 0, 4)
    run_sample(run_dir, tmp_path / "two.npy", "label=2", "n=500")
    assert (np.load(tmp_path / "two.npy") > 2).mean() > 0.95  # nearest to 4
    run_sample(run_dir, tmp_path / "mixed.npy", "labels=[0,2]", "n=500")
    x = np.load(tmp_path / "mixed.npy")[:, 0]  # two blocks: class 0, then class 2
    assert (x[:250] < -2).mean() > 0.95 and (x[250:] > 2).mean() > 0.95
    with pytest.raises(UserError, match=r"classes 0\.\.2"):
        run_sample(run_dir, tmp_path / "x.npy", "label=3")


def test_per_class_metrics_leave_the_live_logger_working(run_tiny):
    """summary metrics now hold lists (class_w1): TensorBoard's HParams view gets numbers."""
    pytest.importorskip("tensorboard", reason="tensorboard is not installed; CI installs it")
    summary, run_dir = run_tiny("model.conditional=true", "logger=tensorboard",
                                "train.steps=10", "eval.plots=false")
    assert summary["status"] == "completed" and len(summary["metrics"]["class_w1"]) == 3
    assert list((run_dir / "tb").rglob("events.out.tfevents.*"))


def test_gan_sample_refuses_a_label_for_an_unconditional_generator(run_tiny, tmp_path):
    _, run_dir = run_tiny("train.steps=10", "eval.plots=false")
    with pytest.raises(UserError, match="unconditional"):
        run_sample(run_dir, tmp_path / "x.npy", "label=1")


def test_acgan_trains_a_class_head_that_recognises_the_modes(run_tiny):
    summary, run_dir = run_tiny("model.conditional=true", "loss.aux_weight=1",
                                "train.steps=150", "train.eval_every=150")
    assert summary["status"] == "completed" and summary["metrics"]["class_fidelity"] > 0.9
    models, data, cond = built("model.conditional=true", "loss.aux_weight=1")
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    models.discriminator.load_state_dict(state["discriminator"])
    x, k = data.sample_labelled(600, generator=torch.Generator().manual_seed(3))
    _, class_logits = cond.split(models.discriminator(x))
    assert (class_logits.argmax(1) == k).float().mean() > 0.95


def test_conditional_replicas_follow_their_single_runs(run_tiny, tmp_path):
    labelled = ["model.conditional=true", "train.steps=30", "train.log_every=10",
                "train.eval_every=30", "eval.plots=false"]
    batched, _ = run_tiny(*labelled, "train.replicas=2", "seed=1", run_dir=tmp_path / "b")
    single, _ = run_tiny(*labelled, "seed=2", run_dir=tmp_path / "s")
    ours = batched["per_replica"][1]["metrics"]
    assert ours["class_fidelity"] == pytest.approx(single["metrics"]["class_fidelity"], abs=2e-3)
    assert ours["w1"] == pytest.approx(single["metrics"]["w1"], abs=2e-3)


def test_a_conditional_run_resumes_exactly(tmp_path):
    labelled = TINY + ["model.conditional=true", "eval.plots=false", "optim/schedule=constant"]
    whole = train(compose_train(labelled), tmp_path / "whole")
    train(compose_train(labelled + ["train.steps=30"]), tmp_path / "part")
    resumed = train(compose_train(labelled + [f"resume={tmp_path / 'part'}"]),
                    tmp_path / "ignored", overrides=["train.steps=60"])
    assert resumed["metrics"] == whole["metrics"]


def test_conditional_dcgan_on_digits_writes_a_row_per_class(digits_root, tmp_path):  # noqa: F811
    root = tmp_path / "digits"
    shutil.copytree(digits_root, root)
    summary = train(compose_train(tiny_image_run(root, "model.conditional=true")),
                    tmp_path / "run")
    assert 0.0 <= summary["metrics"]["class_fidelity"] <= 1.0
    assert len(summary["metrics"]["fidelity_by_class"]) == 10
    # the real images' fidelity is the classifier's accuracy: the bars are easy
    assert summary["reference_metrics"]["class_fidelity"] > 0.9
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert "class_fidelity" in next(csv.DictReader(f))
    shutil.rmtree(root)  # gan-sample needs only the checkpoint
    run_sample(tmp_path / "run", tmp_path / "threes.npy", "label=3", "n=12")
    assert np.load(tmp_path / "threes.npy").shape == (12, 1, 28, 28)
    run_sample(tmp_path / "run", tmp_path / "grid.png", "n=20")  # 10 rows of 2
    assert (tmp_path / "grid.png").stat().st_size > 1000
    with pytest.raises(UserError, match="multiple of its 10 classes"):  # rows would not align
        run_sample(tmp_path / "run", tmp_path / "odd.png", "n=64")


def test_gan_sample_draws_the_classes_a_run_trained_on_by_default():
    from omegaconf import OmegaConf

    from gan_cli.sample import class_labels

    cfg = OmegaConf.create({"n": 6, "ckpt": "run", "label": None, "labels": None})
    images = object()  # an image set's stand-in: no balanced_labels, as in gan-sample
    y, classes = class_labels(cfg, 10, images, {"eval_labels": torch.tensor([3, 5, 3, 5])}, CPU)
    assert classes == [3, 5] and y.tolist() == [3, 3, 3, 5, 5, 5]
    mixture = GaussianMixture([-4.0, 0.0, 4.0], 0.5, weights=[1, 1, 4])
    y, classes = class_labels(cfg, 3, mixture, {}, CPU)  # the components in their shares
    assert y.tolist() == [0, 1, 2, 2, 2, 2] and classes == [0, 1, 2]


def test_acgan_dcgan_has_a_class_head_and_runs(digits_root, tmp_path):  # noqa: F811
    cfg = compose_train(tiny_image_run(digits_root, "loss.aux_weight=1", "train.steps=20",
                                       "model.conditional=true", "eval.plots=false"))
    summary = train(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    state = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "class_fidelity" in state["metrics"]
    d = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    head = [v for k, v in d["discriminator"].items() if k.endswith("weight")][-1]
    assert head.shape[0] == 11  # 1 logit + 10 class logits
