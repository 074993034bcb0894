import math

import pytest
import torch

from gan_cli.losses import MaxLikelihood, Minimax, NonSaturating

REAL = torch.tensor([[2.0], [0.0]])  # D(x) = sigmoid: 0.8808, 0.5
FAKE = torch.tensor([[-1.0], [0.0]])  # D(G(z)) = 0.2689, 0.5


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_discriminator_cross_entropy():
    expected = (-math.log(sigmoid(2.0)) - math.log(0.5)) / 2 \
        + (-math.log(1 - sigmoid(-1.0)) - math.log(0.5)) / 2
    for loss in (Minimax(), NonSaturating(), MaxLikelihood()):
        assert loss.d_loss(REAL, FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_one_sided_label_smoothing_moves_only_the_real_target():
    t = 0.9
    real = [-(t * math.log(sigmoid(v)) + (1 - t) * math.log(1 - sigmoid(v))) for v in (2.0, 0.0)]
    fake = [-math.log(1 - sigmoid(v)) for v in (-1.0, 0.0)]
    expected = sum(real) / 2 + sum(fake) / 2
    assert NonSaturating(label_smoothing=0.1).d_loss(REAL, FAKE).item() == \
        pytest.approx(expected, rel=1e-6)


def test_generator_losses():
    d = [sigmoid(-1.0), 0.5]
    # minimax: E log(1 - D(G(z)))
    assert Minimax().g_loss(FAKE).item() == pytest.approx(sum(math.log(1 - p) for p in d) / 2)
    # non-saturating: -E log D(G(z))
    assert NonSaturating().g_loss(FAKE).item() == pytest.approx(-sum(math.log(p) for p in d) / 2)
    # maximum likelihood: -E exp(logit) / 2 = -E D/(1-D) / 2
    assert MaxLikelihood().g_loss(FAKE).item() == \
        pytest.approx(-sum(p / (1 - p) for p in d) / 4, rel=1e-6)


def test_losses_are_finite_for_extreme_logits():
    huge = torch.tensor([[1e4], [-1e4]])
    for loss in (Minimax(), NonSaturating(), MaxLikelihood()):
        assert torch.isfinite(loss.d_loss(huge, -huge))
        assert torch.isfinite(loss.g_loss(huge))


def test_generator_gradients_point_towards_real():
    # every G loss must fall when D's logit on the fake rises
    for loss in (Minimax(), NonSaturating(), MaxLikelihood()):
        logits = torch.tensor([[-2.0], [0.5]], requires_grad=True)
        loss.g_loss(logits).backward()
        assert (logits.grad < 0).all(), type(loss).__name__
