import math

import pytest
import torch

from gan_cli.data.gaussian import GaussianMixture
from gan_cli.evaluate import default_w1_tol, evaluate_mixture, is_converged, mode_statistics, \
    wasserstein1


def test_w1_of_identical_samples_is_zero_and_of_a_shift_is_the_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 1, generator=g)
    assert wasserstein1(x, x.clone()) == pytest.approx(0.0, abs=1e-7)
    assert wasserstein1(x, x + 0.7) == pytest.approx(0.7, abs=1e-5)
    # a permutation does not change the distribution
    assert wasserstein1(x, x[torch.randperm(5000, generator=g)]) == pytest.approx(0.0, abs=1e-7)


def test_w1_between_two_point_masses_is_their_distance():
    x = torch.zeros(1000, 1)
    y = torch.cat([torch.zeros(500, 1), torch.full((500, 1), 4.0)])
    assert wasserstein1(x, y) == pytest.approx(2.0)  # half the mass moves 4


def test_sliced_w1_of_a_2d_shift():
    # the mean over directions u of |c . u| is 2|c|/pi in 2-D
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 2, generator=g)
    shift = torch.tensor([3.0, 4.0])  # |c| = 5
    w1 = wasserstein1(x, x + shift, projections=4000, generator=g)
    assert w1 == pytest.approx(2 * 5 / math.pi, rel=0.03)
    assert wasserstein1(x, x.clone(), projections=64, generator=g) == pytest.approx(0, abs=1e-6)


def test_mode_counting_on_hand_made_samples():
    mix = GaussianMixture(means=[-4.0, 0.0, 4.0], stds=0.5)
    # 60 % at mode 0, 38 % at mode 2, 2 % at mode 1 (below 10 % of its weight 1/3),
    # plus 10 samples far from every mode (not high quality)
    x = torch.cat([torch.full((600, 1), -4.1), torch.full((20, 1), 0.2),
                   torch.full((380, 1), 4.0), torch.full((10, 1), 2.0)])
    stats = mode_statistics(x, mix)
    n = 1010
    assert stats["n_modes"] == 3
    assert stats["modes_covered"] == 2
    assert stats["hq_fraction"] == pytest.approx(1000 / n)
    assert stats["mode_mass"] == pytest.approx([600 / n, 20 / n, 380 / n])
    # x = 2.0 is 4 std from both neighbours: the tie goes to the first (mode 1)
    p = torch.tensor([600, 30, 380]) / n
    assert stats["mode_kl"] == pytest.approx((p * (p * 3).log()).sum().item(), rel=1e-5)


def test_samples_from_the_mixture_itself_score_perfectly():
    mix = GaussianMixture(means=[[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]], stds=0.1)
    g = torch.Generator().manual_seed(3)
    fake, real = mix.sample(10_000, generator=g), mix.sample(10_000, generator=g)
    m = evaluate_mixture(fake, real, mix)
    assert m["modes_covered"] == 3
    assert m["hq_fraction"] > 0.98
    assert m["mode_kl"] < 1e-3
    assert m["w1"] < 0.04  # sampling noise: mode shares differ by ~1 % between two draws
    assert is_converged(m, w1_tol=0.05)
    # the same samples collapsed onto one mode are not converged
    collapsed = evaluate_mixture(fake[:, :] * 0 + mix.means[0], real, mix)
    assert collapsed["modes_covered"] == 1
    assert collapsed["mode_kl"] == pytest.approx(math.log(3), rel=1e-4)
    assert not is_converged(collapsed, w1_tol=10.0)


def test_default_w1_tol_is_a_fifth_of_the_mean_std():
    assert default_w1_tol(GaussianMixture(means=[0.0, 5.0], stds=[0.5, 1.5])) == pytest.approx(0.2)


