"""Image data end to end: the image models, the pictures, and a tiny MNIST-format run
on synthetic IDX files written by the test (MNIST itself cannot be downloaded here)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_cli.errors import UserError
from gan_cli.data.mnist import write_idx
from gan_cli.models import DCGANDiscriminator, DCGANGenerator, ema_update
from gan_cli.plots import image_grid
from conftest import compose_train


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images where class k is a bright 4-pixel-wide vertical bar at
    column 2 + 2.4 k, plus faint noise; labels cycle 0..9."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 30, (n, 28, 28))
    for i, k in enumerate(labels):
        col = 2 + int(2.4 * k)
        images[i, 4:24, col:col + 4] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


@pytest.fixture(scope="module", autouse=True)
def quick_classifier():
    """The bars are learnt in 100 minibatches; real digit sets get 600 at least."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr("gan_cli.image_metrics.MIN_STEPS", 100)
        yield


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory) -> Path:
    """A folder with the four MNIST files (gzipped) of synthetic digits."""
    root = tmp_path_factory.mktemp("digits")
    for prefix, n, seed in (("train", 400, 0), ("t10k", 200, 1)):
        images, labels = synthetic_digits(n, seed)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def tiny_image_run(root: Path, *overrides: str, model: str = "dcgan",
                   device: str = "cpu") -> list[str]:
    """A few steps of a small DCGAN (or model=mlp_image) on the synthetic digits."""
    small = ["model.generator.width=8", "model.discriminator.width=8"] if model == "dcgan" \
        else ["model.generator.hidden=[32]", "model.discriminator.hidden=[32]"]
    return ["experiment=mnist_dcgan", f"model={model}", f"data.root={root}",
            "data.download=false", f"device={device}", "print_config=false", "train.steps=40",
            "train.batch_size=16", "train.log_every=10", "train.eval_every=20",
            "train.ckpt_every=20", "eval.n_samples=200", *small, *overrides]


# ---------------------------------------------------------------- models
def test_dcgan_maps_noise_to_images_in_range_and_images_to_one_logit():
    torch.manual_seed(0)
    G, D = DCGANGenerator(100, [1, 28, 28], width=8), DCGANDiscriminator([1, 28, 28], 1, width=8)
    x = G(torch.randn(5, 100))
    assert x.shape == (5, 1, 28, 28)
    assert x.abs().max() <= 1.0 and x.std() > 0  # tanh output, not constant
    assert D(x).shape == (5, 1)
    # any size divisible by 4, any channel count (e.g. CIFAR-like 3 x 32 x 32)
    assert DCGANGenerator(16, [3, 32, 32], width=4)(torch.randn(2, 16)).shape == (2, 3, 32, 32)
    assert DCGANDiscriminator([3, 32, 32], 1, width=4)(torch.randn(2, 3, 32, 32)).shape == (2, 1)


def test_dcgan_follows_the_papers_layout_and_initialisation():
    torch.manual_seed(0)
    G, D = DCGANGenerator(100, [1, 28, 28], width=64), DCGANDiscriminator([1, 28, 28], 1, width=64)
    g_norms = [m for m in G if isinstance(m, torch.nn.BatchNorm2d)]
    assert [m.num_features for m in g_norms] == [128, 64]  # every layer but G's output
    assert isinstance(G[-1], torch.nn.Tanh)
    assert not isinstance(D[1], torch.nn.BatchNorm2d)  # none right after D's input layer
    w = D[0].weight
    assert abs(w.std().item() - 0.02) < 0.003 and abs(w.mean().item()) < 0.003
    assert abs(g_norms[0].weight.mean().item() - 1.0) < 0.01


def test_dcgan_refuses_images_whose_size_does_not_divide_by_4():
    with pytest.raises(UserError, match=r"divide by 4.*\(1, 30, 30\)|divide by 4.*\[1, 30, 30\]"):
        DCGANGenerator(100, [1, 30, 30])


def test_ema_copies_batch_norm_statistics_of_the_live_generator():
    G, avg = DCGANGenerator(8, [1, 8, 8], width=4), DCGANGenerator(8, [1, 8, 8], width=4)
    G(torch.randn(32, 8) * 3)  # a training-mode pass moves the running statistics
    ema_update(avg, G, decay=0.9)
    for a, b in zip(avg.buffers(), G.buffers()):
        assert torch.equal(a, b)


def test_image_grid_tiles_images_row_by_row_with_a_border():
    images = torch.full((3, 1, 2, 2), -1.0)
    images[1] = 1.0  # the second image white
    grid = image_grid(images, columns=2)  # 2 rows of (2 + 1) + 1 pixels, same across
    assert grid.shape == (7, 7, 1)
    assert grid[1:3, 1:3].max() == 0.0  # image 0: black ([-1, 1] -> [0, 1])
    assert grid[1:3, 4:6].min() == 1.0  # image 1: white, second column
    assert grid[4:6, 1:3].max() == 0.0  # image 2: first column of row 2
    assert grid[0].min() == 1.0  # border


