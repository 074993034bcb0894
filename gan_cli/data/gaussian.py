"""Gaussian mixtures of any dimension, sampled directly on the training device."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch

from gan_cli.config import MAX_MAGNITUDE
from gan_cli.errors import UserError


def _as_float_tensor(value: Any, key: str) -> torch.Tensor:
    try:
        t = torch.tensor(value, dtype=torch.float32)
    except (TypeError, ValueError):
        raise UserError(f"data.{key}={value}: expected numbers or equal-length lists of numbers")
    if not (torch.isfinite(t) & (t.abs() <= MAX_MAGNITUDE)).all():
        raise UserError(f"data.{key}={value}: every value must be finite and at most "
                        f"{MAX_MAGNITUDE:g} in size (float32 training overflows beyond)")
    return t


def draws_by_multinomial(device: torch.device) -> bool:
    """How mixture components are drawn: torch.multinomial on the CPU (the draws runs
    have always made there); inverse-CDF sampling (torch.rand, then searchsorted) on a
    GPU, because CUDA's multinomial takes a float cumsum, which deterministic=true
    refuses (the two draw different components from the same generator state)."""
    return device.type == "cpu"


def _per_mode_stds(stds: Any, k: int, d: int) -> torch.Tensor:
    """stds as a tensor: a number, K numbers, K lists of d, or K entries each a number
    (the same std in every dimension) or a list of d (docs/config.md: `stds: [0.5, [0.2, 1.0]]`)."""
    if not hasattr(stds, "__len__") or isinstance(stds, str):
        return _as_float_tensor(stds, "stds")
    entries = list(stds)
    if len(entries) == k and any(hasattr(s, "__len__") for s in entries):
        entries = [list(s) if hasattr(s, "__len__") else [s] * d for s in entries]  # (K, d)
    try:
        return _as_float_tensor(entries, "stds")
    except UserError:
        raise UserError(f"data.stds={_plain(stds)}: expected one number, {k} numbers (one per "
                        f"mode) or {k} entries each a number or a list of {d} numbers") from None


def _plain(value: Any) -> Any:
    """An OmegaConf ListConfig (or a nested one) as plain lists, for messages."""
    return [_plain(v) for v in value] if hasattr(value, "__len__") and \
        not isinstance(value, str) else value


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

        sd = _per_mode_stds(stds, k, d)
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
        # cumulative sums taken here, on the CPU: CUDA's float cumsum has no deterministic
        # kernel (deterministic=true refuses it). (K,), for balanced_labels
        self.cumulative_weights = w.cumsum(0).to(self.device)
        # for inverse-CDF sampling: the buckets from the last positive weight on end at
        # exactly 1, so that rounding never lets a u in [0, 1) fall past them
        cdf = w.cumsum(0)
        cdf[int(torch.nonzero(w).max()):] = 1.0
        self._cdf = cdf.to(self.device)  # (K,)

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
               exact_weights: bool = False) -> torch.Tensor:
        """(n, d) samples; no host synchronisation.

        exact_weights: each mode gets n * weight samples (to within one) instead of
        a multinomial count. Evaluation uses it: the count noise alone would put
        the W1 between two 10,000-sample draws of the tri-modal mixture at ~0.06.
        """
        return self.sample_labelled(n, generator, exact_weights)[0]

    def sample_labelled(self, n: int, generator: Optional[torch.Generator] = None,
                        exact_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples as sample() gives them, and the (n,) components they came from."""
        k = self.balanced_labels(n) if exact_weights else self.sample_labels(n, generator)
        eps = torch.randn((n, self.dim), device=self.device, generator=generator)
        return self.means[k] + self.stds[k] * eps, k  # (n, d), (n,)

    def sample_labels(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(n,) components drawn with the mixing weights."""
        if draws_by_multinomial(self.device):
            return torch.multinomial(self.weights, n, replacement=True, generator=generator)
        # no deterministic multinomial off the CPU: inverse-CDF sampling there
        u = torch.rand((n,), device=self.device, generator=generator)  # (n,) in [0, 1)
        return torch.searchsorted(self._cdf, u, right=True)  # the bucket u falls in

    def balanced_labels(self, n: int) -> torch.Tensor:
        """(n,) components in order, n * weight of each (to within one): the component of
        each of n evenly spaced quantiles."""
        u = (torch.arange(n, device=self.device) + 0.5) / n
        return torch.searchsorted(self.cumulative_weights, u).clamp(max=self.n_modes - 1)

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
