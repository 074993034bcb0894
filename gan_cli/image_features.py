"""Metrics for images without labels (a flat data=image_folder), in a feature space that
needs no download: a small CNN with fixed random weights.

The network is image_metrics.DigitClassifier's body (two conv + pool stages, adaptive
pooling to 4 x 4, a linear layer to 128 ReLU features), initialised from a fixed seed
and never trained, so every run and machine embeds the same image the same way. Its
features are standardised with the training images' mean and std; in that space
gan_cli/point_metrics.py's k-NN precision, recall, density, coverage and k-means bin_kl
are computed against the held-out images, plus `fd`, the Fréchet distance of Gaussians
fitted to the features (FID's formula; not comparable with FID's Inception numbers).

What random features can tell (Naeem et al. 2020 found randomly initialised embeddings
usable for these metrics off ImageNet): differences in colour and brightness
statistics, local edges and textures and coarse layout, and so missing or over-produced
kinds of image, collapse onto a few images, and noise. What they cannot tell: whether
an image shows a recognisable object, which class it belongs to, or semantic diversity;
a generator that gets textures right and shapes wrong can score well. For that, give
the folder class subfolders (a classifier is then trained on them) or a real feature
network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from omegaconf import DictConfig

from gan_cli import plots
from gan_cli.image_metrics import DigitClassifier, feature_statistics, frechet_distance
from gan_cli.point_metrics import KNN_KEYS, PointsEvaluation

FEATURE_SEED = 0  # the random network's weights
MAX_TRAIN_FEATURES = 10_000  # training images embedded for the k-means cells and the floors
CHUNK = 500  # images per forward pass


class RandomFeatures:
    """A fixed, randomly initialised DigitClassifier body: (N, C, H, W) -> (N, 128)."""

    def __init__(self, channels: int, device: torch.device, seed: int = FEATURE_SEED):
        with torch.random.fork_rng(devices=[]):  # the GAN's random stream does not shift
            torch.default_generator.manual_seed(seed)
            self.net = DigitClassifier(channels, n_classes=1)
        self.net = self.net.to(device).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.net.parameters()).device
        return torch.cat([self.net.features(batch.to(device, torch.float32))
                          for batch in images.split(CHUNK)])


class FeatureEvaluation(PointsEvaluation):
    """Unlabelled images: point metrics over random-CNN features, each beside its floor
    (training images in G's place), and fd; pictures are grids from the fixed noise batch."""

    objective = "fd"
    metric_keys = ("fd", *KNN_KEYS, "bin_kl")
    grid = 64  # images per picture

    def __init__(self, data: Any, eval_cfg: DictConfig):
        train_images = data.images[:MAX_TRAIN_FEATURES]
        self.features = RandomFeatures(data.shape[0], train_images.device)
        raw = self.features(train_images)
        self.mu, sd = raw.mean(0), raw.std(0)
        self.sd = torch.where(sd > 0, sd, torch.ones_like(sd))  # dead ReLU features stay 0
        super().__init__(data, eval_cfg, conditional=False)

    def reference_points(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.images[:MAX_TRAIN_FEATURES], self.data.test_split()[0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> standardised random features (N, 128)."""
        return (self.features(x) - self.mu) / self.sd

    def _scorer(self, train: torch.Tensor, held_out: torch.Tensor):
        scorer = super()._scorer(train, held_out)
        scorer.extra = frechet  # fd beside the k-NN metrics, and in the floors
        return scorer

    def line(self, m: dict) -> str:
        f = self.floor(m)
        return "  ".join(f"{k} {m[k]:.3f}/{f[k]:.3f}" for k in ("fd", "precision", "recall",
                                                                 "coverage")) + \
            "  (value/floor, random-CNN features)"

    def start(self, plots_dir: Optional[Path]) -> dict:
        if plots_dir is not None:
            plots.plot_images(self.data.images[:self.grid], plots_dir / "real.png",
                              title=f"real training images ({self.data.describe()})")
        return {**super().start(plots_dir), "features": "random CNN (gan_cli/image_features.py, "
                f"seed {FEATURE_SEED}), standardised"}

    def picture(self, fakes: Sequence[torch.Tensor], path: Path, title: str,
                seeds: Sequence[int], **_: Any) -> None:
        plots.plot_images(fakes[0][:self.grid], path, title=title)


def frechet(fake: torch.Tensor, real: torch.Tensor) -> dict:
    """fd between Gaussians fitted to fake (n, F) and real (m, F) features."""
    if len(fake) < 2:
        return {"fd": float("nan")}
    return {"fd": frechet_distance(*feature_statistics(fake), *feature_statistics(real))}
