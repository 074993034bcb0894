"""Your own images (data=image_folder): layouts, decoding, the cache, bad input, DCGAN at
32 and 64 px, and tiny runs on folders of PNG / JPEG files written by the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_cli.errors import UserError
from gan_cli.data import image_folder
from gan_cli.data.image_folder import ImageFolder, decode
from gan_cli.models import DCGANDiscriminator, DCGANGenerator
from conftest import compose_train, run_sample


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test decodes into (and trains its classifier in) its own user cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("gan_cli.image_metrics.MIN_STEPS", 30)  # bars are learnt fast


def bar_folder(root: Path, classes: int = 3, per_class: int = 12, size: int = 16) -> Path:
    """Grey PNGs in class subfolders: class k is a bright vertical bar at column 2 + 4k."""
    rng = np.random.default_rng(0)
    for k in range(classes):
        (root / f"bar{k}").mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 30, (size, size)).astype(np.uint8)
            a[2:size - 2, 2 + 4 * k:4 + 4 * k] = 255
            Image.fromarray(a).save(root / f"bar{k}" / f"{i:03d}.png")
    return root


def colour_folder(root: Path, n: int = 40) -> Path:
    """A flat folder of RGB images of different sizes and shapes, alternately JPEG and PNG,
    each mostly one of red, green or blue."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(24, 70, 2))
        a = rng.integers(0, 40, (h, w, 3)).astype(np.uint8)
        a[..., i % 3] = 220
        Image.fromarray(a).save(root / f"im{i:02d}{'.jpg' if i % 2 else '.png'}")
    return root


