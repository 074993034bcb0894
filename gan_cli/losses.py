"""GAN objectives (seeds 002, 003), each a small object with d_loss / g_loss.

d_loss(real_logits, fake_logits) and g_loss(fake_logits) take D's raw outputs
(B, 1) and return a scalar to minimise. Three optional parts let an objective
reach beyond the outputs without the training loop knowing which one it runs:
`penalty(D, real, fake)` is added to D's loss (WGAN-GP's; R1's, which every loss can
add with loss.r1_gamma), `after_d_step(D)` runs
after each D update (WGAN's weight clipping), and `n_critic` is the number of D
updates per step it wants when train.d_steps is null.

The cross-entropy games work on logits for numerical stability: softplus(x) =
log(1 + e^x), so -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli.errors import UserError


class GANLoss:
    """The discriminator's cross-entropy, shared by the three classic games."""

    n_critic = 1
    probabilistic = True  # D's output is a logit: sigmoid(output) = P(real)
    # what the health monitor suggests when D wins outright and G's gradients may vanish
    d_wins_remedies = ("loss=nonsaturating, loss.label_smoothing=0.1, train.instance_noise=0.1, "
                       "train.balance.target=0.9, loss.r1_gamma=0.01 or a weaker D")

    def __init__(self, label_smoothing: float = 0.0, r1_gamma: float = 0.0):
        # one-sided label smoothing: only the real target moves (1 -> 1 - label_smoothing)
        self.real_target = 1.0 - label_smoothing
        self.r1_gamma = r1_gamma

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        t = self.real_target
        real = t * F.softplus(-real_logits) + (1 - t) * F.softplus(real_logits)
        return real.mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                fake: torch.Tensor, batch_dim: int = 0) -> torch.Tensor | float:
        """Added to D's loss; per replica when real is (R, B, ...) (batch_dim 1)."""
        return r1_penalty(D, real, self.r1_gamma, batch_dim) if self.r1_gamma else 0.0

    def after_d_step(self, D: nn.Module) -> None:
        pass

    def output(self, logits: torch.Tensor) -> torch.Tensor:
        """What D says about a sample: P(real) here, the raw score for critics."""
        return torch.sigmoid(logits)

    def accuracy(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """(2,): shares of real samples D calls real and of fakes it calls fake."""
        threshold = self.threshold(real_logits, fake_logits)
        return torch.stack([(real_logits > threshold).float().mean(),
                            (fake_logits <= threshold).float().mean()])

    def threshold(self, real_logits: torch.Tensor, fake_logits: torch.Tensor):
        return 0.0  # logit 0 = P(real) 1/2; for hinge, the middle of the targets -1 and 1


class Minimax(GANLoss):
    """G minimises E log(1 - D(G(z))) = -E softplus(l): saturates when D rejects fakes."""

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -F.softplus(fake_logits).mean()


class NonSaturating(GANLoss):
    """G minimises -E log D(G(z)) = E softplus(-l)."""

    d_wins_remedies = ("loss.label_smoothing=0.1, train.instance_noise=0.1, "
                       "train.balance.target=0.9, loss.r1_gamma=0.01 or a weaker D")

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_logits).mean()


class MaxLikelihood(GANLoss):
    """G minimises -E exp(sigma^-1(D(G(z)))) / 2 = -E exp(l) / 2 (Goodfellow 2014).

    With an optimal D this G gradient equals that of maximum likelihood. The
    logit is clamped at 30 only so that exp cannot overflow float32.
    """

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -0.5 * fake_logits.clamp(max=30.0).exp().mean()