# ---------------------------------------------------------------- a run
def test_mnist_dcgan_run_writes_image_pictures_metrics_and_reference(digits_root, tmp_path):
    from gan_cli.train import train

    summary = train(compose_train(tiny_image_run(digits_root)), tmp_path / "run")
    run = tmp_path / "run"
    assert summary["status"] == "completed"
    for name in ("real.png", "samples_0000020.png", "samples_0000040.png", "training.gif",
                 "losses.png"):
        assert (run / "plots" / name).stat().st_size > 1000, name
    m = summary["metrics"]
    assert set(m) == {"fd", "classifier_score", "classes_covered", "n_classes", "class_kl"}
    assert 1.0 <= m["classifier_score"] <= 10.0 and m["n_classes"] == 10
    assert summary["objective"] == m["fd"] and summary["converged_at_step"] is None
    ref = summary["reference_metrics"]  # real training images in G's place
    assert ref["classes_covered"] == 10 and ref["classifier_score"] > 5
    assert 0 < ref["fd"] < m["fd"]  # an untrained G is far further from the test images
    assert summary["classifier"]["test_accuracy"] >= 0.9  # the bars are easy to tell apart
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows if r["fd"]] == ["20", "40"]
    with open(run / "class_mass.csv") as f:
        mass = list(csv.reader(f))
    assert mass[0] == ["step"] + [f"class_{k}" for k in range(10)]
    assert abs(sum(map(float, mass[-1][1:])) - 1.0) < 1e-4  # shares of all samples
    # the fixed evaluation noise is what the frames are drawn from, kept in the checkpoint
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert state["eval_z"].shape == (200, 100)


def test_classes_and_limit_select_the_training_images(digits_root, tmp_path):
    from gan_cli.train import train

    summary = train(compose_train(tiny_image_run(
        digits_root, "data.classes=[3,7]", "data.limit=50", "train.steps=20")), tmp_path / "run")
    assert summary["status"] == "completed"
    log = (tmp_path / "run" / "train.log").read_text()
    assert "50 training images" in log and "3" in log


def test_mlp_image_model_trains_as_batched_replicas(digits_root, tmp_path):
    """The flatten/unflatten layers of the image MLP run per replica (vmap)."""
    from gan_cli.train import train

    summary = train(compose_train(tiny_image_run(
        digits_root, "train.replicas=2", "train.steps=20", model="mlp_image")),
        tmp_path / "run")
    assert summary["status"] == "completed" and summary["replicas"] == 2
    assert [r["seed"] for r in summary["per_replica"]] == [0, 1]
    assert all(r["metrics"]["classes_covered"] >= 0 for r in summary["per_replica"])


def test_dcgan_refuses_replicas(digits_root):
    from gan_cli.config import validate_train_config

    with pytest.raises(UserError, match="train.replicas=2.*convolutional"):
        validate_train_config(compose_train(tiny_image_run(digits_root, "train.replicas=2")))


def test_gradient_penalty_refuses_a_batch_norm_critic(digits_root):
    from gan_cli.config import validate_train_config

    with pytest.raises(UserError, match="batch_norm.*wgan_gp"):
        validate_train_config(compose_train(tiny_image_run(digits_root, "loss=wgan_gp")))
    validate_train_config(compose_train(tiny_image_run(
        digits_root, "loss=wgan_gp", "model.discriminator.batch_norm=false")))


def test_gan_sample_writes_an_image_grid_and_raw_images(digits_root, tmp_path):
    """...without the data files: G is built from the image shape kept in the checkpoint."""
    from gan_cli.sample import sample
    from gan_cli.train import train
    from hydra import compose, initialize_config_module

    root = tmp_path / "digits"
    shutil.copytree(digits_root, root)
    train(compose_train(tiny_image_run(root, "train.steps=20")), tmp_path / "run")
    shutil.rmtree(root)
    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        for out in ("grid.png", "raw.npy"):
            cfg = compose("sample", overrides=[f"ckpt={tmp_path / 'run'}", "n=16",
                                               f"out={tmp_path / out}", "device=cpu"])
            sample(cfg)
    raw = np.load(tmp_path / "raw.npy")
    assert raw.shape == (16, 1, 28, 28) and raw.min() >= -1 and raw.max() <= 1
    assert (tmp_path / "grid.png").stat().st_size > 1000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_same_preset_runs_on_a_gpu(digits_root, tmp_path):
    """device=cuda takes the same code path: data, models, classifier on the GPU."""
    from gan_cli.train import train

    summary = train(compose_train(tiny_image_run(digits_root, device="cuda")), tmp_path / "run")
    assert summary["status"] == "completed" and summary["device"].startswith("cuda")


