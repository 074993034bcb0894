import math

import pytest
import torch

from gan_cli.errors import UserError
from gan_cli.data.gaussian import GaussianMixture
from gan_cli.models import NoisePrior


def test_1d_mixture_moments():
    # mean = sum w mu; var = sum w (s^2 + mu^2) - mean^2
    mix = GaussianMixture(means=[-4.0, 0.0, 4.0], stds=[0.5, 1.0, 0.25], weights=[1, 2, 1])
    x = mix.sample(400_000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (400_000, 1)
    w = torch.tensor([0.25, 0.5, 0.25])
    mu, sd = torch.tensor([-4.0, 0.0, 4.0]), torch.tensor([0.5, 1.0, 0.25])
    mean = (w * mu).sum()
    var = (w * (sd**2 + mu**2)).sum() - mean**2
    assert x.mean().item() == pytest.approx(mean.item(), abs=0.02)
    assert x.var().item() == pytest.approx(var.item(), rel=0.01)
    # the share of samples within 2 std of the middle mode follows its weight
    share_mid = ((x > -2) & (x < 2)).float().mean().item()
    assert share_mid == pytest.approx(0.5 * math.erf(2 / math.sqrt(2)), abs=0.005)


def test_2d_mixture_per_dimension_stds():
    mix = GaussianMixture(means=[[0.0, 0.0], [10.0, -10.0]], stds=[[1.0, 0.1], [0.1, 2.0]])
    assert (mix.dim, mix.n_modes) == (2, 2)
    x = mix.sample(200_000, generator=torch.Generator().manual_seed(1))
    left, right = x[x[:, 0] < 5], x[x[:, 0] >= 5]
    assert left.std(0).tolist() == pytest.approx([1.0, 0.1], rel=0.02)
    assert right.std(0).tolist() == pytest.approx([0.1, 2.0], rel=0.02)
    assert right.mean(0).tolist() == pytest.approx([10.0, -10.0], abs=0.03)


def test_density_integrates_to_one():
    mix = GaussianMixture(means=[-1.0, 3.0], stds=[0.3, 0.7], weights=[0.2, 0.8])
    grid = torch.linspace(-6, 9, 30_001).unsqueeze(1)
    integral = torch.trapezoid(mix.density(grid), grid[:, 0]).item()
    assert integral == pytest.approx(1.0, abs=1e-4)
    # at a mode centre the density is about w / (sqrt(2 pi) s)
    peak = mix.density(torch.tensor([[3.0]])).item()
    assert peak == pytest.approx(0.8 / (math.sqrt(2 * math.pi) * 0.7), rel=1e-3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(means=[0.0, 1.0], stds=0.0), "data.stds"),
    (dict(means=[0.0, 1.0], stds=[1.0, -1.0]), "every std must be > 0"),
    (dict(means=[0.0, 1.0], stds=[1.0, 1.0, 1.0]), "allowed: one number, 2 numbers"),
    (dict(means=[0.0, 1.0], weights=[1.0]), "got 1 weights for 2 means"),
    (dict(means=[0.0, 1.0], weights=[-1.0, 1.0]), "data.weights"),
    (dict(means=[[0.0, 1.0], [2.0]]), "data.means"),
    (dict(means=[]), "at least one mode"),
    (dict(means=[0.0, float("nan")]), "finite"),
])
def test_bad_mixture_values_name_the_key(kwargs, message):
    with pytest.raises(UserError, match=message):
        GaussianMixture(**kwargs)


def test_stratified_noise_puts_one_draw_in_each_stratum():
    prior = NoisePrior("stratified", dim=3, low=-8.0, high=8.0)
    z = prior(50, generator=torch.Generator().manual_seed(0))
    assert z.shape == (50, 3)
    for column in z.T:
        strata = ((column + 8.0) / 16.0 * 50).floor().long()
        assert sorted(strata.tolist()) == list(range(50))


def test_uniform_and_normal_noise():
    g = torch.Generator().manual_seed(0)
    u = NoisePrior("uniform", dim=2, low=2.0, high=5.0)(100_000, generator=g)
    assert u.min().item() >= 2.0 and u.max().item() < 5.0
    assert u.mean().item() == pytest.approx(3.5, abs=0.02)
    n = NoisePrior("normal", dim=4)(100_000, generator=g)
    assert n.std().item() == pytest.approx(1.0, abs=0.01)


def test_exact_weights_give_each_mode_its_share_to_within_one_sample():
    mix = GaussianMixture(means=[-4.0, 0.0, 4.0], stds=0.5, weights=[1, 2, 4])
    x = mix.sample(1000, generator=torch.Generator().manual_seed(0), exact_weights=True)
    counts = [((x > c - 2) & (x < c + 2)).sum().item() for c in (-4.0, 0.0, 4.0)]
    # 1000 x (1/7, 2/7, 4/7) = 142.9, 285.7, 571.4 (a 4-std tail may cross: allow 1 more)
    for count, expected in zip(counts, (1000 / 7, 2000 / 7, 4000 / 7)):
        assert abs(count - expected) <= 2


def test_per_mode_stds_mix_numbers_and_lists():
    """docs/config.md's own-preset example: one mode round, the other with a std per dimension."""
    mix = GaussianMixture(means=[[-3.0, 0.0], [3.0, 0.0]], stds=[0.5, [0.2, 1.0]], weights=[1, 3])
    assert mix.stds.tolist() == [[0.5, 0.5], [pytest.approx(0.2), 1.0]]
    with pytest.raises(UserError, match=r"data.stds=\[0.5, \[0.2, 1.0, 3.0\]\]: expected one "
                                        r"number, 2 numbers .* or a list of 2 numbers"):
        GaussianMixture(means=[[-3.0, 0.0], [3.0, 0.0]], stds=[0.5, [0.2, 1.0, 3.0]])
