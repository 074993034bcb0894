"""Generator and discriminator networks, and the generator's noise prior."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from gan_cli.replicas import draw_each

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


class MLP(nn.Sequential):
    """in_dim -> hidden... -> out_dim with a linear output (D's output is a logit).

    minibatch: none | stddev | discrimination — a layer before the output that
    lets D compare each sample with the rest of its batch (a discriminator only).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (64, 64),
                 activation: str = "leaky_relu", dropout: float = 0.0, minibatch: str = "none"):
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        if minibatch == "stddev":
            layers.append(MinibatchStdDev())
            width += 1
        elif minibatch == "discrimination":
            layers.append(MinibatchDiscrimination(width))
            width += layers[-1].n_kernels
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)


class MinibatchStdDev(nn.Module):
    """Appends the batch's mean feature standard deviation to every sample (Karras et
    al. 2018): a batch of near-copies, the mark of mode collapse, shows as a small value."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, F + 1)
        spread = h.std(dim=0, unbiased=False).mean()  # ()
        return torch.cat([h, spread.expand(h.shape[0], 1)], dim=1)


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. 2016: each of n_kernels learned projections M_i = h_i T (kernel_dim
    wide) gives o_i = sum over j != i of exp(-|M_i - M_j|^2), how crowded i's
    neighbourhood is; appended to the features so D can reject batches that lack variety.

    The paper's L1 distance is replaced by the squared L2 one, which matrix products
    compute 2-3x faster; either way the cost grows with the batch size squared.
    """

    def __init__(self, in_features: int, n_kernels: int = 8, kernel_dim: int = 4):
        super().__init__()
        self.n_kernels, self.kernel_dim = n_kernels, kernel_dim
        self.T = nn.Parameter(0.1 * torch.randn(in_features, n_kernels * kernel_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, F + n_kernels)
        m = (h @ self.T).view(-1, self.n_kernels, self.kernel_dim).transpose(0, 1)  # (K, B, C)
        sq = (m * m).sum(-1)  # (K, B)
        dist2 = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * m @ m.transpose(1, 2)).clamp(min=0)
        o = torch.exp(-dist2).sum(dim=2).T - 1.0  # (B, K), without each sample's self-match
        return torch.cat([h, o], dim=1)


class Pack(nn.Module):
    """PacGAN (Lin et al. 2018): D judges m samples at once, concatenated, so a G that
    repeats itself is easier to spot. (B, d) -> (B / m, m * d); images stack channels."""

    def __init__(self, m: int):
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0] // self.m, self.m * x.shape[1], *x.shape[2:])


@torch.no_grad()
def ema_update(average: nn.Module, live: nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * live, weight by weight."""
    for a, w in zip(average.parameters(), live.parameters()):
        a.lerp_(w, 1.0 - decay)


def spectral_normalise(module: nn.Module) -> nn.Module:
    """Divide every linear and convolution weight by its largest singular value
    (Miyato et al. 2018), estimated by one power iteration per forward pass."""
    from torch.nn.utils.parametrizations import spectral_norm

    for child in list(module.modules()):
        if isinstance(child, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            spectral_norm(child)
    return module


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

    def __call__(self, n: int, generator: torch.Generator | None = None,
                 generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """(n, dim); with `generators` (replicas), (R, n, dim) whose slice r is what a call
        with generator=generators[r] returns."""
        shape = (n, self.dim)
        if self.dist == "normal":
            return draw_each(torch.randn, shape, self.device, generator, generators)
        u = draw_each(torch.rand, shape, self.device, generator, generators)  # [0, 1)
        if self.dist == "stratified":
            order = draw_each(torch.rand, shape, self.device, generator, generators)
            strata = torch.argsort(order, dim=-2)  # a random permutation per column
            u = (strata + u) / n
        return self.low + (self.high - self.low) * u
