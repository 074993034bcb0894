"""A D that overpowers G (issue 24): the R1 gradient penalty (loss.r1_gamma) and the
adaptive instance noise driven by D's accuracy (train.balance). Each test fails if its
option does nothing."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from conftest import compose_train
from gan_cli.checkpoint import load_checkpoint
from gan_cli.config import validate_train_config
from gan_cli.errors import UserError
from gan_cli.health import STATS
from gan_cli.losses import NonSaturating, r1_penalty
from gan_cli.replicas import Replicas
from gan_cli.step import Balance, StepSettings
from gan_cli.train import start_run, train
from test_resume import assert_same_tensors

CPU = torch.device("cpu")
# a D made to win: two modes at -2 and 2, G all but frozen (lr 1e-6) where its init put it,
# D's lr 10 x the default; without help D's accuracy is above 0.99 from step ~50 on
D_WINS = ["data=bimodal", "device=cpu", "train.batch_size=64", "optim/schedule=constant",
          "optim.discriminator.lr=1e-2", "optim.generator.lr=1e-6",
          "model.generator.hidden=[16]", "model.discriminator.hidden=[32,32]"]
ACCURACY = [STATS.index("d_acc_real"), STATS.index("d_acc_fake")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # (conftest.py)


def tiny_d(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))


def train_steps(overrides: list[str], steps: int):
    """A run built as gan-train builds it, stepped `steps` times in-process; returns the
    run and each step's mean accuracy."""
    torch.manual_seed(0)
    run = start_run(compose_train(overrides), CPU)
    accuracy = [run.step(0.0, 0.0)[..., ACCURACY].mean().item() for _ in range(steps)]
    return run, accuracy


def mean(xs):
    return sum(xs) / len(xs)


# ---------------------------------------------------------------- R1
def test_r1_matches_a_hand_computation_with_autograd():
    D, x = tiny_d(), torch.randn(16, 2)
    penalty = r1_penalty(D, x, gamma=3.0)
    x_ = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_).sum(), x_, create_graph=True)
    by_hand = 3.0 / 2 * (grad**2).sum(1).mean()
    torch.testing.assert_close(penalty, by_hand)
    # and its gradient for D's weights (what the D step follows) is the same
    ours = torch.autograd.grad(penalty, list(D.parameters())[:3])
    theirs = torch.autograd.grad(by_hand, list(D.parameters())[:3])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    assert penalty > 0
    # the loss adds it to D's objective only when asked
    assert NonSaturating().penalty(D, x, x) == 0.0
    torch.testing.assert_close(NonSaturating(r1_gamma=3.0).penalty(D, x, x), penalty)


def test_r1_per_replica_is_each_single_runs_penalty():
    copies = [tiny_d(seed) for seed in range(3)]
    x = torch.randn(3, 16, 2)
    per_replica = r1_penalty(Replicas(copies), x, gamma=2.0, batch_dim=1)
    assert per_replica.shape == (3,)
    for k, D in enumerate(copies):
        torch.testing.assert_close(per_replica[k], r1_penalty(D, x[k], gamma=2.0))


def test_the_step_adds_r1_to_ds_loss():
    cfg = compose_train([*D_WINS, "loss.r1_gamma=5"])
    step = start_run(cfg, CPU).step
    real, fake = torch.randn(64, 1) * 2, torch.randn(64, 1)
    with_r1 = step.d_objective(real, fake, None)[0]
    step.loss.r1_gamma = 0.0
    without = step.d_objective(real, fake, None)[0]
    D = step.players.discriminator
    torch.testing.assert_close(with_r1 - without, r1_penalty(D, real, 5.0))


def test_r1_flattens_d_at_the_real_points():
    """Same seed, same D made to win: R1 keeps D's input gradient at the data small."""
    def slope_at_data(run):
        real = run.data.sample(2000, generator=torch.Generator().manual_seed(1))
        return r1_penalty(run.state.players.discriminator, real, gamma=2.0).item()

    plain, _ = train_steps(D_WINS, 150)
    penalised, _ = train_steps([*D_WINS, "loss.r1_gamma=10"], 150)
    assert slope_at_data(penalised) < 0.2 * slope_at_data(plain)


def test_r1_with_replicas_trains_each_replica_with_its_own_penalty():
    run, _ = train_steps([*D_WINS, "loss.r1_gamma=10", "train.replicas=2"], 5)
    real, fake, labels = run.step.d_batch(0.0)
    d_loss = run.step.d_objective(real, fake, labels)[0]
    assert d_loss.shape == (2,)  # one loss per replica: each replica's gradient is its own


def test_r1_compiles():
    from gan_cli.compiled import refusal

    step = start_run(compose_train([*D_WINS, "loss.r1_gamma=1"]), CPU).step
    assert refusal(step, CPU) is None


@pytest.mark.slow
def test_compiled_r1_and_balance_follow_the_eager_step():
    """The compiled graph (R1's nested torch.func.grad, the balance's in-place update)
    takes the same steps as eager, to float rounding."""
    from gan_cli.compiled import CompiledStep

    overrides = [*D_WINS, "loss.r1_gamma=10", "train.balance.target=0.75",
                 "train.balance.rate=0.01"]
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        run = start_run(compose_train(overrides), CPU)
        step = CompiledStep(run.step, say=lambda line: None) if compiled else run.step
        stats = torch.stack([step(0.0, 0.0) for _ in range(30)])
        runs.append((stats, run.step.balance.noise.clone()))
    (eager, noise_e), (graph, noise_c) = runs
    torch.testing.assert_close(graph[:, :4], eager[:, :4], rtol=1e-3, atol=1e-4)
    assert noise_c == noise_e and noise_e > 0


