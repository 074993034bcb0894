"""train.compile: the compiled step updates as eager does, resumes exactly, and refuses
(with one line) what it cannot compile. Compiling costs tens of seconds here, so the
compiled runs are few and shared between assertions."""

import json
import signal
import subprocess

import pytest
import torch
from torch import nn

from conftest import TINY, compose_train
from gan_cli.compiled import (AUTO_MIN_STEPS, CompiledStep, OptimizerUpdate, choose_step,
                              convolutional, refusal, wanted)
from gan_cli.config import validate_train_config
from gan_cli.errors import UserError
from gan_cli.train import start_run
from test_cli import run, script
from test_resume import SHORT, assert_same_tensors, wait_for

OPTIMIZERS = {  # (gan_cli's presets use the fused Adam and SGD kernels in eager steps)
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.5, 0.999), weight_decay=1e-3,
                                        fused=True),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, dampening=0.1,
                                               weight_decay=1e-3, fused=True),
    "adamw_amsgrad": lambda ps: torch.optim.AdamW(ps, lr=1e-2, amsgrad=True),
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.5, centered=True),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_compiled_optimizer_update_follows_the_eager_optimizer_for_100_steps(name):
    """The same gradients into torch.optim's step() and into the compiled functional
    kernel on the optimizer's own state: the weights and states agree, and the state_dicts
    have the same form (checkpoints load either way). The lr changes every step (a
    schedule), entering as a tensor: one graph, no recompiles."""
    torch.manual_seed(0)
    eager_net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    compiled_net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    compiled_net.load_state_dict(eager_net.state_dict())
    eager_opt, compiled_opt = (OPTIMIZERS[name](n.parameters()) for n in (eager_net, compiled_net))
    grads = [[torch.randn_like(p) for p in eager_net.parameters()] for _ in range(100)]
    names = dict(compiled_net.named_parameters())

    def eager_step(k: int, lr: float, opt, net) -> None:
        opt.param_groups[0]["lr"] = lr
        for p, g in zip(net.parameters(), grads[k]):
            p.grad = g.clone()
        opt.step()

    eager_step(0, 1e-2, eager_opt, eager_net)  # the first step creates the state, as in training
    eager_step(0, 1e-2, compiled_opt, compiled_net)
    update = OptimizerUpdate(compiled_opt, {p: n for n, p in names.items()})
    graph = torch.compile(lambda g, lr: update(g, [lr]), fullgraph=True, dynamic=False)
    torch._dynamo.utils.counters.clear()
    for k in range(1, 100):
        lr = 1e-2 * 0.97 ** k
        eager_step(k, lr, eager_opt, eager_net)
        compiled_opt.param_groups[0]["lr"] = lr  # as a schedule sets it; the graph reads it
        with torch.no_grad():
            graph(dict(zip(names, grads[k])), torch.tensor(compiled_opt.param_groups[0]["lr"]))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    for a, b in zip(eager_net.parameters(), compiled_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    eager_state, compiled_state = eager_opt.state_dict(), compiled_opt.state_dict()
    assert eager_state["param_groups"] == compiled_state["param_groups"]
    for a, b in zip(eager_state["state"].values(), compiled_state["state"].values()):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def refusal_of(*overrides: str):
    cfg = compose_train([*TINY, *overrides])
    return refusal(start_run(cfg, torch.device("cpu")).step, torch.device("cpu"))


@pytest.mark.parametrize("overrides, reason", [
    (["loss=wgan_gp"], "gradient penalty differentiates twice"),
    (["train.unroll_steps=2"], "look-ahead differentiates through D's updates"),
])
def test_what_cannot_compile_is_named(overrides, reason):
    assert reason in refusal_of(*overrides)


def test_an_optimizer_without_a_compiled_kernel_is_named():
    step = start_run(compose_train(TINY), torch.device("cpu")).step
    step.players.opt_g = torch.optim.Adagrad(step.players.generator.parameters())
    assert "optim.generator is Adagrad (compiled: Adam, AdamW, SGD, RMSprop)" in \
        refusal(step, torch.device("cpu"))


@pytest.mark.parametrize("overrides", [
    [], ["optim=sgd", "optim.discriminator.momentum=0.9"], ["optim=rmsprop"], ["loss=wgan"],
    ["loss=hinge", "loss=lsgan"], ["train.instance_noise=0.1", "train.ema=null"],
    ["model.discriminator.minibatch=stddev", "model.discriminator.pack=2"],
    ["train.replicas=3"],
])
def test_the_common_options_compile(overrides):
    assert refusal_of(*overrides) is None


@pytest.mark.slow
def test_compiled_replicas_follow_the_eager_replica_step():
    """train.replicas under train.compile: with the random inputs drawn the compiled way
    (all replicas' in one batched call from torch's global stream) in both, the compiled
    step's statistics (losses, D's outputs, per-replica gradient norms) follow the eager
    step's for 20 steps; and the replicas are distinct runs."""
    def twenty_steps(compiled: bool) -> torch.Tensor:
        torch.manual_seed(0)
        run = start_run(compose_train([*TINY, "train.replicas=3", "optim=adam"]),
                        torch.device("cpu"))
        run.step.axis.trace_draws()
        step = CompiledStep(run.step, lambda line: None) if compiled else run.step
        torch.manual_seed(1)
        return torch.stack([step(0.1, 0.5) for _ in range(20)])  # (20, 3, STATS)

    eager, compiled = twenty_steps(False), twenty_steps(True)
    assert compiled.shape == (20, 3, eager.shape[-1])
    # (other draws would differ by O(1); rounding, batched vs fused kernels, by < 1e-3)
    torch.testing.assert_close(compiled, eager, rtol=2e-3, atol=1e-4)
    assert not torch.allclose(compiled[-1, 0], compiled[-1, 1])  # each replica its own run


def test_a_refused_compile_trains_eagerly_with_one_line(run_tiny, capsys):
    summary, run_dir = run_tiny("train.compile=true", "loss=wgan_gp", "train.steps=4",
                                "train.log_every=2", "train.eval_every=null",
                                "train.ckpt_every=null")
    assert summary["status"] == "completed"
    lines = [line for line in (run_dir / "train.log").read_text().splitlines()
             if "train.compile" in line]
    assert lines == ["train.compile=true: the step runs eagerly (loss WassersteinGP: its "
                     "gradient penalty differentiates twice)"]


def test_auto_compiles_only_runs_long_enough_to_pay():
    assert not wanted("auto", 200) and not wanted("auto", AUTO_MIN_STEPS - 1)
    assert wanted("auto", AUTO_MIN_STEPS) and wanted(True, 1) and not wanted(False, 10**9)
    step = start_run(compose_train(TINY), torch.device("cpu")).step
    said = []
    assert choose_step(step, "auto", 60, torch.device("cpu"), said.append) is step
    assert said == []  # a short run under auto: eager, nothing to say


def test_auto_leaves_convolutional_networks_eager_on_the_cpu():
    long = AUTO_MIN_STEPS * 2
    dcgan_d = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(1))
    mlp = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    assert convolutional(mlp, dcgan_d) and not convolutional(mlp, mlp)
    assert not wanted("auto", long, convolutional=True, device_type="cpu")
    assert wanted("auto", long, convolutional=True, device_type="cuda")
    assert wanted("auto", long, convolutional=False, device_type="cpu")
    assert wanted(True, 1, convolutional=True, device_type="cpu")  # asked for: compiled