# ---------------------------------------------------------------- reading
def test_class_subfolders_give_labels_and_a_shuffled_training_split(tmp_path):
    data = ImageFolder(str(bar_folder(tmp_path / "bars")), size=16, holdout=0.25)
    assert data.class_names == ["bar0", "bar1", "bar2"] and data.n_classes == 3
    assert data.shape == (1, 16, 16) and len(data.images) == 27
    test_x, test_y = data.test_split()
    assert len(test_x) == 9 and data.images.min() >= -1 and data.images.max() <= 1
    # the bar's column tells the class: every image's brightest column is its label's
    for x, y in ((data.images, data.labels), (test_x, test_y)):
        column = x[:, 0, 4:12].mean(1).argmax(-1)  # (N,)
        assert torch.equal((column - 2) // 4, y)
    assert data.labels[:9].unique().numel() > 1  # shuffled: not class after class
    assert data.balanced_labels(7).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_rgb_folder_of_mixed_jpeg_png_sizes_keeps_its_colours(tmp_path):
    data = ImageFolder(str(colour_folder(tmp_path / "rgb")), size=32, channels=3)
    assert data.shape == (3, 32, 32) and data.n_classes == 0 and data.labels is None
    assert len(data.images) + len(data.test_split()[0]) == 40
    dominant = data.images.mean((2, 3)).argmax(1)  # (N,) the brightest channel
    assert set(dominant.tolist()) == {0, 1, 2}
    grey = ImageFolder(str(tmp_path / "rgb"), size=32, channels=1)
    assert grey.shape == (1, 32, 32)


def test_resize_keeps_the_centre_square(tmp_path):
    a = np.zeros((20, 40), np.uint8)
    a[:, 10:30] = 255  # a white centre square between black side bands
    Image.fromarray(a).save(tmp_path / "wide.png")
    x = decode(tmp_path / "wide.png", size=10, channels=3)
    assert x.shape == (3, 10, 10) and x.min() > 200  # the black bands were cut away
    assert x[:, :, 1:-1].min() >= 250  # (bicubic blurs the outermost columns a little)


def test_decoded_once_then_read_from_the_cache_until_a_file_changes(tmp_path, monkeypatch):
    root = bar_folder(tmp_path / "bars", classes=2, per_class=4)
    first = ImageFolder(str(root), size=16)
    cached = list((tmp_path / "cache" / "gan_cli" / "image_folder").glob("images_*.npz"))
    assert len(cached) == 1

    def refuse(*args):
        raise AssertionError("decoded again although the cache holds these files")

    monkeypatch.setattr(image_folder, "decode", refuse)
    again = ImageFolder(str(root), size=16)
    assert torch.equal(first.images, again.images)
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    changed = root / "bar0" / "000.png"
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    third = ImageFolder(str(root), size=16)
    assert third.fingerprint() != first.fingerprint()
    assert len(list(cached[0].parent.glob("images_*.npz"))) == 2
    assert third.images.max(dim=0).values.min() == 1.0  # the all-white image is in there


def test_dcgan_builds_32_and_64_pixels_with_more_layers():
    for size, layers in ((28, 3), (32, 4), (64, 5)):
        G = DCGANGenerator(16, (3, size, size), width=4)
        D = DCGANDiscriminator((3, size, size), width=4)
        x = G(torch.randn(2, 16))
        assert x.shape == (2, 3, size, size) and D(x).shape == (2, 1)
        convs = [m for m in G if isinstance(m, torch.nn.ConvTranspose2d)]
        assert len(convs) == layers  # the first map is 7 x 7 (28) or 4 x 4
        assert convs[0].kernel_size == ((7, 7) if size == 28 else (4, 4))


# ---------------------------------------------------------------- bad input
def corrupt_folder(root: Path) -> Path:
    bar_folder(root, classes=2, per_class=3)
    (root / "bar1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


BAD = [
    (lambda p: p / "nowhere", {}, ["data.path=", "no such folder"]),
    (lambda p: (p / "empty").mkdir() or p / "empty", {}, ["no images"]),
    (lambda p: corrupt_folder(p / "c"), {}, ["broken.png", "not a readable image"]),
    (lambda p: bar_folder(p / "m", classes=2, per_class=2) and (
        Image.new("L", (8, 8)).save(p / "m" / "loose.png") or p / "m"), {},
     ["beside class subfolders", "loose.png"]),
    (lambda p: bar_folder(p / "k", classes=4, per_class=1), {"max_classes": 3},
     ["4 class subfolders", "data.max_classes=3"]),
    (lambda p: bar_folder(p / "s", classes=1, per_class=2), {"size": 2}, ["data.size=2"]),
    (lambda p: bar_folder(p / "ch", classes=1, per_class=2), {"channels": 2},
     ["data.channels=2", "1 (greyscale) or 3 (RGB)"]),
]


@pytest.mark.parametrize("make, options, words", BAD, ids=[
    "missing", "empty", "corrupt", "mixed-layout", "too-many-classes", "size", "channels"])
def test_bad_folders_fail_with_one_line_naming_the_problem(tmp_path, make, options, words):
    with pytest.raises(UserError) as e:
        ImageFolder(str(make(tmp_path)), size=options.pop("size", 16), **options)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_a_size_the_dcgan_cannot_build_is_refused_before_anything_is_written(tmp_path):
    from gan_cli.train import train

    root = bar_folder(tmp_path / "bars", classes=2, per_class=4)
    with pytest.raises(UserError, match=r"divide by 4.*data\.size to a multiple of 4"):
        train(compose_train(["data=image_folder", f"data.path={root}", "data.size=30",
                             "model=dcgan", "device=cpu"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_corrupt_image_exits_2_with_one_line_and_writes_nothing(tmp_path):
    root = corrupt_folder(tmp_path / "c")
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", "from gan_cli.cli import train_main; "
                           "train_main()", "data=image_folder", f"data.path={root}",
                           "model=dcgan", "device=cpu", f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.png" in lines[0], done.stderr
    assert not run_dir.exists()


# ---------------------------------------------------------------- end to end
def tiny_run(root: Path, *overrides: str) -> list[str]:
    return ["data=image_folder", f"data.path={root}", "model=dcgan", "optim=dcgan",
            "model.generator.width=4", "model.discriminator.width=4", "device=cpu",
            "print_config=false", "train.steps=8", "train.batch_size=8", "train.log_every=4",
            "train.eval_every=8", "train.ckpt_every=null", "eval.n_samples=16", *overrides]


def test_rgb_folder_at_32_px_trains_and_gan_sample_gives_colour_images(tmp_path):
    from gan_cli.train import train

    root = colour_folder(tmp_path / "rgb")
    run_dir = tmp_path / "run"
    summary = train(compose_train(tiny_run(root, "data.size=32", "data.channels=3",
                                           "data.holdout=0.25", "eval.knn_k=3")), run_dir)
    assert summary["status"] == "completed" and summary["features"].startswith("random CNN")
    assert set(summary["metrics"]) == {"fd", "precision", "recall", "density", "coverage",
                                       "bin_kl"}
    assert summary["floor_metrics"]["precision"] > 0.5 and summary["n_compared"] == 10
    assert (run_dir / "bin_mass.csv").is_file() and (run_dir / "plots" / "real.png").is_file()
    x = np.load(run_sample(run_dir, tmp_path / "samples.npy", "n=12"))
    assert x.shape == (12, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    def colourfulness(png: Path) -> int:  # largest red-green difference of any pixel
        rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
        return np.abs(rgb[..., 0] - rgb[..., 1]).max()

    # grids are drawn in colour (8 steps in, G's own images are still a flat grey: the
    # real images' grid shows what plot_images, which gan-sample uses too, makes of colour)
    assert colourfulness(run_dir / "plots" / "real.png") > 150
    assert run_sample(run_dir, tmp_path / "grid.png", "n=16").is_file()


def test_labelled_folder_gets_the_classifier_metrics_and_a_conditional_g(tmp_path):
    from gan_cli.train import train

    root = bar_folder(tmp_path / "bars")
    summary = train(compose_train(tiny_run(root, "data.size=16", "model.conditional=true")),
                    tmp_path / "run")
    assert summary["classifier"]["test_accuracy"] >= 0.75
    m = summary["metrics"]
    assert m["n_classes"] == 3 and 0 <= m["classes_covered"] <= 3 and "class_fidelity" in m
    header = (tmp_path / "run" / "class_mass.csv").read_text().splitlines()[0]
    assert header == "step,class_0,class_1,class_2"
    x = np.load(run_sample(tmp_path / "run", tmp_path / "two.npy", "n=6", "label=2"))
    assert x.shape == (6, 1, 16, 16)


@pytest.mark.slow
def test_digits_as_png_folders_cover_nine_classes_in_five_cpu_minutes(tmp_path):
    """Acceptance (issue 22): scikit-learn's digits written as PNGs in class subfolders
    (benchmarks/own_data.py digits). Slow: minutes of DCGAN training; needs scikit-learn."""
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from own_data import digits_folder, train_digits

    summary = train_digits(digits_folder(tmp_path / "digits"), tmp_path / "run")
    print(json.dumps(summary["metrics"], indent=1))
    assert summary["metrics"]["classes_covered"] >= 9
    assert summary["train_time_s"] <= 300
