"""FID and KID from a local Inception weights file (eval.inception_weights): torchmetrics'
numbers with torch-fidelity's Inception, here with a stand-in weights file made by the
test (the library's own architecture, seeded random weights)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gan_cli.errors import UserError
from conftest import compose_train

from gan_cli import inception
from gan_cli.inception import fid_kid, inception_features, load_inception

try:  # torch-fidelity installed without torchvision breaks a plain `import torchmetrics`
    inception.library()
except UserError as e:
    pytest.skip(str(e), allow_module_level=True)


def write_stand_in_weights(path: Path, seed: int = 0) -> Path:
    """torch-fidelity's Inception v3 with seeded random weights, saved as the real file is:
    a state dict. Convolutions get He initialisation so that the features neither vanish
    nor explode through the ~90 layers (PyTorch's default init shrinks them to ~1e-8)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    class Unloaded(fe.FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # the layers as built, not a download
            return None

    real_download = fe.load_state_dict_from_url
    fe.load_state_dict_from_url = lambda *a, **k: {}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = Unloaded("inception-v3-compat", ["2048"])
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    finally:
        fe.load_state_dict_from_url = real_download
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_stand_in_weights(tmp_path_factory.mktemp("inception") / "stand_in.pt")


@pytest.fixture
def quick_inception(monkeypatch):
    """FID and KID on the Inception's first block (64 features, a choice torchmetrics
    offers) instead of its 2048 pool features: the same code, but FID's 2048 x 2048
    eigenvalue problem and most of the network, tens of seconds on a busy CPU, drop out."""
    monkeypatch.setattr(inception, "FEATURES", 64)


def images(kind: str, n: int, seed: int) -> torch.Tensor:
    """(n, 1, 16, 16) in [-1, 1]: 'noise' (uniform grey noise) or 'bars' (dark, one bright bar)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "noise":
        return torch.rand(n, 1, 16, 16, generator=g) * 2 - 1
    x = torch.rand(n, 1, 16, 16, generator=g) * 0.2 - 1
    x[..., 3:13, 6:9] = 1.0
    return x


# ---------------------------------------------------------------- the numbers
@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
@pytest.mark.parametrize("features", [64, pytest.param(2048, marks=pytest.mark.slow)])
def test_fid_kid_are_the_librarys_near_0_for_a_set_against_itself(weights, features,
                                                                   monkeypatch):
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.kid import KernelInceptionDistance

    monkeypatch.setattr(inception, "FEATURES", features)  # 2048: as shipped
    net = load_inception(str(weights), torch.device("cpu"))
    a, b = images("noise", 4, seed=1), images("bars", 4, seed=2)
    fa, fb = inception_features(net, a), inception_features(net, b)
    same, apart = fid_kid(fa, fa), fid_kid(fb, fa)
    assert abs(same["fid"]) < 1e-4  # rounding in the eigenvalues
    # KID is unbiased: below 0 as often as above for equal sets, here 4 images against the same 4
    assert abs(same["kid"]) < 0.1 * apart["kid"] and apart["fid"] > 1e4 * abs(same["fid"])

    # torchmetrics straight on the uint8 images, its Inception loading the same file
    ua, ub = inception.as_uint8_rgb(a), inception.as_uint8_rgb(b)
    fid = FrechetInceptionDistance(feature=features, antialias=False,
                                   feature_extractor_weights_path=str(weights))
    fid.update(ua, real=True)
    fid.update(ub, real=False)
    assert fid.compute().item() == pytest.approx(apart["fid"], rel=1e-4)
    kid = KernelInceptionDistance(feature=NoTrainInceptionV3(
        "inception-v3-compat", [str(features)], str(weights), antialias=False), subset_size=2)
    kid.update(ua, real=True)
    kid.update(ub, real=False)
    torch.manual_seed(inception.KID_SEED)
    kid_mean, kid_std = kid.compute()
    assert kid_mean.item() == pytest.approx(apart["kid"], rel=1e-4)
    assert inception.kid_subset_size(4, 4) == 2  # half of each set per subset: they differ
    assert kid_std.item() == pytest.approx(apart["kid_std"], rel=1e-3) and kid_std > 0


def test_grey_images_become_three_equal_uint8_channels():
    x = torch.tensor([-1.0, 0.0, 1.0, 7.0]).reshape(1, 1, 2, 2)
    u = inception.as_uint8_rgb(x)
    assert u.dtype == torch.uint8 and u.shape == (1, 3, 2, 2)
    assert u[0, :, 0, 0].tolist() == [0] * 3 and u[0, 2].flatten().tolist() == [0, 128, 255, 255]


# ---------------------------------------------------------------- refusals
def _refusal(path: str) -> str:
    with pytest.raises(UserError) as e:
        load_inception(path, torch.device("cpu"))
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"eval.inception_weights={path}: ")
    return message


def test_missing_unreadable_and_wrong_files_are_refused_with_one_line(tmp_path):
    assert "no such file" in _refusal(str(tmp_path / "nope.pt"))
    (tmp_path / "notes.txt").write_text("not weights")
    assert "not a PyTorch weights file" in _refusal(str(tmp_path / "notes.txt"))
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    assert "not a state dict" in _refusal(str(tmp_path / "list.pt"))
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "linear.pt")
    message = _refusal(str(tmp_path / "linear.pt"))
    assert "not the weights of torch-fidelity's Inception v3" in message and "Conv2d" in message


def test_without_the_libraries_one_line_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)  # as if not installed
    (tmp_path / "w.pt").write_bytes(b"")
    message = _refusal(str(tmp_path / "w.pt"))
    assert "need torchmetrics and torch-fidelity" in message and \
        'pip install "gan-cli[fid]" && pip install --no-deps torch-fidelity' in message


def test_the_weights_url_in_the_docs_is_torch_fidelitys():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert inception.WEIGHTS_URL == URL_INCEPTION_V3
    assert URL_INCEPTION_V3 in (Path(__file__).parents[1] / "docs" / "images.md").read_text()


def bar_folder(root: Path, n: int = 12) -> Path:
    """A flat folder of grey 16 x 16 PNGs with a bright bar (no labels)."""
    from PIL import Image

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.integers(0, 30, (16, 16)).astype(np.uint8)
        a[2:14, 2 + i % 8:4 + i % 8] = 255
        Image.fromarray(a).save(root / f"{i:02d}.png")
    return root


def tiny_run(root: Path, weights: Path | str, *overrides: str) -> list[str]:
    return ["data=image_folder", f"data.path={root}", "data.size=16", "data.holdout=0.25",
            "model=dcgan", "optim=dcgan", "model.generator.width=4",
            "model.discriminator.width=4", "device=cpu", "print_config=false",
            "train.steps=4", "train.batch_size=4", "train.log_every=4", "train.eval_every=4",
            "train.ckpt_every=null", "eval.n_samples=8", "eval.knn_k=2", "eval.plots=false",
            f"eval.inception_weights={weights}", "eval.inception_samples=3", *overrides]


def test_a_bad_weights_file_exits_2_before_anything_is_written(tmp_path):
    root = bar_folder(tmp_path / "bars")
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "linear.pt")
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", "from gan_cli.cli import train_main; "
                           "train_main()", *tiny_run(root, tmp_path / "linear.pt"),
                           f"hydra.run.dir={run_dir}"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "eval.inception_weights=" in lines[0] and \
        "linear.pt: not the weights of torch-fidelity's Inception v3" in lines[0], done.stderr
    assert not run_dir.exists()


def test_point_data_refuses_inception_weights(tmp_path, weights):
    from gan_cli.train import train

    np.save(tmp_path / "p.npy", np.random.default_rng(0).normal(size=(200, 2)))
    with pytest.raises(UserError, match=r"eval.inception_weights=.*FID and KID are for images"):
        train(compose_train(["data=points", f"data.path={tmp_path / 'p.npy'}", "device=cpu",
                             f"eval.inception_weights={weights}", "train.steps=2"]),
              tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- a run
def test_an_image_run_writes_fid_and_kid_beside_its_other_metrics(tmp_path, weights,
                                                                  monkeypatch, quick_inception):
    from gan_cli.train import train

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    summary = train(compose_train(tiny_run(bar_folder(tmp_path / "bars"), weights)), run_dir)
    assert summary["status"] == "completed"
    m = summary["metrics"]
    assert {"fd", "precision", "fid", "kid", "kid_std"} <= set(m)
    assert m["fid"] > 0 and math.isfinite(m["kid"])
    info = summary["inception"]
    assert info["weights"] == str(weights) and info["images"] == 3
    assert info["floor"]["fid"] < m["fid"]  # real training images beat an 4-step G
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    evaluated = [r for r in rows if r["fid"]]
    assert evaluated and float(evaluated[-1]["fid"]) == pytest.approx(m["fid"], rel=1e-6)
    assert json.loads((run_dir / "summary.json").read_text())["metrics"]["kid"] == m["kid"]
    assert "fid " in (run_dir / "train.log").read_text()


def test_fewer_than_2_inception_samples_are_refused():
    from gan_cli.config import validate_train_config

    with pytest.raises(UserError, match=r"eval.inception_samples=1: must be at least 2"):
        validate_train_config(compose_train(["eval.inception_samples=1"]))