def test_a_bad_compile_value_is_refused():
    with pytest.raises(UserError, match="train.compile.*allowed: true, false, auto"):
        validate_train_config(compose_train([*TINY, "train.compile=sometimes"]))


# ---------------------------------------------------------------- whole compiled runs
COMPILED = [*SHORT, "train.compile=true", "optim=adam", "train.steps=300",
            "train.keep_checkpoints=null"]


def compiled_or_loaded(out: str) -> bool:
    """The console's line for a compiled step: compiled now, or an earlier run's loaded."""
    return "compiled the step in" in out or "loaded the compiled step (" in out


def start(cwd, folder, *overrides):
    return subprocess.Popen([script("gan-train"), *COMPILED, *overrides,
                             f"hydra.run.dir={folder}"], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_compiled_run_resumed_after_sigkill_is_bit_identical_and_follows_eager(tmp_path):
    """One uninterrupted compiled run, one SIGKILLed and resumed: bit-identical; and the
    uninterrupted one's first rows agree with an eager run's to float tolerance (the
    same random draws: the graph draws from torch's global generator as eager does)."""
    whole = start(tmp_path, "whole")  # first alone: it fills the compile cache
    out, err = whole.communicate(timeout=900)
    assert whole.returncode == 0, err
    assert "the step will be compiled as one graph" in out and compiled_or_loaded(out)
    killed = start(tmp_path, "killed")
    wait_for(tmp_path / "killed" / "checkpoints" / "step_0000100.pt", killed, timeout=600)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    proc = run(["gan-train", "resume=killed"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert compiled_or_loaded(proc.stdout)  # the resumed run compiles too (or loads the step)

    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True)
            for d in ("whole", "killed"))
    assert a["step"] == b["step"] == 300
    for key in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d", "schedulers",
                "rng", "health"):
        assert_same_tensors(a[key], b[key], key)
    assert (tmp_path / "whole" / "metrics.csv").read_text() == \
        (tmp_path / "killed" / "metrics.csv").read_text()

    eager = run(["gan-train", *COMPILED, "train.compile=false", "hydra.run.dir=eager"], tmp_path)
    assert eager.returncode == 0, eager.stderr
    e, c = (torch.load(tmp_path / d / "checkpoints" / "step_0000050.pt", weights_only=True)
            for d in ("eager", "whole"))
    for key in ("generator", "discriminator"):  # 50 steps: rounding not yet amplified
        for name in e[key]:
            torch.testing.assert_close(c[key][name], e[key][name], rtol=1e-3, atol=1e-3)
    assert c["opt_d"]["state"].keys() == e["opt_d"]["state"].keys()
    assert json.loads((tmp_path / "whole" / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_compiled_replicas_resume_bit_identically(tmp_path):
    """A compiled replica run resumed from its step-100 checkpoint (in a copy of its folder)
    ends bit-identical to the run itself: the one stream the graph draws all replicas'
    inputs from is the one the checkpoint saves."""
    import shutil

    whole = run(["gan-train", *COMPILED, "train.replicas=2", "hydra.run.dir=whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert compiled_or_loaded(whole.stdout)
    shutil.copytree(tmp_path / "whole", tmp_path / "copy")
    resumed = run(["gan-train", "resume=copy/checkpoints/step_0000100.pt"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True)
            for d in ("whole", "copy"))
    assert a["step"] == b["step"] == 300
    for key in ("generator", "discriminator", "opt_g", "opt_d", "rng"):
        assert_same_tensors(a[key], b[key], key)
    assert (tmp_path / "whole" / "metrics.csv").read_text() == \
        (tmp_path / "copy" / "metrics.csv").read_text()