def test_a_g_squeezed_inside_each_mode_keeps_hq_but_is_not_converged():
    """Issue 26: G puts every sample within a fifth of each mode's width of its centre. hq
    and modes read perfect; mode_spread (about 0.2) and so converged_at_step do not."""
    mix = GaussianMixture(means=[-4.0, 0.0, 4.0], stds=0.5)
    g = torch.Generator().manual_seed(0)
    real = mix.sample(10_000, generator=g, exact_weights=True)
    good = mix.sample(10_000, generator=g, exact_weights=True)
    squeezed = mix.means[mix.balanced_labels(10_000)] + 0.1 * torch.randn(10_000, 1, generator=g)
    collapsed = evaluate_mixture(squeezed, real, mix)
    assert collapsed["hq_fraction"] == 1.0 and collapsed["modes_covered"] == 3
    assert collapsed["mode_spread"] == pytest.approx(0.1 / 0.5, rel=0.05)
    fine = evaluate_mixture(good, real, mix)
    assert fine["mode_spread"] > 0.95
    # w1 is loose enough here for both to pass it: only the spread tells them apart
    w1_tol = max(collapsed["w1"], fine["w1"]) + 1e-6
    assert not is_converged(collapsed, w1_tol) and is_converged(fine, w1_tol)


def test_mode_spread_takes_the_worst_mode_and_dimension():
    mix = GaussianMixture(means=[[0.0, 0.0], [10.0, 0.0]], stds=1.0)
    g = torch.Generator().manual_seed(1)
    real = mix.sample(20_000, generator=g, exact_weights=True)
    fake = mix.sample(20_000, generator=g, exact_weights=True)
    second = fake[:, 0] > 5  # mode 1 squeezed to half its width in y only: r = 0.5
    fake[second, 1] *= 0.5
    from gan_cli.evaluate import mode_spread

    assert mode_spread(fake, real, mix) == pytest.approx(0.5, abs=0.03)
    fake[second, 1] *= 4.0  # now twice as wide: the 3-sigma cut trims the tails (hq drops)
    assert 0.5 < mode_spread(fake, real, mix) < 0.8
    assert mode_spread(real[:10], real, mix) > 0  # few samples: still a number
    assert mode_spread(torch.full((100, 2), 50.0), real, mix) == 0.0  # nothing covered


# ---------------------------------------------------------------- the blog's yardstick
TRIMODAL = GaussianMixture([-4.0, 0.0, 4.0], 0.5)


def spikes(at, n_each=3000, width=0.01):
    """Narrow spikes of n_each samples at the given points, (n, 1)."""
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor(at).repeat_interleave(n_each).unsqueeze(1)
    return centres + width * torch.randn(centres.shape, generator=g)


def test_one_narrow_spike_per_mode_has_a_peak_on_every_mode():
    from gan_cli.evaluate import mode_peaks

    assert mode_peaks(spikes([-4.0, 0.0, 4.0]), TRIMODAL) == 3
    assert mode_peaks(spikes([-4.1, 0.2, 3.8]), TRIMODAL) == 3  # within half a std (0.25)
    # the real distribution has its peaks on the modes too
    assert mode_peaks(TRIMODAL.sample(10_000, torch.Generator().manual_seed(0)), TRIMODAL) == 3


def test_a_missing_or_misplaced_mode_has_no_peak():
    from gan_cli.evaluate import mode_peaks

    assert mode_peaks(spikes([-4.0, 0.0], n_each=4500), TRIMODAL) == 2  # no mode at 4
    assert mode_peaks(spikes([-4.0, 0.5, 4.0]), TRIMODAL) == 2  # 1 std off the middle one
    assert mode_peaks(spikes([-4.0, 0.0, 4.4]), TRIMODAL) == 2  # 0.8 std off
    # spread over the whole line: the KDE wobbles, but nowhere near the data's height
    flat = torch.rand(10_000, 1, generator=torch.Generator().manual_seed(2)) * 12 - 6
    assert mode_peaks(flat, TRIMODAL) == 0
    # one broad bump over all three (std 4): its top at 0 is not half as high as the mode there
    assert mode_peaks(4 * torch.randn(10_000, 1, generator=torch.Generator().manual_seed(3)),
                      TRIMODAL) == 0


def test_peaks_on_modes_is_a_1d_mixture_metric():
    g = torch.Generator().manual_seed(0)
    m = evaluate_mixture(spikes([-4.0, 0.0, 4.0]), TRIMODAL.sample(9000, g), TRIMODAL)
    assert m["peaks_on_modes"] == 3 and m["mode_spread"] < 0.1  # narrow: only peaks pass
    ring = GaussianMixture([[1.0, 0.0], [-1.0, 0.0]], 0.1)
    assert "peaks_on_modes" not in evaluate_mixture(ring.sample(500, g), ring.sample(500, g), ring)
