"""The GAN toolbox: every objective learns, and every remedy switch changes what happens."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import compose_train
from gan_cli.build import build_data, build_loss, build_models, build_optimizers
from gan_cli.health import HealthMonitor
from gan_cli.replicas import first_non_finite_parameter
from gan_cli.models import MinibatchDiscrimination, MinibatchStdDev, ema_update
from gan_cli.unroll import unrolled

CPU = torch.device("cpu")
# a few hundred steps on the unimodal mixture N(4, 0.5) at a constant learning rate:
# enough for every objective to converge (w1 <= w1_tol = 0.1, its mode covered)
LEARN = ["data=unimodal", "train.batch_size=256", "train.eval_every=null", "train.log_every=50",
         "train.ckpt_every=null", "optim/schedule=constant", "eval.n_samples=4000"]


@pytest.mark.parametrize("loss, steps", [
    ("nonsaturating", 400), ("minimax", 400), ("maxlik", 400), ("lsgan", 250), ("hinge", 250),
    ("wgan", 150), ("wgan_gp", 150)])  # critics take 5 D updates per step: fewer steps
def test_every_objective_learns_the_unimodal_mixture(run_tiny, loss, steps):
    summary, _ = run_tiny(*LEARN, f"loss={loss}", f"train.steps={steps}")
    assert summary["status"] == "completed"
    assert summary["metrics"]["w1"] <= summary["w1_tol"] == pytest.approx(0.1), summary["metrics"]
    assert summary["converged_at_step"] == steps


def test_wgan_picks_rmsprop_and_five_critic_steps():
    cfg = compose_train(["loss=wgan"])
    assert cfg.optim.discriminator._target_ == "torch.optim.RMSprop"
    assert cfg.train.d_steps is None and build_loss(cfg.loss).n_critic == 5


def build(*overrides: str):
    cfg = compose_train(["device=cpu", *overrides])
    data = build_data(cfg.data, CPU)
    models = build_models(cfg.model, data, CPU)
    return cfg, data, models


def test_unrolled_generator_gradient_differs_and_leaves_d_untouched():
    torch.manual_seed(0)
    cfg, data, m = build("model.generator.hidden=[16]", "model.discriminator.hidden=[16]")
    loss = build_loss(cfg.loss)
    opts = build_optimizers(cfg.optim, m)
    G, D = m.generator, m.discriminator
    z, real = m.noise(64), data.sample(64)
    d_before = copy.deepcopy(D.state_dict())

    def g_grad(D_for_g):
        G.zero_grad()
        loss.g_loss(D_for_g(G(z))).backward()
        return torch.cat([p.grad.flatten() for p in G.parameters()])

    plain = g_grad(D)
    ahead = g_grad(unrolled(D, opts.discriminator, loss, 3, real_batch=lambda: real,
                            fake_batch=lambda: G(z)))
    assert not torch.allclose(plain, ahead, rtol=1e-3, atol=1e-6)
    # the look-ahead is discarded: D's weights are exactly as they were
    for key, value in D.state_dict().items():
        assert torch.equal(value, d_before[key]), key
    # zero look-ahead steps is the plain D
    assert torch.allclose(g_grad(unrolled(D, opts.discriminator, loss, 0, lambda: real,
                                          lambda: G(z))), plain)


def test_look_ahead_steps_are_as_large_as_adams_own():
    """After one Adam update on a tiny gradient, Adam's running RMS is tiny: a plain
    look-ahead step of lr / RMS x gradient would throw D far away (G's loss at step
    100 of a ring8 run once read 4.5e5). The look-ahead moves D as far as Adam would."""
    torch.manual_seed(0)
    cfg, data, m = build("model.generator.hidden=[16]", "model.discriminator.hidden=[16]")
    loss = build_loss(cfg.loss)
    opt_d = build_optimizers(cfg.optim, m).discriminator
    G, D = m.generator, m.discriminator
    z, real = m.noise(64), data.sample(64)
    opt_d.zero_grad()
    (1e-6 * loss.d_loss(D(real), D(G(z).detach()))).backward()
    opt_d.step()
    before = [p.detach().clone() for p in D.parameters()]
    D_ahead = unrolled(D, opt_d, loss, 3, real_batch=lambda: real, fake_batch=lambda: G(z))
    # 3 look-ahead steps of about lr each change D's outputs a little (the plain steps
    # of lr / 1e-6 changed them by 1.8e23)
    moved = (D_ahead(real) - D(real)).abs().max().item()
    assert moved < 1.0, moved
    assert abs(loss.g_loss(D_ahead(G(z))).item() - loss.g_loss(D(G(z))).item()) < 1.0
    assert all(torch.equal(p, b) for p, b in zip(D.parameters(), before))


def test_unrolled_training_runs_and_logs(run_tiny):
    summary, _ = run_tiny("train.unroll_steps=2", "data=ring8")
    assert summary["status"] == "completed" and summary["metrics"]["n_modes"] == 8


def test_ema_lags_the_live_weights_by_the_decay():
    live, average = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = [p.clone() for p in average.parameters()]
    ema_update(average, live, decay=0.9)
    for a, b, w in zip(average.parameters(), before, live.parameters()):
        assert torch.allclose(a, 0.9 * b + 0.1 * w)


def test_ema_is_what_the_run_evaluates(run_tiny):
    from gan_cli.checkpoint import load_checkpoint

    _, run_dir = run_tiny("train.ema=0.9")
    state = load_checkpoint(run_dir)
    live, average = state["generator"], state["generator_ema"]
    assert any(not torch.allclose(live[k], average[k]) for k in live)
    _, run_dir = run_tiny("train.ema=0.0", run_dir=run_dir.parent / "copy")
    state = load_checkpoint(run_dir)  # decay 0: the average is the live weights
    assert all(torch.allclose(state["generator"][k], state["generator_ema"][k])
               for k in state["generator"])


def test_spectral_norm_scales_each_layer_to_unit_norm():
    torch.manual_seed(0)
    _, data, plain = build()
    _, _, normed = build("model.discriminator.spectral_norm=true")
    x = data.sample(256)
    for _ in range(60):  # power iterations run in training mode, one per forward
        normed.discriminator(x)
    sigmas = [torch.linalg.matrix_norm(layer.weight, 2).item()
              for layer in normed.discriminator.modules() if isinstance(layer, torch.nn.Linear)]
    assert sigmas == pytest.approx([1.0] * 3, abs=0.05)
    raw = [torch.linalg.matrix_norm(layer.weight, 2).item()
           for layer in plain.discriminator.modules() if isinstance(layer, torch.nn.Linear)]
    assert max(abs(s - 1) for s in raw) > 0.1


def test_pack_judges_m_samples_at_once():
    cfg, data, m = build("data=ring8", "model.discriminator.pack=4")
    D = m.discriminator
    first_linear = next(layer for layer in D.modules() if isinstance(layer, torch.nn.Linear))
    assert first_linear.in_features == 4 * 2
    x = data.sample(64)
    assert D(x).shape == (16, 1)
    # swapping two samples across packs changes the verdicts; within a pack it is a new input
    y = x.clone()
    y[[0, 4]] = x[[4, 0]]
    assert not torch.allclose(D(x)[:2], D(y)[:2])


def test_minibatch_stddev_appends_the_batch_spread():
    h = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    out = MinibatchStdDev()(h)
    assert out[:, :2].tolist() == h.tolist()
    assert out[:, 2].tolist() == pytest.approx([1.0, 1.0])  # std of (0, 2) and (1, 3), mean 1


def test_minibatch_discrimination_sees_the_rest_of_the_batch():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(4, n_kernels=3, kernel_dim=2)
    h = torch.randn(5, 4)
    out = layer(h)
    assert out.shape == (5, 7)
    # o_i = sum_j!=i exp(-|M_i - M_j|^2), by hand
    M = (h @ layer.T).view(5, 3, 2)
    d2 = ((M[:, None] - M[None]) ** 2).sum(-1)  # (5, 5, 3)
    assert torch.allclose(out[:, 4:], torch.exp(-d2).sum(1) - 1, atol=1e-5)
    # a sample's features depend on the others: a copy of sample 0 raises its closeness
    h2 = h.clone()
    h2[1] = h[0]
    assert (layer(h2)[0, 4:] > out[0, 4:]).all()


@pytest.mark.parametrize("minibatch", ["stddev", "discrimination"])
def test_minibatch_layers_train(run_tiny, minibatch):
    summary, _ = run_tiny(f"model.discriminator.minibatch={minibatch}")
    assert summary["status"] == "completed"


def test_instance_noise_blurs_what_d_sees(run_tiny, monkeypatch, tmp_path):
    import gan_cli.build

    seen = []
    real_build_models = gan_cli.build.build_models

    def spying_build_models(*args, **kwargs):
        models = real_build_models(*args, **kwargs)
        models.discriminator.register_forward_pre_hook(
            # the real batch (64 of smoke's batch) comes first in D's joint pass
            lambda module, inputs: seen.append(inputs[0][:64].std().item())
            if module.training else None)
        return models

    monkeypatch.setattr(gan_cli.build, "build_models", spying_build_models)
    run_tiny("data=unimodal", "train.steps=2", "train.d_steps=1", "train.instance_noise=2.0")
    # step 1: real N(4, 0.5) plus N(0, 2^2): std sqrt(0.25 + 4) = 2.06 (batch 64, so loosely)
    assert seen[0] == pytest.approx(2.06, rel=0.2)
    seen.clear()
    run_tiny("data=unimodal", "train.steps=2", "train.d_steps=1", run_dir=tmp_path / "clear")
    assert seen[0] == pytest.approx(0.5, rel=0.25)


def test_d_wins_warning_comes_once(run_tiny):
    # G frozen (lr tiny) far from the data (no centring: G near 0, data near 4): D wins
    summary, run_dir = run_tiny("data=unimodal", "model.center=false", "train.steps=1300",
                                "train.log_every=100", "train.eval_every=null",
                                "train.ckpt_every=null", "optim.generator.lr=1e-12",
                                "optim/schedule=constant")
    warnings = summary["warnings"]
    assert len(warnings) == 1 and "D has told real from fake" in warnings[0]
    assert (run_dir / "train.log").read_text().count("D has told real from fake") == 1


def test_coverage_warning_only_after_full_coverage():
    health = HealthMonitor(CPU)
    assert health.coverage_warning(100, {"modes_covered": 6, "n_modes": 8}) is None
    assert health.coverage_warning(200, {"modes_covered": 8, "n_modes": 8}) is None
    message = health.coverage_warning(300, {"modes_covered": 7, "n_modes": 8})
    assert "7/8 modes covered, after all 8 were at step 200" in message
    assert health.coverage_warning(400, {"modes_covered": 5, "n_modes": 8}) is None  # once


def test_non_finite_statistics_and_parameters_are_named():
    health = HealthMonitor(CPU)
    health.add(1, torch.ones(8))
    assert health.problems() == [None]
    stats = torch.ones(8)
    stats[6] = float("inf")  # grad_norm_d
    health.add(2, stats)
    stats[0] = float("nan")  # d_loss, one step later
    health.add(3, stats)
    assert health.problems() == ["grad_norm_d is inf at step 2"]
    layer = torch.nn.Linear(2, 2)
    assert first_non_finite_parameter(layer) is None
    with torch.no_grad():
        layer.bias[1] = float("nan")
    assert first_non_finite_parameter(layer) == "bias"


def test_ttur_preset_gives_d_four_times_gs_learning_rate():
    cfg = compose_train(["optim=ttur"])
    assert cfg.optim.discriminator.lr == pytest.approx(4 * cfg.optim.generator.lr)
    assert list(cfg.optim.generator.betas) == [0.0, 0.9]


def test_a_discrete_latent_appends_a_uniform_one_hot_category():
    from gan_cli.models import NoisePrior

    prior = NoisePrior("uniform", dim=2, categories=5)
    z = prior(4000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (4000, 7) and prior.width == 7
    code = z[:, 2:]
    assert torch.equal(code.sum(1), torch.ones(4000)) and set(code.unique().tolist()) == {0, 1}
    assert code.mean(0).tolist() == pytest.approx([0.2] * 5, abs=0.03)  # uniform categories
    # without categories the draw is what it always was
    plain = NoisePrior("uniform", dim=2)(4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain, z[:, :2])
    # G's input widens with it, and a run trains with it
    cfg = compose_train(["data=ring8", "device=cpu", "model.noise.categories=8"])
    models = build_models(cfg.model, build_data(cfg.data, torch.device("cpu")), "cpu")
    assert models.generator(models.noise(3)).shape == (3, 2)
    assert models.noise(3).shape == (3, 2 + 8)


def test_d_wins_advice_never_suggests_the_loss_already_in_use():
    from gan_cli.losses import Minimax, NonSaturating

    winning = {"d_acc_real": 1.0, "d_acc_fake": 1.0}
    for loss, suggests_the_switch in ((Minimax(), True), (NonSaturating(), False)):
        health = HealthMonitor(CPU)
        assert health.d_wins_warning(100, winning, True, loss.d_wins_remedies) is None
        message = health.d_wins_warning(1100, winning, True, loss.d_wins_remedies)
        assert "D has told real from fake" in message and "label_smoothing" in message
        assert ("loss=nonsaturating" in message) == suggests_the_switch