# ---------------------------------------------------------------- balance
def test_balance_rescues_a_d_that_wins():
    plain, accuracy = train_steps(D_WINS, 200)
    balanced, balanced_accuracy = train_steps(
        [*D_WINS, "train.balance.target=0.75", "train.balance.rate=0.01"], 200)
    assert plain.step.balance.noise == 0 and mean(accuracy[-50:]) > 0.99
    assert balanced.step.balance.noise > 0.3
    assert mean(balanced_accuracy[-50:]) < 0.85  # held near its target
    # once D is below the target (here: a target it cannot reach), the noise comes back down
    before = balanced.step.balance.noise.item()
    balanced.step.balance.target = 0.999
    for _ in range(20):
        balanced.step(0.0, 0.0)
    assert balanced.step.balance.noise.item() == pytest.approx(before - 20 * 0.01, abs=1e-4)


def test_balance_moves_each_replica_by_its_own_accuracy_within_its_bounds():
    settings = StepSettings(batch_size=8, d_steps=1, g_steps=1, unroll_steps=0,
                            instance_noise=0.0, ema=None, image=False, balance_target=0.8,
                            balance_rate=0.1, balance_max=0.25)
    balance = Balance(settings, (3,), CPU)
    stats = torch.zeros(3, len(STATS))
    stats[:, ACCURACY] = torch.tensor([[1.0, 0.9], [0.5, 0.6], [0.8, 0.8]])  # above, below, at
    for expected in ([0.1, 0.0, 0.0], [0.2, 0.0, 0.0], [0.25, 0.0, 0.0]):  # capped at max
        balance.update(stats)
        torch.testing.assert_close(balance.noise, torch.tensor(expected))
    stats[0, ACCURACY] = 0.6
    balance.update(stats)
    torch.testing.assert_close(balance.noise, torch.tensor([0.15, 0.0, 0.0]))
    # the step's noise std is the schedule's plus the adaptive part
    torch.testing.assert_close(balance.sigma(0.5), torch.tensor([0.65, 0.5, 0.5]))


def test_balance_resumes_exactly_and_shows_in_metrics(tmp_path):
    base = ["experiment=smoke", "device=cpu", "train.replicas=2", "train.log_every=10",
            "train.eval_every=20", "train.ckpt_every=null", "eval.n_samples=500",
            "eval.plots=false", "optim/schedule=constant", "optim.discriminator.lr=1e-2",
            "train.balance.target=0.55", "train.balance.rate=0.01"]
    train(compose_train(base + ["train.steps=40"]), tmp_path / "whole")
    train(compose_train(base + ["train.steps=20"]), tmp_path / "part")
    assert load_checkpoint(tmp_path / "part")["balance_noise"].gt(0).all()
    train(compose_train(base + ["train.steps=40", f"resume={tmp_path / 'part'}"]),
          tmp_path / "ignored", overrides=["train.steps=40"])
    a, b = (load_checkpoint(tmp_path / d) for d in ("whole", "part"))
    for key in ("balance_noise", "generator", "discriminator", "opt_d", "rng_replicas"):
        assert_same_tensors(a[key], b[key], key)
    text = (tmp_path / "whole" / "metrics.csv").read_text()
    assert text == (tmp_path / "part" / "metrics.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    last = [float(r["balance_noise"]) for r in rows if r["step"] == "40"]
    assert last == pytest.approx(a["balance_noise"].tolist())


def test_an_older_checkpoint_resumes_with_the_noise_at_zero(tmp_path):
    base = ["experiment=smoke", "device=cpu", "train.ckpt_every=null", "eval.plots=false",
            "eval.n_samples=500", "train.balance.target=0.55"]
    train(compose_train(base + ["train.steps=10"]), tmp_path / "old")
    last = tmp_path / "old" / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    del state["balance_noise"]
    torch.save(state, last)
    run = start_run(compose_train(base + ["train.steps=20"]), CPU)
    run.step.balance.noise.fill_(0.3)
    run.state.load_state_dict(state, str(last), warn=print)
    assert run.step.balance.noise == 0


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("override, message", [
    ("loss.r1_gamma=-1", "loss.r1_gamma=-1.0: must be >= 0 and a finite float32 number"),
    ("train.balance.target=0.3", "train.balance.target=0.3: must be in (0.5, 1) or null"),
    ("train.balance.target=1.0", "train.balance.target=1.0: must be in (0.5, 1) or null"),
    ("train.balance.rate=0", "train.balance.rate=0.0: must be a positive number"),
    ("train.balance.max_noise=-1", "train.balance.max_noise=-1.0: must be a positive number"),
])
def test_bad_values_are_refused_naming_the_key(override, message):
    with pytest.raises(UserError) as e:
        validate_train_config(compose_train([override]))
    assert str(e.value).startswith(message)


def test_r1_with_batch_norm_in_d_is_refused():
    with pytest.raises(UserError, match=r"^model\.discriminator\.batch_norm=True: loss\.r1_gamma"):
        validate_train_config(compose_train(["experiment=mnist_dcgan", "loss.r1_gamma=1"]))
