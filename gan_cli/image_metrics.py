"""Metrics for image data, from a small CNN classifier trained on the real training split.

Definitions (design.md, "Metrics"), on N generated images x with class
probabilities p(y|x) and penultimate-layer features f(x) from the classifier:
- `classifier_score` — exp(mean_x KL(p(y|x) || p(y))), p(y) = mean_x p(y|x): between 1
  (one class, or unsure everywhere) and n_classes (every class equally often, each
  image confidently one class). The Inception Score with a digit classifier.
- `fd` — Fréchet distance between Gaussians fitted to the features of the generated
  and of the real test images (FID with this classifier's 128 features).
- `classes_covered` — classes that receive at least MIN_SHARE (for K classes: a fifth of a
  uniform share, 0.2 / K; 2 % for 10 classes) of the confidently classified images
  (max p(y|x) >= CONFIDENT); 0 if no image is confident.
- `class_kl` — KL(histogram || uniform) of the predicted classes (argmax, all images).
- `class_histogram` — that histogram: the share of images predicted as each class.

The classifier is trained once per data set (about a minute on CPU for MNIST) and
cached next to the data files, keyed by their fingerprint, so evaluation works offline.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli.errors import first_line
from gan_cli.files import atomic_write

CONFIDENT = 0.9  # max p(y|x) at which an image counts as confidently classified
MIN_SHARE = 0.2  # x 1/K: share of the confident images one of K classes needs to count as covered
ARCH_VERSION = "v2"  # part of the cache file name: bump when the network or its training changes
EPOCHS = 3  # classifier training passes over the training split (~99 % on MNIST)
MIN_STEPS = 600  # minibatches at least, whatever the set's size
BATCH_SIZE = 128
LR = 1e-3  # Adam, decayed linearly to 0 over training
CHUNK = 1000  # images per classifier call when evaluating (bounds memory)

Log = Callable[[str], None]


# ---------------------------------------------------------------- the classifier
def native_pool_backward(device: torch.device) -> bool:
    """Whether AdaptiveAvgPool differentiates with PyTorch's own kernel: on the CPU (the
    classifier trains bit-identically to earlier versions); not on a GPU, where that
    kernel accumulates with atomic adds, which deterministic=true refuses."""
    return device.type == "cpu"


def _pool_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in): row i averages adaptive pooling's window i along one axis,
    [floor(i n_in / n_out), ceil((i + 1) n_in / n_out))."""
    m = torch.zeros(n_out, n_in, dtype=like.dtype, device=like.device)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


class _PoolWithMatrixBackward(torch.autograd.Function):
    """adaptive_avg_pool2d forward; backward as P_h^T grad P_w, two matrix products
    (deterministic on CUDA)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: int) -> torch.Tensor:
        ctx.in_hw = tuple(x.shape[-2:])
        return F.adaptive_avg_pool2d(x, size)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (h, w), (oh, ow) = ctx.in_hw, grad.shape[-2:]
        # (h, oh) @ (N, C, oh, ow) @ (ow, w) -> (N, C, h, w)
        return _pool_matrix(h, oh, grad).T @ grad @ _pool_matrix(w, ow, grad), None


class AdaptiveAvgPool(nn.Module):
    """nn.AdaptiveAvgPool2d(size), with a deterministic backward off the CPU."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if native_pool_backward(x.device) or not torch.is_grad_enabled():
            return F.adaptive_avg_pool2d(x, self.size)
        return _PoolWithMatrixBackward.apply(x, self.size)


