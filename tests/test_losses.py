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


# ---------------------------------------------------------------- the toolbox objectives
from gan_cli.errors import UserError  # noqa: E402
from gan_cli.losses import Hinge, LeastSquares, Wasserstein, WassersteinGP  # noqa: E402


def test_least_squares_closed_form():
    r, f = [2.0, 0.0], [-1.0, 0.0]
    expected_d = 0.5 * sum((v - 1) ** 2 for v in r) / 2 + 0.5 * sum(v**2 for v in f) / 2
    assert LeastSquares().d_loss(REAL, FAKE).item() == pytest.approx(expected_d)
    assert LeastSquares().g_loss(FAKE).item() == pytest.approx(0.5 * sum((v - 1) ** 2 for v in f) / 2)
    # one-sided smoothing moves the real target to 0.9
    smoothed = 0.5 * sum((v - 0.9) ** 2 for v in r) / 2 + 0.5 * sum(v**2 for v in f) / 2
    assert LeastSquares(label_smoothing=0.1).d_loss(REAL, FAKE).item() == pytest.approx(smoothed)


def test_hinge_closed_form():
    # relu(1 - 2) + relu(1 - 0) = 1 over real; relu(1 - 1) + relu(1 + 0) = 1 over fake
    assert Hinge().d_loss(REAL, FAKE).item() == pytest.approx(1 / 2 + 1 / 2)
    assert Hinge().g_loss(FAKE).item() == pytest.approx(0.5)  # -mean(-1, 0)
    assert Hinge.n_critic == 2


def test_wasserstein_closed_form_and_clipping():
    loss = Wasserstein(clip=0.05)
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(-0.5 - 1.0)  # E f(fake) - E f(real)
    assert loss.g_loss(FAKE).item() == pytest.approx(0.5)
    assert loss.n_critic == 5
    D = torch.nn.Linear(3, 1)
    with torch.no_grad():
        D.weight.copy_(torch.tensor([[0.5, -0.01, -2.0]]))
        D.bias.fill_(0.3)
    loss.after_d_step(D)
    assert D.weight[0].tolist() == pytest.approx([0.05, -0.01, -0.05]) and D.bias.item() == pytest.approx(0.05)


@pytest.mark.parametrize("slope, one_sided, expected", [
    (3.0, False, 10 * (3 - 1) ** 2), (0.5, False, 10 * 0.5**2),
    (3.0, True, 10 * (3 - 1) ** 2), (0.5, True, 0.0)])
def test_gradient_penalty_closed_form(slope, one_sided, expected):
    # a linear critic f(x) = w.x has |grad f| = |w| everywhere
    w = torch.tensor([slope * 0.6, slope * 0.8])
    critic = lambda x: (x @ w).unsqueeze(1)  # noqa: E731
    real, fake = torch.randn(64, 2), torch.randn(64, 2)
    penalty = WassersteinGP(gp_weight=10.0, one_sided=one_sided).penalty(critic, real, fake)
    assert penalty.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_critics_refuse_label_smoothing():
    for cls in (Hinge, Wasserstein, WassersteinGP):
        with pytest.raises(UserError, match="loss.label_smoothing=0.1: a critic has no labels"):
            cls(label_smoothing=0.1)


def test_accuracy_thresholds():
    # logits: real 2, 0 -> one above 0; fakes -1, 0 -> both at or below 0
    assert NonSaturating().accuracy(REAL, FAKE).tolist() == [0.5, 1.0]
    # least squares splits at 0.5, between its targets 0 and 1
    assert LeastSquares().accuracy(torch.tensor([[0.6], [0.4]]), torch.tensor([[0.6]])).tolist() \
        == [0.5, 0.0]
    # a critic has no fixed zero: the split is the middle of the two means (0.5 here)
    real, fake = torch.tensor([[10.0], [0.0]]), torch.tensor([[-9.0], [1.0]])
    assert Wasserstein().accuracy(real, fake).tolist() == [0.5, 0.5]
