"""Metrics for mixture data (definitions in design.md, "Metrics")."""

from __future__ import annotations

import math
from typing import Optional

import torch

from gan_cli.data.gaussian import GaussianMixture


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


def evaluate_mixture(fake: torch.Tensor, real: torch.Tensor, mixture: GaussianMixture,
                     projections: int = 256, hq_sigmas: float = 3.0,
                     generator: Optional[torch.Generator] = None) -> dict:
    """All mixture metrics of generated samples `fake` against fresh real samples.

    generator: for the sliced W1's random directions (so evaluation need not touch
    the training random stream).
    """
    metrics = {"w1": wasserstein1(fake, real, projections, generator=generator)}
    metrics.update(mode_statistics(fake, mixture, hq_sigmas))
    return metrics


def default_w1_tol(mixture: GaussianMixture) -> float:
    """0.2 x the mean component std: small against the modes' own width."""
    return 0.2 * mixture.stds.mean().item()


def is_converged(metrics: dict, w1_tol: float) -> bool:
    return metrics["modes_covered"] == metrics["n_modes"] and metrics["w1"] <= w1_tol and \
        math.isfinite(metrics["w1"])
