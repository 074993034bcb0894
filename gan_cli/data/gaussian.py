"""Gaussian mixtures of any dimension, sampled directly on the training device."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch

from gan_cli.config import MAX_MAGNITUDE, UserError
from gan_cli.replicas import draw_each


def _as_float_tensor(value: Any, key: str) -> torch.Tensor:
    try:
        t = torch.tensor(value, dtype=torch.float32)
    except (TypeError, ValueError):
        raise UserError(f"data.{key}={value}: expected numbers or equal-length lists of numbers")
    if not (torch.isfinite(t) & (t.abs() <= MAX_MAGNITUDE)).all():
        raise UserError(f"data.{key}={value}: every value must be finite and at most "
                        f"{MAX_MAGNITUDE:g} in size (float32 training overflows beyond)")
    return t


class GaussianMixture:
    """K components N(mean_k, diag(std_k^2)) with mixing weights w_k.

    means: K numbers (1-D) or K lists of d numbers.
    stds: one number, K numbers (one per mode), or K lists of d numbers.
    weights: K non-negative numbers (normalised here); None = equal.
    """

    def __init__(self, means: Sequence[Any], stds: Any = 1.0,
                 weights: Optional[Sequence[float]] = None, device: str | torch.device = "cpu"):
        if len(means) == 0:
            raise UserError("data.means=[]: give at least one mode centre")
        mu = _as_float_tensor(list(means), "means")
        mu = mu.unsqueeze(1) if mu.dim() == 1 else mu  # (K, d)
        if mu.dim() != 2:
            raise UserError(f"data.means={list(means)}: expected numbers or lists of d numbers")
        k, d = mu.shape

        sd = _as_float_tensor(stds if not hasattr(stds, "__len__") else list(stds), "stds")
        if sd.dim() == 0:
            sd = sd.expand(k, d)
        elif sd.dim() == 1 and sd.shape[0] == k:
            sd = sd.unsqueeze(1).expand(k, d)
        elif sd.dim() != 2 or tuple(sd.shape) != (k, d):
            raise UserError(f"data.stds: got shape {tuple(sd.shape)}, allowed: one number, "
                            f"{k} numbers (one per mode) or {k} lists of {d}")
        if (sd <= 0).any():
            raise UserError(f"data.stds={stds}: every std must be > 0")

        if weights is None:
            w = torch.full((k,), 1.0 / k)
        else:
            w = _as_float_tensor(list(weights), "weights")
            if w.shape != (k,):
                raise UserError(f"data.weights: got {w.numel()} weights for {k} means; "
                                "give one per mode or null for equal weights")
            if (w < 0).any() or w.sum() <= 0:
                raise UserError(f"data.weights={list(weights)}: must be >= 0 with a positive sum")
            w = w / w.sum()

        self.device = torch.device(device)
        self.means = mu.to(self.device)  # (K, d)
        self.stds = sd.contiguous().to(self.device)  # (K, d)
        self.weights = w.to(self.device)  # (K,)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def shape(self) -> tuple[int]:  # one sample's
        return (self.dim,)

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    @property
    def mean(self) -> torch.Tensor:
        """(d,) mean of the whole mixture."""
        return self.weights @ self.means

    @property
    def n_classes(self) -> int:  # a conditional GAN's labels are the components
        return self.n_modes

    def sample(self, n: int, generator: Optional[torch.Generator] = None,
               exact_weights: bool = False,
               generators: Optional[Sequence[torch.Generator]] = None) -> torch.Tensor:
        """(n, d) samples; no host synchronisation. With `generators` (replicas),
        (R, n, d) whose slice r is what a call with generator=generators[r] returns.

        exact_weights: each mode gets n * weight samples (to within one) instead of
        a multinomial count. Evaluation uses it: the count noise alone would put
        the W1 between two 10,000-sample draws of the tri-modal mixture at ~0.06.
        """
        return self.sample_labelled(n, generator, exact_weights, generators)[0]

    def sample_labelled(self, n: int, generator: Optional[torch.Generator] = None,
                        exact_weights: bool = False,
                        generators: Optional[Sequence[torch.Generator]] = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples as sample() gives them, and the (n,) (or (R, n)) components they came from."""
        k = self.balanced_labels(n) if exact_weights else self.sample_labels(n, generator, generators)
        eps = draw_each(torch.randn, (n, self.dim), self.device, generator, generators)
        return self.means[k] + self.stds[k] * eps, k  # (n, d), (n,)

    def sample_labels(self, n: int, generator: Optional[torch.Generator] = None,
                      generators: Optional[Sequence[torch.Generator]] = None) -> torch.Tensor:
        """(n,) components drawn with the mixing weights ((R, n) with `generators`)."""
        def pick(shape, device, generator):
            return torch.multinomial(self.weights, shape[0], replacement=True,
                                     generator=generator)

        return draw_each(pick, (n,), self.device, generator, generators)

    def balanced_labels(self, n: int) -> torch.Tensor:
        """(n,) components in order, n * weight of each (to within one): the component of
        each of n evenly spaced quantiles."""
        u = (torch.arange(n, device=self.device) + 0.5) / n
        return torch.searchsorted(self.weights.cumsum(0), u).clamp(max=self.n_modes - 1)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Probability density at points x of shape (n, d) -> (n,)."""
        z = (x.unsqueeze(1) - self.means) / self.stds  # (n, K, d)
        log_norm = -0.5 * (z**2).sum(-1) - self.stds.log().sum(-1) - 0.5 * self.dim * math.log(
            2 * math.pi)  # (n, K)
        return (log_norm.exp() * self.weights).sum(-1)

    def describe(self) -> str:
        return f"{self.n_modes}-mode Gaussian mixture in {self.dim}-D"


MAX_MODES = 10_000  # data.k: more modes than evaluation samples could tell apart


def evenly_spaced(k: int, spacing: float = 4.0, std: float = 0.5,
                  device: str | torch.device = "cpu") -> GaussianMixture:
    """k equal 1-D modes `spacing` apart, centred on 0 (k = 3: -4, 0, 4, the tri-modal data)."""
    if not (isinstance(k, int) and 1 <= k <= MAX_MODES):
        raise UserError(f"data.k={k}: the number of modes must be a positive integer of at "
                        f"most {MAX_MODES}")
    # the widest mixture's outer centre, (k - 1) / 2 spacings out, stays within the limit
    if not (0 < spacing and spacing * (k - 1) / 2 <= MAX_MAGNITUDE):
        raise UserError(f"data.spacing={spacing}: must be > 0, with the outer modes within "
                        f"{MAX_MAGNITUDE:g} of 0")
    if not 0 < std <= MAX_MAGNITUDE:
        raise UserError(f"data.std={std}: must be a standard deviation in (0, {MAX_MAGNITUDE:g}]")
    return GaussianMixture([spacing * (i - (k - 1) / 2) for i in range(k)], std, device=device)
