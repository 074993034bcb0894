"""FID and KID of image runs from a local Inception v3 weights file (eval.inception_weights).

Nothing here re-implements them: the network is torch-fidelity's TensorFlow-compatible
Inception v3 (the one FID papers use, via torchmetrics' NoTrainInceptionV3 with
torch-fidelity's TF1 bilinear resize to 299 x 299), and the numbers are torchmetrics'
FrechetInceptionDistance and KernelInceptionDistance on its 2048 pool features. The
features of each image are computed once and given to both metrics.

- `fid` — Fréchet distance between Gaussians fitted to the pool features of G's images and
  of the real held-out images (0 = identical statistics; biased upwards at small counts,
  so compare runs only at equal eval.inception_samples, and against `floor`).
- `kid`, `kid_std` — the kernel (cubic polynomial) MMD^2 between the two feature sets,
  mean and std over KID_SUBSETS random subsets (kid_subset_size) of both sets (unbiased:
  about 0 for a perfect G).

torch-fidelity's package __init__ imports its CLIP, VGG and data-set modules, which need
torchvision; its Inception module does not. Where torchvision cannot be imported (no
build matches this torch, or PyPI's does not load beside it), the package is entered
without running that __init__ (`_torch_fidelity_without_torchvision`).
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Optional

import torch
from torch import nn

from gan_cli.errors import UserError

KEY = "eval.inception_weights"
METRIC_KEYS = ("fid", "kid", "kid_std")
FEATURES = 2048  # Inception's pool3 features, on which FID and KID are defined
KID_SUBSETS = 100  # torchmetrics' default
# images per subset: torchmetrics' default 1000, or half the smaller set when that is
# fewer (subsets of all the images would all be the same one: kid_std 0, saying nothing)
KID_SUBSET_SIZE = 1000
KID_SEED = 0  # the subsets are drawn from their own seed: the GAN's random stream does not move
CHUNK = 25  # images per Inception call (its activations at 299 x 299 are ~30 MB per image)
# where torch-fidelity downloads the weights from (download elsewhere; gan_cli never does)
WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth")
# --no-deps: torch-fidelity's torchvision dependency is not needed, and pip would pick a
# torchvision (and with it maybe another torch) that does not match the installed torch
INSTALL = 'pip install "gan-cli[fid]" && pip install --no-deps torch-fidelity'


# ---------------------------------------------------------------- the libraries
def _torch_fidelity_without_torchvision() -> None:
    """Make `import torch_fidelity.feature_extractor_inceptionv3` work without torchvision."""
    if "torch_fidelity" in sys.modules:
        return
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None:
        raise ImportError("No module named 'torch_fidelity'")
    try:
        import torch_fidelity  # noqa: F401  (the whole package, when torchvision imports)
    except Exception:  # torchvision missing, or built for another torch (RuntimeError)
        for name in [m for m in sys.modules if m.split(".")[0] == "torch_fidelity"]:
            del sys.modules[name]  # the half-imported package's modules
        package: ModuleType = importlib.util.module_from_spec(spec)  # __path__, no __init__
        sys.modules["torch_fidelity"] = package


def library(where: str = KEY) -> SimpleNamespace:
    """torchmetrics' FID, KID and Inception; UserError (starting with `where`) saying what
    to install without them."""
    try:
        _torch_fidelity_without_torchvision()
        from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError as e:
        raise UserError(f"{where}: FID and KID need torchmetrics and torch-fidelity ({e}): "
                        f"{INSTALL}") from None
    return SimpleNamespace(fid=FrechetInceptionDistance, kid=KernelInceptionDistance,
                           inception=NoTrainInceptionV3)


def _first_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:240] or type(e).__name__


def load_inception(path: str, device: torch.device) -> nn.Module:
    """torch-fidelity's Inception v3 with the weights in `path` (a state dict saved by
    torch.save), in eval mode on `device`. UserError naming the key and file otherwise."""
    where = f"{KEY}={path}"
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{where}: no such file (a local Inception v3 weights file, e.g. "
                        f"torch-fidelity's {WEIGHTS_URL.rsplit('/', 1)[1]}; see docs/images.md)")
    lib = library(where)
    try:  # tensors only: the library itself loads the file with weights_only=False
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{where}: not a PyTorch weights file ({_first_line(e)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise UserError(f"{where}: not a state dict (a dict of tensors saved by torch.save)")
    try:  # the same file, now known to hold tensors only
        net = lib.inception(name="inception-v3-compat", features_list=[str(FEATURES)],
                            feature_extractor_weights_path=str(file), antialias=False)
    except RuntimeError as e:  # missing or unexpected keys, shapes that differ
        reason = _first_line(e).replace("Error(s) in loading state_dict for NoTrainInceptionV3: ",
                                        "")
        raise UserError(f"{where}: not the weights of torch-fidelity's Inception v3 "
                        f"({reason[:200]})") from None
    return net.to(device)


# ---------------------------------------------------------------- features and metrics
def as_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1], C = 1 or 3 -> (N, 3, H, W) uint8 in [0, 255], what the
    Inception expects (it resizes to 299 x 299 itself); one channel is repeated."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@torch.no_grad()
def inception_features(net: nn.Module, images: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """(N, 2048) pool features, float64 on the CPU, of images (N, C, H, W) in [-1, 1]."""
    device = next(net.parameters()).device
    return torch.cat([net(as_uint8_rgb(batch.to(device))).double().cpu()
                      for batch in images.split(chunk)])


class _Given(nn.Module):
    """torchmetrics' feature-network slot filled with features computed beforehand."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features  # torchmetrics sizes its running sums from it

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def kid_subset_size(n_fake: int, n_real: int) -> int:
    return min(KID_SUBSET_SIZE, max(2, min(n_fake, n_real) // 2))


def fid_kid(fake: torch.Tensor, real: torch.Tensor) -> dict:
    """fid, kid and kid_std (torchmetrics') between Inception features fake (n, F) and
    real (m, F), n, m >= 2. FID's matrix square root (eigvals of a 2048 x 2048 product)
    takes a few seconds on a CPU."""
    lib = library()
    fid = lib.fid(feature=_Given(fake.shape[1]))
    with warnings.catch_warnings():  # "KID keeps all features in memory": a few MB here
        warnings.simplefilter("ignore", UserWarning)
        kid = lib.kid(feature=_Given(fake.shape[1]), subsets=KID_SUBSETS,
                      subset_size=kid_subset_size(len(fake), len(real)))
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):  # KID's subsets come from the global generator
        torch.manual_seed(KID_SEED)
        kid_mean, kid_std = kid.compute()
    return {"fid": fid.compute().item(), "kid": kid_mean.item(), "kid_std": kid_std.item()}


class InceptionMetrics:
    """An image evaluation (ImageEvaluation or FeatureEvaluation) plus fid, kid and kid_std
    of eval.inception_samples of G's images against as many real held-out images;
    everything else is the wrapped evaluation's."""

    def __init__(self, inner: Any, data: Any, eval_cfg: Any, device: torch.device):
        self.inner, self.path = inner, str(eval_cfg.inception_weights)
        self.n = eval_cfg.get("inception_samples") or 1000
        held_out = data.test_split()[0][:self.n]
        if len(held_out) < 2:
            raise UserError(f"{where}: FID and KID need at least 2 held-out images, the data "
                            f"hold {len(held_out)} (raise data.holdout)")
        self.net = load_inception(self.path, device)
        self.real = inception_features(self.net, held_out)
        train = data.full_train_split()[0][:self.n]  # real images in G's place
        self.floor = fid_kid(inception_features(self.net, train), self.real)
        self.columns = (*inner.columns, *METRIC_KEYS)
        self.summary_keys = (*inner.summary_keys, *METRIC_KEYS)

    def __getattr__(self, name: str) -> Any:  # objective, histogram, converged, picture, ...
        return getattr(self.inner, name)

    def metrics(self, fake: torch.Tensor, rng: torch.Generator,
                labels: Optional[torch.Tensor] = None) -> dict:
        metrics = self.inner.metrics(fake, rng, labels=labels)
        fake = fake[:self.n]
        if len(fake) < 2 or not torch.isfinite(fake).all():  # e.g. a diverged G's NaNs
            return {**metrics, **dict.fromkeys(METRIC_KEYS, float("nan"))}
        return {**metrics, **fid_kid(inception_features(self.net, fake), self.real)}

    def line(self, m: dict) -> str:
        return f"{self.inner.line(m)}  fid {m['fid']:.2f}  kid {m['kid']:.4f}"

    def start(self, plots_dir: Optional[Path]) -> dict:
        return {**self.inner.start(plots_dir), "inception": {
            "weights": self.path, "images": len(self.real),
            "floor": self.floor}}  # the training images' own fid and kid at that count
