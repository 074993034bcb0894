"""Generator and discriminator networks, and the generator's noise prior."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


class MLP(nn.Sequential):
    """in_dim -> hidden... -> out_dim with a linear output (D's output is a logit)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (64, 64),
                 activation: str = "leaky_relu", dropout: float = 0.0):
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)


class Shift(nn.Module):
    """x + shift over the last dimension: a fixed offset, not trained."""

    def __init__(self, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("shift", shift.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class NoisePrior:
    """Draws the generator's input z of shape (n, dim).

    normal: N(0, I). uniform: U(low, high)^dim. stratified: uniform, but the n
    draws of each coordinate fall one per equal stratum of [low, high] (in a
    random order), the aylien blog's jittered-linspace noise made unbiased.
    """

    def __init__(self, dist: str = "normal", dim: int = 16, low: float = -1.0,
                 high: float = 1.0, device: str | torch.device = "cpu"):
        self.dist, self.dim, self.low, self.high = dist, dim, low, high
        self.device = torch.device(device)

    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        shape, kw = (n, self.dim), dict(device=self.device, generator=generator)
        if self.dist == "normal":
            return torch.randn(shape, **kw)
        u = torch.rand(shape, **kw)  # (n, dim) in [0, 1)
        if self.dist == "stratified":
            strata = torch.argsort(torch.rand(shape, **kw), dim=0)  # a permutation per column
            u = (strata + u) / n
        return self.low + (self.high - self.low) * u
