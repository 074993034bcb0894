"""Metrics and pictures of what G makes (definitions in design.md, "Metrics").

Two layers. What the metrics are depends on the data: MixtureEvaluation for
Gaussian mixtures (w1, modes, high-quality share), ImageEvaluation for images (a
classifier's view). How G's samples are made for them is the same for training and
gan-sample: `generate` (chunked, no gradients) and, with discriminator rejection
sampling, rejection.py; `Evaluator` runs one evaluation of a training run, for a
single run or for replicas alike.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from omegaconf import DictConfig

from gan_cli import plots
from gan_cli.config import Eval
from gan_cli.data.gaussian import GaussianMixture
from gan_cli.errors import UserError
from gan_cli.labels import Conditioning
from gan_cli.rejection import judged_in_batches, keep_mask
from gan_cli.replicas import SingleRun, median_row

CHUNK = 1000  # samples per generator call: 10,000 images at once would be GBs of activations


def wasserstein1(x: torch.Tensor, y: torch.Tensor, projections: int = 256,
                 generator: Optional[torch.Generator] = None) -> float:
    """W1 between two equal-size samples (n, d): exact in 1-D, sliced in more dimensions.

    Sliced: the mean over random unit directions of the exact 1-D W1 of the
    projections (a lower bound on W1 that shares its zeros).
    """
    if x.shape != y.shape:
        raise ValueError(f"w1 needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[1] > 1:
        dirs = torch.randn(x.shape[1], projections, device=x.device, generator=generator)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)  # (d, P)
        x, y = x @ dirs, y @ dirs  # (n, P)
    # in 1-D the optimal coupling pairs the sorted samples
    return (x.sort(dim=0).values - y.sort(dim=0).values).abs().mean().item()


def mode_statistics(x: torch.Tensor, mixture: GaussianMixture, hq_sigmas: float = 3.0) -> dict:
    """High-quality share, covered modes, mode KL and per-mode mass of samples x (n, d).

    Each sample belongs to its nearest mode in diagonal-Mahalanobis distance; it
    is high quality when that distance is at most hq_sigmas.
    """
    z = (x.unsqueeze(1) - mixture.means) / mixture.stds  # (n, K, d)
    dist, nearest = (z**2).sum(-1).sqrt().min(dim=1)  # (n,), (n,)
    hq = dist <= hq_sigmas
    k = mixture.n_modes
    n = x.shape[0]
    hq_counts = torch.bincount(nearest[hq], minlength=k).float()  # (K,)
    all_counts = torch.bincount(nearest, minlength=k).float()

    weights = mixture.weights
    covered = (hq_counts / n >= 0.1 * weights).sum().item()
    p = all_counts / n  # generated mode histogram (nearest-mode assignment)
    mode_kl = torch.where(p > 0, p * (p / weights).log(), torch.zeros_like(p)).sum().item()
    return {
        "hq_fraction": hq.float().mean().item(),
        "modes_covered": int(covered),
        "n_modes": k,
        "mode_kl": mode_kl,
        "mode_mass": (hq_counts / n).tolist(),
    }


def _hq_modes(x: torch.Tensor, mixture: GaussianMixture, hq_sigmas: float) -> torch.Tensor:
    """(n,) each sample's nearest mode (diagonal Mahalanobis), -1 when it is not high quality."""
    z = (x.unsqueeze(1) - mixture.means) / mixture.stds  # (n, K, d)
    dist, nearest = (z**2).sum(-1).sqrt().min(dim=1)  # (n,), (n,)
    return torch.where(dist <= hq_sigmas, nearest, -1)


def mode_spread(fake: torch.Tensor, real: torch.Tensor, mixture: GaussianMixture,
                hq_sigmas: float = 3.0) -> float:
    """How well G fills each mode's width, which hq and modes cannot see (a G that squeezed
    each mode to a point scores hq 1): per covered mode and dimension the ratio r of G's std
    to the real samples' std, both over the high-quality samples of that mode (so the
    3-sigma cut trims both alike); the result is the worst min(r, 1/r) in [0, 1]."""
    fake_mode, real_mode = _hq_modes(fake, mixture, hq_sigmas), _hq_modes(real, mixture, hq_sigmas)
    n = fake.shape[0]
    worst = math.inf
    for k in range(mixture.n_modes):
        mine, theirs = fake[fake_mode == k], real[real_mode == k]
        if len(mine) < max(2, 0.1 * mixture.weights[k].item() * n) or len(theirs) < 2:
            continue  # not covered (modes_covered says so): no width to judge
        r = mine.std(dim=0) / theirs.std(dim=0)  # (d,)
        worst = min(worst, torch.minimum(r, 1 / r).min().item())
    return 0.0 if worst == math.inf else worst