class DigitClassifier(nn.Module):
    """conv 32 -> pool -> conv 64 -> pool -> 4x4 -> linear 128 (the features) -> logits.

    For (C, H, W) images in [-1, 1] with H, W >= 4 (adaptive pooling fixes the size
    of the flattened map, so MNIST's 28x28 and small test images both fit).
    """

    def __init__(self, channels: int, n_classes: int, n_features: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            AdaptiveAvgPool(4), nn.Flatten(),
            nn.Linear(64 * 4 * 4, n_features), nn.ReLU())
        self.head = nn.Linear(n_features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (N, C, H, W) -> (N, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # (N, n_classes) logits


def _new_classifier(data: Any, seed: int) -> DigitClassifier:
    """A freshly initialised classifier; its initial weights come from `seed` alone.

    nn.Module draws its initial weights from the global CPU generator: fork_rng puts
    that generator's state back afterwards, so the GAN's random stream does not shift.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return DigitClassifier(data.shape[0], data.n_classes)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def _outputs(classifier: DigitClassifier, images: torch.Tensor,
             chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N, K) and features (N, F) of images (N, C, H, W), chunk by chunk."""
    device = _device_of(classifier)
    probs, feats = [], []
    for batch in images.split(chunk):
        f = classifier.features(batch.to(device, torch.float32))  # (n, F)
        feats.append(f)
        probs.append(F.softmax(classifier.head(f), dim=1))  # (n, K)
    return torch.cat(probs), torch.cat(feats)


def accuracy(classifier: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    probs, _ = _outputs(classifier, images)
    return (probs.argmax(1) == labels.to(probs.device)).float().mean().item()


def train_classifier(data: Any, device: str | torch.device, epochs: int = EPOCHS, seed: int = 0,
                     log: Log = print) -> tuple[DigitClassifier, dict]:
    """Train a DigitClassifier on data.full_train_split(); returns it (eval mode) and info.

    Deterministic given `seed` (on the CPU): initial weights and minibatch order come
    from their own generators, never the global one.
    """
    start = time.perf_counter()
    device = torch.device(device)
    images, labels = data.full_train_split()  # (N, C, H, W) in [-1, 1], (N,)
    images, labels = images.to(device), labels.to(device)
    n = images.shape[0]
    # a small set (a few thousand images) needs more passes than MNIST's 60,000 to be learnt
    steps = max(epochs * math.ceil(n / BATCH_SIZE), MIN_STEPS)
    log(f"classifier: training on {n} real images for {steps} steps (first use of these "
        "data files)")
    classifier = _new_classifier(data, seed).to(device).train()
    order = torch.Generator().manual_seed(seed)  # CPU generator: minibatch order
    opt = torch.optim.Adam(classifier.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    batches = (idx for _ in itertools.count() for idx in  # (B,) indices, epoch after epoch
               torch.randperm(n, generator=order).to(device).split(BATCH_SIZE))
    for idx in itertools.islice(batches, steps):
        loss = F.cross_entropy(classifier(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    _freeze(classifier)
    info = {"test_accuracy": accuracy(classifier, *data.test_split()),
            "fingerprint": data.fingerprint(), "steps": steps, "train_images": n,
            "train_time_s": round(time.perf_counter() - start, 1)}
    return classifier, info


def _freeze(classifier: DigitClassifier) -> None:
    classifier.eval()
    classifier.requires_grad_(False)


def cache_path(data: Any) -> Path:
    return Path(data.root) / f"classifier_{data.fingerprint()}_{ARCH_VERSION}.pt"


def _load_cached(path: Path, data: Any, device: torch.device) -> tuple[DigitClassifier, dict]:
    """The classifier and info stored in `path`; raises if the file does not hold them."""
    state = torch.load(path, map_location=device, weights_only=True)  # tensors only, no code
    classifier = _new_classifier(data, 0).to(device)
    classifier.load_state_dict(state["weights"])  # strict: a different network raises
    info = dict(state["info"])
    if not isinstance(info.get("test_accuracy"), float):
        raise ValueError("no test accuracy recorded")
    _freeze(classifier)
    return classifier, info


def load_or_train_classifier(data: Any, device: str | torch.device,
                             log: Log = print) -> tuple[DigitClassifier, dict]:
    """The cached classifier for these data files, else a newly trained (and cached) one.

    An unreadable cache file is retrained and replaced (with a warning); an
    unwritable data folder keeps the classifier in memory for this run (with a warning).
    """
    device = torch.device(device)
    path = cache_path(data)
    if path.is_file():
        try:
            classifier, info = _load_cached(path, data, device)
            log(f"classifier: test accuracy {100 * info['test_accuracy']:.1f} % "
                f"(loaded from {path})")
            return classifier, info
        except Exception as e:  # any failure only means the cache is unusable: retrain
            log(f"warning: {path}: unreadable classifier cache ({first_line(e)}); retraining")

    classifier, info = train_classifier(data, device, log=log)
    state = {"weights": classifier.state_dict(), "info": info}
    try:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        where = f"cached in {path}"
    except OSError as e:
        where = "not cached"
        log(f"warning: {path}: cannot cache the classifier ({e.strerror or e}); it will be "
            "retrained next time")
    log(f"classifier: test accuracy {100 * info['test_accuracy']:.1f} % (trained on "
        f"{info['train_images']} images in {info['train_time_s']:.0f} s; {where})")
    return classifier, info


# ---------------------------------------------------------------- metrics on given inputs
def classifier_score(probs: torch.Tensor) -> float:
    """exp(mean_x KL(p(y|x) || p(y))) of class probabilities probs (N, K): in [1, K]."""
    p = probs.cpu().double()  # float64 on the host (Apple's MPS has none)
    p_y = p.mean(0, keepdim=True)  # (1, K); > 0 wherever some p(y|x) > 0
    kl = torch.where(p > 0, p * (p.log() - p_y.log()), 0.0).sum(1)  # (N,), 0 log 0 = 0
    return kl.mean().exp().item()


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F,) and covariance (F, F), in float64, of features (N, F), N >= 2."""
    f = features.cpu().double()  # (N, F) is small; MPS has no float64
    return f.mean(0), torch.cov(f.T)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (rounding negatives to 0)."""
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor,
                     cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians, in float64.

    Tr (S1 S2)^(1/2) is the sum of the square roots of the eigenvalues of S1 S2,
    which equal those of the symmetric PSD matrix S1^(1/2) S2 S1^(1/2): eigh on it is
    stable even when the covariances are singular (dead ReLU features).
    """
    mu1, cov1, mu2, cov2 = (t.cpu().double() for t in (mu1, cov1, mu2, cov2))
    if not all(torch.isfinite(t).all() for t in (mu1, cov1, mu2, cov2)):
        return math.nan  # e.g. a diverged generator's NaN images
    root1 = _sqrt_psd(cov1)
    middle = root1 @ cov2 @ root1
    middle = (middle + middle.T) / 2  # symmetric up to rounding; eigh wants exactly
    tr_covmean = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    fd = (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * tr_covmean
    return max(fd.item(), 0.0)  # rounding can leave -1e-13 for identical sets


def class_coverage(probs: torch.Tensor, confident: float = CONFIDENT,
                   min_share: Optional[float] = None) -> tuple[int, float, list[float]]:
    """(classes_covered, class_kl, class_histogram) of class probabilities probs (N, K).

    classes_covered: classes with at least min_share (None: MIN_SHARE / K) of the images
    whose max p(y|x) >= confident. class_kl, class_histogram: over the argmax of all images.
    """
    k = probs.shape[1]
    min_share = MIN_SHARE / k if min_share is None else min_share
    top, pred = probs.max(dim=1)  # (N,), (N,)
    sure = top >= confident
    sure_counts = torch.bincount(pred[sure], minlength=k)  # (K,)
    n_sure = int(sure.sum())
    covered = int((sure_counts >= min_share * n_sure).sum()) if n_sure else 0
    hist = torch.bincount(pred, minlength=k).cpu().double() / max(len(pred), 1)  # (K,)
    kl = torch.where(hist > 0, hist * (hist * k).log(), 0.0).sum().item()  # vs uniform 1/K
    return covered, kl, hist.tolist()


# ---------------------------------------------------------------- evaluation
def class_fidelity(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """Of images drawn for class k (labels (N,)), the share the classifier assigns to k
    (probs (N, K)): per class (fidelity_by_class, null for a class not asked for) and
    the mean over the classes asked for (class_fidelity)."""
    hit = (probs.argmax(1) == labels.to(probs.device)).float()  # (N,)
    labels = labels.to(probs.device)
    by_class = [hit[labels == k].mean().item() if (labels == k).any() else None
                for k in range(probs.shape[1])]
    asked = [f for f in by_class if f is not None]
    return {"class_fidelity": sum(asked) / len(asked), "fidelity_by_class": by_class}


class ImageMetrics:
    """Evaluates generated images against the feature statistics of data's real test images.

    reference: the same metrics, computed once, for n_reference real training images in
    G's place: the values a perfect generator would reach with that many samples (fd
    is biased upwards at small sample sizes, so its floor is above 0).
    """

    def __init__(self, classifier: DigitClassifier, data: Any, n_reference: int = 10_000,
                 chunk: int = CHUNK):
        self.classifier, self.chunk = classifier, chunk
        test, _ = data.test_split()  # (M, C, H, W)
        self.mu, self.cov = feature_statistics(_outputs(classifier, test, chunk)[1])
        train, labels = data.full_train_split()  # (N, C, H, W), (N,)
        # class_fidelity here: the classifier's accuracy, a perfect conditional G's fidelity
        self._reference = self(train[:n_reference], labels[:n_reference])

    @property
    def reference(self) -> dict:
        return dict(self._reference, class_histogram=list(self._reference["class_histogram"]))

    def __call__(self, fake: torch.Tensor, labels: Optional[torch.Tensor] = None) -> dict:
        """classifier_score, fd, classes_covered, class_kl, class_histogram of fake (N, C, H, W);
        given the (N,) classes a conditional G was asked for, also class_fidelity."""
        if fake.shape[0] < 2:
            raise ValueError(f"image metrics need at least 2 images, got {fake.shape[0]}")
        probs, feats = _outputs(self.classifier, fake, self.chunk)
        metrics = self._metrics(probs, feats)
        if labels is not None:
            metrics.update(class_fidelity(probs, labels))
        return metrics

    def _metrics(self, probs: torch.Tensor, feats: torch.Tensor) -> dict:
        covered, kl, hist = class_coverage(probs)
        return {"classifier_score": classifier_score(probs),
                "fd": frechet_distance(*feature_statistics(feats), self.mu, self.cov),
                "classes_covered": covered, "class_kl": kl, "class_histogram": hist}