def test_an_image_run_resumes_exactly(digits_root, tmp_path):
    """20 steps, then resume= to 40: the same metrics as 40 steps in one go."""
    from gan_cli.train import train

    whole = train(compose_train(tiny_image_run(digits_root)), tmp_path / "whole")
    train(compose_train(tiny_image_run(digits_root, "train.steps=20")), tmp_path / "part")
    resumed = train(compose_train(tiny_image_run(digits_root, f"resume={tmp_path / 'part'}")),
                    tmp_path / "ignored", overrides=["train.steps=40"])
    assert resumed["step"] == 40
    assert resumed["metrics"]["fd"] == pytest.approx(whole["metrics"]["fd"], rel=1e-5)
    assert (tmp_path / "part" / "class_mass.csv").read_text() == \
        (tmp_path / "whole" / "class_mass.csv").read_text()


# ---------------------------------------------------------------- #10: upsampling, virtual BN
def test_resize_conv_upsamples_without_transposed_convolutions():
    G = DCGANGenerator(16, [1, 28, 28], width=8, upsample="resize_conv")
    kinds = [type(m).__name__ for m in G]
    assert kinds.count("Upsample") == 2 and kinds.count("ConvTranspose2d") == 1  # the 1x1 -> 7x7
    assert G(torch.randn(3, 16)).shape == (3, 1, 28, 28)
    assert DCGANGenerator(16, [3, 32, 32], width=4, upsample="resize_conv")(
        torch.randn(2, 16)).shape == (2, 3, 32, 32)


def test_virtual_batch_norm_uses_the_reference_batch_plus_each_example():
    from gan_cli.models import VirtualBatchNorm2d

    torch.manual_seed(0)
    vbn = VirtualBatchNorm2d(2, n_reference=3)
    x = torch.randn(5, 2, 4, 4) * 3 + 1  # 3 reference rows, then 2 examples
    y = vbn(x)

    def normalised(rows: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mean = rows.mean((0, 2, 3), keepdim=True)  # by hand, over every pixel of `rows`
        var = rows.var((0, 2, 3), unbiased=False, keepdim=True)
        return (target - mean) / torch.sqrt(var + 1e-5)

    assert torch.allclose(y[:3], normalised(x[:3], x[:3]), atol=1e-5)
    for i in (3, 4):  # the reference batch plus example i alone
        assert torch.allclose(y[i], normalised(torch.cat([x[:3], x[i:i + 1]]), x[i])[0], atol=1e-5)


def test_virtual_batch_norm_makes_each_sample_independent_of_its_batch():
    torch.manual_seed(0)
    z = torch.randn(6, 16)
    vbn = DCGANGenerator(16, [1, 28, 28], width=8, norm="virtual_batch", reference_batch=8)
    assert torch.allclose(vbn(z)[:2], vbn(z[:2]), atol=1e-5)  # training mode, too
    bn = DCGANGenerator(16, [1, 28, 28], width=8)
    assert not torch.allclose(bn(z)[:2], bn(z[:2]), atol=1e-3)  # batch norm mixes the batch


def test_the_reference_batch_survives_a_checkpoint(digits_root, tmp_path):
    from gan_cli.train import train

    summary = train(compose_train(tiny_image_run(
        digits_root, "model.generator.norm=virtual_batch", "model.generator.reference_batch=8",
        "model.generator.upsample=resize_conv", "train.steps=20")), tmp_path / "run")
    assert summary["status"] == "completed"
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    reference = state["generator"]["1.reference"]
    assert reference.shape == (8, 100, 1, 1)
    torch.manual_seed(123)  # another seed: another reference batch, until loaded
    G = DCGANGenerator(100, [1, 28, 28], width=8, upsample="resize_conv", norm="virtual_batch",
                       reference_batch=8)
    assert not torch.equal(G[1].reference, reference)
    G.load_state_dict(state["generator"])
    assert torch.equal(G[1].reference, reference)


def test_the_image_switches_change_the_networks():
    """model.discriminator.batch_norm=false drops D's batch norm; output_activation=tanh
    bounds the MLP's output (what the image MLP's G relies on)."""
    from gan_cli.models import MLP

    plain = DCGANDiscriminator([1, 28, 28], 1, width=8, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain)
    torch.manual_seed(0)
    z = torch.randn(64, 100) * 10
    bounded = MLP(100, [1, 28, 28], hidden=[32], output_activation="tanh")(z)
    linear = MLP(100, [1, 28, 28], hidden=[32])(z)
    assert bounded.shape == (64, 1, 28, 28) and bounded.abs().max() <= 1.0
    assert linear.abs().max() > 1.0