# the blog's yardstick (peaks_on_modes, 1-D mixtures): see mode_peaks
PEAK_WINDOW = 0.5  # a mode's peak must lie within this many of its stds of its mean
# the KDE's Gaussian kernel, in the narrowest mode's stds: wide enough that the KDE of a
# 15-mode G's ~700 samples per mode is smooth over the window, narrow enough that a
# spike half a std outside it still reads as a rise towards its edge
PEAK_BANDWIDTH = 0.25
PEAK_HEIGHT = 0.5  # a peak's least height, as a share of the true density at the mean


def mode_peaks(x: torch.Tensor, mixture: GaussianMixture) -> int:
    """How many modes of a 1-D mixture have a peak of G's samples x (n, 1) on them: the
    blog's "the peaks sit on the modes", with the width ignored (a narrow spike counts).

    A peak on mode k: a local maximum of the kernel density estimate of x (Gaussian
    kernel, bandwidth PEAK_BANDWIDTH x the narrowest std) within PEAK_WINDOW stds of the
    mode's mean, at least PEAK_HEIGHT x as high as the true density there (so that a G
    spread thinly over the whole line, whose KDE wobbles everywhere, has no peaks). The
    KDE is read on bins of a quarter bandwidth (a histogram convolved with the kernel).
    """
    h = PEAK_BANDWIDTH * mixture.stds.min().item()
    width = h / 4
    means, reach = mixture.means[:, 0].cpu(), PEAK_WINDOW * mixture.stds[:, 0].cpu()  # (K,)
    # the bins cover every window and 6 bandwidths beyond (exp(-18) < 1e-7: farther
    # samples add nothing to a window), plus one bin either side
    low = (means - reach).min().item() - 6 * h - width
    n_bins = math.ceil(((means + reach).max().item() + 6 * h + width - low) / width)
    counts = torch.histc(x[:, 0].float().cpu(), bins=n_bins, min=low, max=low + n_bins * width)
    taps = torch.arange(-math.ceil(6 * h / width), math.ceil(6 * h / width) + 1) * width
    kernel = torch.exp(-0.5 * (taps / h) ** 2) / (len(x) * h * math.sqrt(2 * math.pi))
    kde = torch.nn.functional.conv1d(counts.view(1, 1, -1), kernel.view(1, 1, -1),
                                     padding=len(taps) // 2).view(-1)  # (n_bins,)
    values, peaks = kde.tolist(), []  # per mode: its window's highest bin, if a local maximum
    for mean, r in zip(means.tolist(), reach.tolist()):
        first, last = (int((edge - low) / width) for edge in (mean - r, mean + r))
        i = max(range(first, last + 1), key=values.__getitem__)
        if values[i] >= values[i - 1] and values[i] >= values[i + 1]:  # (neighbours exist)
            peaks.append(i)
    if not peaks:
        return 0
    at = low + (torch.tensor(peaks) + 0.5) * width  # the peaks' bin centres
    true = mixture.density(at.unsqueeze(1).to(mixture.means.device)).cpu()
    return int((kde[peaks] >= PEAK_HEIGHT * true).sum())


def evaluate_mixture(fake: torch.Tensor, real: torch.Tensor, mixture: GaussianMixture,
                     projections: int = 256, hq_sigmas: float = 3.0,
                     generator: Optional[torch.Generator] = None) -> dict:
    """All mixture metrics of generated samples `fake` against fresh real samples.

    generator: for the sliced W1's random directions (so evaluation need not touch
    the training random stream).
    """
    metrics = {"w1": wasserstein1(fake, real, projections, generator=generator)}
    metrics.update(mode_statistics(fake, mixture, hq_sigmas))
    metrics["mode_spread"] = mode_spread(fake, real, mixture, hq_sigmas)
    if mixture.dim == 1:
        metrics["peaks_on_modes"] = mode_peaks(fake, mixture)
    return metrics


def per_class_fit(fake: torch.Tensor, labels: torch.Tensor, real: torch.Tensor,
                  mixture: GaussianMixture, projections: int = 256,
                  generator: Optional[torch.Generator] = None) -> dict:
    """A conditional G's samples fake (N, d) drawn for components labels (N,) against real
    (N, d) drawn with exact weights (mixture.balanced_labels(N) are its components):

    class_fidelity: share of G's samples whose nearest mode is the one asked for;
    class_w1: per component, the W1 between G's samples for it and its real samples.
    """
    z = (fake.unsqueeze(1) - mixture.means) / mixture.stds  # (N, K, d)
    nearest = (z**2).sum(-1).argmin(dim=1)  # (N,)
    real_labels = mixture.balanced_labels(len(real))
    class_w1 = []
    for k in range(mixture.n_modes):
        mine, theirs = fake[labels == k], real[real_labels == k]
        n = min(len(mine), len(theirs))  # equal when labels are balanced_labels too
        class_w1.append(wasserstein1(mine[:n], theirs[:n], projections, generator=generator)
                        if n > 0 else math.nan)
    return {"class_fidelity": (nearest == labels).float().mean().item(),
            "class_w1": class_w1, "class_w1_max": max(class_w1)}


def default_w1_tol(mixture: GaussianMixture) -> float:
    """0.2 x the mean component std: small against the modes' own width."""
    return 0.2 * mixture.stds.mean().item()


def is_converged(metrics: dict, w1_tol: float, spread_tol: float = Eval.spread_tol) -> bool:
    """Every mode covered, w1 within w1_tol, and every mode as wide as the data's to within
    spread_tol (mode_spread), so that a G squeezed inside each mode does not count."""
    return metrics["modes_covered"] == metrics["n_modes"] and metrics["w1"] <= w1_tol and \
        math.isfinite(metrics["w1"]) and metrics["mode_spread"] >= spread_tol


class MixtureEvaluation:
    """Mixture data: w1, high-quality share, covered modes and mode KL per evaluation;
    for a conditional G also how well it draws each component it is asked for."""

    histogram = "mode"  # each evaluation's per-mode shares go to mode_mass.csv
    objective = "w1"  # the metric a sweeper minimises

    def __init__(self, data: GaussianMixture, eval_cfg: DictConfig, conditional: bool = False):
        self.data, self.cfg = data, eval_cfg
        self.w1_tol = eval_cfg.w1_tol or default_w1_tol(data)
        self.spread_tol = eval_cfg.get("spread_tol", Eval.spread_tol)  # older runs' configs lack it
        self.real: Optional[torch.Tensor] = None  # the last real sample, for the picture
        per_class = ("class_fidelity", "class_w1_max") if conditional else ()
        peaks = ("peaks_on_modes",) if data.dim == 1 else ()  # the blog's yardstick
        self.columns = ("w1", "hq_fraction", "mode_spread", "modes_covered", "mode_kl",
                        *peaks, *per_class)  # metrics.csv
        self.summary_keys = ("w1", "hq_fraction", "mode_spread", "modes_covered", "n_modes",
                             "mode_kl", *per_class, *("class_w1",) * conditional)

    def metrics(self, fake: torch.Tensor, rng: torch.Generator,
                labels: Optional[torch.Tensor] = None) -> dict:
        """fake (N, d) against N fresh real samples drawn from rng (the evaluation's own);
        labels (N,): the components a conditional G was asked for."""
        # as many as G's (fewer than eval.n_samples when rejection sampling thinned them)
        self.real = self.data.sample(len(fake), generator=rng, exact_weights=True)
        metrics = evaluate_mixture(fake, self.real, self.data, self.cfg.projections,
                                   self.cfg.hq_sigmas, generator=rng)
        if labels is not None:
            metrics.update(per_class_fit(fake, labels, self.real, self.data,
                                         self.cfg.projections, generator=rng))
        return metrics

    def converged(self, metrics: dict) -> bool:
        return is_converged(metrics, self.w1_tol, self.spread_tol)

    @staticmethod
    def line(m: dict) -> str:
        line = (f"w1 {m['w1']:.4f}  modes {m['modes_covered']:g}/{m['n_modes']:g}  "
                f"hq {m['hq_fraction']:.3f}  "
                + (f"spread {m['mode_spread']:.2f}  " if "mode_spread" in m else "")  # older runs'
                + f"mode_kl {m['mode_kl']:.4f}")
        if "class_fidelity" in m:  # a conditional G
            line += f"  fidelity {m['class_fidelity']:.3f}  worst class w1 {m['class_w1_max']:.4f}"
        return line

    def start(self, plots_dir: Optional[Path]) -> dict:
        """Before training: what summary.json records about the evaluation itself."""
        return {"w1_tol": self.w1_tol, "spread_tol": self.spread_tol}

    def picture(self, fakes: Sequence[torch.Tensor], path: Path, title: str,
                seeds: Sequence[int], discriminator: Optional[Callable] = None,
                d_is_probability: bool = True, **_: Any) -> None:
        if len(fakes) > 1:
            plots.plot_replicas(fakes, self.data, path, seeds, title=title)
        else:
            plots.plot_mixture(fakes[0], self.real, self.data, path, title=title,
                               discriminator=discriminator, d_is_probability=d_is_probability)


class ImageEvaluation:
    """Image data: what a classifier trained on the real digits makes of G's images
    (see gan_cli/image_metrics.py); pictures are grids from the fixed noise batch."""

    histogram = "class"  # each evaluation's predicted-class shares go to class_mass.csv
    objective = "fd"
    grid = 64  # images per picture (8 x 8), the first of the fixed evaluation batch

    def __init__(self, data: Any, eval_cfg: DictConfig, device: torch.device,
                 log: Callable[[str], None], conditional: bool = False):
        from gan_cli.image_metrics import ImageMetrics, load_or_train_classifier

        if eval_cfg.n_samples < 2:
            raise UserError(f"eval.n_samples={eval_cfg.n_samples}: image metrics need at least "
                            "2 images (their features' covariance)")
        self.data = data
        classifier, self.classifier_info = load_or_train_classifier(data, device, log=log)
        self.scorer = ImageMetrics(classifier, data, n_reference=eval_cfg.n_samples)
        per_class = ("class_fidelity",) * conditional
        self.columns = ("fd", "classifier_score", "classes_covered", "class_kl", *per_class)
        self.summary_keys = ("fd", "classifier_score", "classes_covered", "n_classes",
                             "class_kl", *per_class, *("fidelity_by_class",) * conditional)

    def metrics(self, fake: torch.Tensor, rng: torch.Generator,
                labels: Optional[torch.Tensor] = None) -> dict:
        """labels (N,): the classes a conditional G was asked for (class fidelity)."""
        metrics = dict(self.scorer(fake, labels), n_classes=self.data.n_classes)
        metrics["class_mass"] = metrics.pop("class_histogram")
        return metrics

    @staticmethod
    def converged(metrics: dict) -> bool:
        return False  # images have no target to converge to: converged_at_step stays null

    @staticmethod
    def line(m: dict) -> str:
        line = (f"fd {m['fd']:.3f}  score {m['classifier_score']:.2f}  classes "
                f"{m['classes_covered']:g}/{m['n_classes']:g}  class_kl {m['class_kl']:.3f}")
        if "class_fidelity" in m:  # a conditional G
            line += f"  fidelity {m['class_fidelity']:.3f}"
        return line

    def start(self, plots_dir: Optional[Path]) -> dict:
        """plots/real.png, and the classifier and real test images' own metrics (the
        values a perfect G would reach) for summary.json."""
        if plots_dir is not None:
            plots.plot_images(self.data.images[:self.grid], plots_dir / "real.png",
                              title=f"real training images ({self.data.describe()})")
        reference = {k: v for k, v in self.scorer.reference.items() if k != "class_histogram"}
        return {"classifier": self.classifier_info, "reference_metrics": reference}

    def picture(self, fakes: Sequence[torch.Tensor], path: Path, title: str,
                seeds: Sequence[int], labels: Optional[torch.Tensor] = None, **_: Any) -> None:
        if len(fakes) > 1:  # one row of 8 per replica
            images = torch.cat([f[:8] for f in fakes])
            plots.plot_images(images, path, title=title, row_labels=[f"seed {s}" for s in seeds])
        elif labels is not None:  # a conditional G: one row of 8 per class
            classes = torch.unique(labels).tolist()
            images = torch.cat([_row_of(fakes[0][labels == k], 8) for k in classes])
            plots.plot_images(images, path, title=title, row_labels=[str(k) for k in classes])
        else:
            plots.plot_images(fakes[0][:self.grid], path, title=title)


def _row_of(images: torch.Tensor, n: int) -> torch.Tensor:
    """The first n images, padded with black ones when there are fewer (rows stay aligned)."""
    row = images[:n]
    return torch.cat([row, row.new_full((n - len(row), *row.shape[1:]), -1.0)])


def generate(G: Callable, cond: Conditioning, z: torch.Tensor,
             labels: Optional[torch.Tensor] = None, dim: int = 0) -> torch.Tensor:
    """G's samples (no gradients) for noise z (N, z) and classes labels (N,) (None:
    unconditional), in chunks along dim (replicas: z is (R, N, z), dim 1)."""
    z_chunks = z.split(CHUNK, dim=dim)
    label_chunks = [None] * len(z_chunks) if labels is None else \
        labels.expand(z.shape[:-1]).split(CHUNK, dim=dim)
    with torch.no_grad():
        return torch.cat([G(cond.generator_input(zk, yk))
                          for zk, yk in zip(z_chunks, label_chunks)], dim=dim)


class Evaluator:
    """One evaluation of a training run: G's samples from the fixed evaluation noise,
    optionally thinned by D (eval.rejection_quantile), scored per replica (one entry
    for a single run), and drawn as a picture."""

    def __init__(self, scorer: Any, cond: Conditioning, axis: SingleRun,
                 rejection_quantile: Optional[float], d_batch: int):
        self.scorer, self.cond, self.axis = scorer, cond, axis
        self.rejection_quantile = rejection_quantile  # discriminator rejection sampling
        self.d_batch = d_batch  # D judges batches of the size it trained on (minibatch layers)

    def samples(self, G: torch.nn.Module, z: torch.Tensor,
                labels: Optional[torch.Tensor]) -> torch.Tensor:
        """(N, ...) samples of G in eval mode (no dropout: evaluation must not draw from
        the training stream), or (R, N, ...)."""
        G.eval()
        try:
            return generate(G, self.cond, z, labels, dim=self.axis.batch_dim)
        finally:
            G.train()

    def kept(self, fake: torch.Tensor, D: torch.nn.Module, judge: Callable,
             rngs: Sequence[torch.Generator]) -> Optional[list[torch.Tensor]]:
        """Per replica, which samples D lets through ((N,) bools); None without rejection.
        A diverged replica's logits are not finite: keep_mask keeps all its samples."""
        if self.rejection_quantile is None:
            return None
        D.eval()
        with torch.no_grad():
            logits = judged_in_batches(lambda x: judge(x, None)[0], fake, self.d_batch,
                                       dim=self.axis.batch_dim).reshape(self.axis.count, -1)
        D.train()
        return [keep_mask(lk, self.rejection_quantile, rng) for lk, rng in zip(logits, rngs)]

    def metrics(self, fakes: Sequence[torch.Tensor], kept: Optional[list[torch.Tensor]],
                rngs: Sequence[torch.Generator], labels: Optional[torch.Tensor]) -> list[dict]:
        """Each replica's metrics of its (kept) samples, against fresh real samples."""
        all_metrics = []
        for k, (fake_k, rng) in enumerate(zip(fakes, rngs)):
            metrics = self.scorer.metrics(fake_k, rng, labels=labels)
            if kept is not None:
                metrics["accepted"] = kept[k].float().mean().item()
            all_metrics.append(metrics)
        return all_metrics

    def line(self, step: int, all_metrics: list[dict], diverged: dict,
             converged_at: list[Optional[int]]) -> str:
        """The console's evaluation line: for replicas, medians over those not diverged."""
        shown = median_row(all_metrics, skip=diverged)
        line = f"eval  step {step}: {self.scorer.line(shown)}"
        if "accepted" in shown:
            line += f"  accepted {shown['accepted']:.3f}"
        return self.axis.eval_line(line, converged_at)
