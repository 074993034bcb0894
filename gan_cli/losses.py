"""GAN objectives (seed 003), each computed from D's logits for numerical stability.

Every loss has d_loss(real_logits, fake_logits) and g_loss(fake_logits), both
returning a scalar to minimise. softplus(x) = log(1 + e^x), so
-log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class GANLoss:
    """The discriminator's cross-entropy, shared by the three classic games."""

    def __init__(self, label_smoothing: float = 0.0):
        # one-sided label smoothing: only the real target moves (1 -> 1 - label_smoothing)
        self.real_target = 1.0 - label_smoothing

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        t = self.real_target
        real = t * F.softplus(-real_logits) + (1 - t) * F.softplus(real_logits)
        return real.mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Minimax(GANLoss):
    """G minimises E log(1 - D(G(z))) = -E softplus(l): saturates when D rejects fakes."""

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -F.softplus(fake_logits).mean()


class NonSaturating(GANLoss):
    """G minimises -E log D(G(z)) = E softplus(-l)."""

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_logits).mean()


class MaxLikelihood(GANLoss):
    """G minimises -E exp(sigma^-1(D(G(z)))) / 2 = -E exp(l) / 2 (Goodfellow 2014).

    With an optimal D this G gradient equals that of maximum likelihood. The
    logit is clamped at 30 only so that exp cannot overflow float32.
    """

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -0.5 * fake_logits.clamp(max=30.0).exp().mean()