class LeastSquares(GANLoss):
    """LSGAN (Mao et al. 2017): D regresses real to 1 (or 1 - smoothing) and fake to 0,
    G pulls its fakes towards 1. Squares do not saturate where a sigmoid would."""

    probabilistic = False

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((real_logits - self.real_target) ** 2).mean() + 0.5 * (fake_logits**2).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((fake_logits - 1.0) ** 2).mean()

    def output(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def threshold(self, real_logits, fake_logits):
        return 0.5  # halfway between the targets 0 and 1


class Critic(GANLoss):
    """A critic with a linear output instead of a probability (no label smoothing)."""

    probabilistic = False

    def __init__(self, label_smoothing: float = 0.0, r1_gamma: float = 0.0) -> None:
        if label_smoothing:
            raise UserError(f"loss.label_smoothing={label_smoothing}: a critic has no labels to "
                            "smooth; only minimax, nonsaturating, maxlik and lsgan take it")
        super().__init__(r1_gamma=r1_gamma)

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()

    def output(self, logits: torch.Tensor) -> torch.Tensor:
        return logits


class Hinge(Critic):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D pushes real scores above 1
    and fake scores below -1, and stops pushing once they are there."""

    # D gives G no signal once the margins hold, so it must keep up: 2 updates per step
    # (BigGAN's choice; on data=unimodal 400 steps end at w1 0.06 instead of 0.34)
    n_critic = 2

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


class Wasserstein(Critic):
    """WGAN (Arjovsky et al. 2017): the critic estimates W1 = E f(x) - E f(G(z)) over
    1-Lipschitz f, kept Lipschitz by clipping every weight to [-clip, clip]."""

    n_critic = 5

    def __init__(self, clip: float = 0.01, label_smoothing: float = 0.0, r1_gamma: float = 0.0):
        super().__init__(label_smoothing, r1_gamma)
        self.clip = clip

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return fake_logits.mean() - real_logits.mean()

    def after_d_step(self, D: nn.Module) -> None:
        with torch.no_grad():
            for p in D.parameters():
                p.clamp_(-self.clip, self.clip)

    def threshold(self, real_logits, fake_logits):
        # a critic's scores have no fixed zero: split at the middle of the two means
        return 0.5 * (real_logits.mean() + fake_logits.mean())


class WassersteinGP(Wasserstein):
    """WGAN-GP (Gulrajani et al. 2017): instead of clipping, penalise
    gp_weight * E (|grad f(x_hat)| - 1)^2 at random points between real and fake.

    one_sided penalises only norms above 1 (Petzka et al. 2018, "WGAN-LP"). In 1-D
    the two-sided penalty traps the critic: turning f(x) = x into the |x - m| that
    tells a narrow G from a wide mode means passing through slopes below 1, which
    the penalty forbids (measured: the critic finds 0.02 of a true W1 of 0.24).
    """

    def __init__(self, gp_weight: float = 10.0, one_sided: bool = True,
                 label_smoothing: float = 0.0, r1_gamma: float = 0.0):
        super().__init__(clip=0.0, label_smoothing=label_smoothing, r1_gamma=r1_gamma)
        self.gp_weight, self.one_sided = gp_weight, one_sided

    def penalty(self, D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                fake: torch.Tensor, batch_dim: int = 0) -> torch.Tensor:
        # (refused with train.replicas: batch_dim is always 0 here)
        n = min(len(real), len(fake))
        alpha = torch.rand(n, *[1] * (real.dim() - 1), device=real.device)  # (n, 1, ...)
        between = (alpha * real[:n] + (1 - alpha) * fake[:n]).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(between).sum(), between, create_graph=True)
        excess = grad.flatten(1).norm(dim=1) - 1.0  # (n,)
        if self.one_sided:
            excess = F.relu(excess)
        return self.gp_weight * (excess**2).mean() + super().penalty(D, real, fake, batch_dim)

    def after_d_step(self, D: nn.Module) -> None:
        pass  # the penalty replaces clipping


def r1_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, gamma: float,
               batch_dim: int = 0) -> torch.Tensor:
    """R1 (Mescheder et al. 2018, arXiv:1801.04406): gamma / 2 x E_real |grad_x D(x)|^2, D's
    input gradient at the real samples it is shown. It pulls D's slope there to 0, so D
    cannot sharpen without bound around the data once G is close (their theorem: with it
    the game converges locally where the unregularised one oscillates).

    real: (B, ...) or, for replicas, (R, B, ...) with batch_dim 1: the result is () or (R,),
    each replica's own penalty (its slice of the gradient is its own D's: the replicas'
    outputs do not mix). The input gradient is torch.func.grad's rather than
    autograd.grad's, so the same code runs nested inside the compiled step's
    grad_and_value (and under torch.compile), and eagerly under an ordinary backward().
    """
    grad = torch.func.grad(lambda x: D(x).sum())(real)  # (..., B, *sample)
    per_sample = grad.flatten(batch_dim + 1).square().sum(-1)  # (..., B)
    return 0.5 * gamma * per_sample.mean(-1)
