"""The hot path's shortcuts (#7) do what the plain code did, with fewer kernels."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY, compose_train
from gan_cli import build
from gan_cli.replicas import SingleRun
from gan_cli.models import MLP, judges_each_sample_alone


def count_d_passes(run_tiny, monkeypatch, run_dir, *overrides: str) -> list[int]:
    """The batch size of every training-mode D forward pass in a 3-step run."""
    import gan_cli.build

    sizes: list[int] = []
    real_build_models = gan_cli.build.build_models

    def spying_build_models(*args, **kwargs):
        models = real_build_models(*args, **kwargs)
        models.discriminator.register_forward_pre_hook(
            lambda module, inputs: sizes.append(len(inputs[0])) if module.training else None)
        return models

    monkeypatch.setattr(gan_cli.build, "build_models", spying_build_models)
    run_tiny("train.steps=3", "train.d_steps=1", "eval.plots=false", *overrides, run_dir=run_dir)
    return sizes


def test_d_judges_real_and_fake_in_one_pass_unless_a_layer_mixes_the_batch(
        run_tiny, monkeypatch, tmp_path):
    # smoke's batch is 64: per step one joint D pass of 128, and G's pass of 64
    assert count_d_passes(run_tiny, monkeypatch, tmp_path / "a") == [128, 64] * 3
    # minibatch statistics must see pure batches: real, fake, then G's
    assert count_d_passes(run_tiny, monkeypatch, tmp_path / "b",
                          "model.discriminator.minibatch=stddev") == [64, 64, 64] * 3


def test_which_discriminators_may_judge_a_mixed_batch():
    assert judges_each_sample_alone(MLP(2, 1, [8]))
    assert not judges_each_sample_alone(MLP(2, 1, [8], minibatch="stddev"))
    assert not judges_each_sample_alone(torch.nn.Sequential(torch.nn.BatchNorm1d(2)))


def test_the_joint_pass_gives_the_losses_of_separate_passes():
    D = MLP(2, 1, [16, 16])
    real, fake = torch.randn(32, 2), torch.randn(32, 2) + 1
    joint_real, joint_fake = D(torch.cat([real, fake])).chunk(2)
    torch.testing.assert_close(joint_real, D(real), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(joint_fake, D(fake), atol=1e-6, rtol=1e-6)


def test_grad_norm_is_the_norm_of_all_gradients_together():
    net = MLP(3, 1, [8, 8])
    net(torch.randn(10, 3)).sum().backward()
    flat = torch.cat([p.grad.flatten() for p in net.parameters()])
    assert SingleRun(0).grad_norm_of(net)().item() == pytest.approx(flat.norm().item(), rel=1e-6)


@pytest.mark.parametrize("optim", ["adam", "sgd", "rmsprop"])
def test_the_default_optimizers_use_multi_tensor_kernels_and_step_as_the_plain_loop(optim):
    cfg = compose_train(TINY + [f"optim={optim}"])
    torch.manual_seed(0)
    net = MLP(3, 1, [8])
    fast = build.instantiate(cfg.optim.generator, "optim.generator", _convert_="all")(
        net.parameters())
    assert fast.defaults.get("fused") or fast.defaults.get("foreach")
    twin = MLP(3, 1, [8])
    twin.load_state_dict(net.state_dict())
    node = {k: v for k, v in cfg.optim.generator.items() if k not in ("fused", "foreach")}
    plain = build.instantiate(node, "optim.generator", _convert_="all")(twin.parameters())
    for _ in range(3):
        x = torch.randn(16, 3)
        for model, opt in ((net, fast), (twin, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_frozen_d_gives_g_the_same_gradient_and_d_none():
    from gan_cli.models import frozen

    torch.manual_seed(0)
    G, D = MLP(2, 2, [8]), MLP(2, 1, [8])
    z = torch.randn(16, 2)
    D(G(z)).mean().backward()
    expected = [p.grad.clone() for p in G.parameters()]
    for net in (G, D):
        net.zero_grad(set_to_none=True)
    with frozen(list(D.parameters())):
        out = D(G(z)).mean()
    out.backward()
    assert all(p.grad is None for p in D.parameters())  # D's weight gradients skipped
    for p, e in zip(G.parameters(), expected):
        torch.testing.assert_close(p.grad, e)
    assert all(p.requires_grad for p in D.parameters())  # trainable again afterwards
