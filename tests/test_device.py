"""gan_cli/device.py and the GPU-path fixes, on the CPU: CUDA and MPS are faked with
monkeypatch (no GPU here), so each test checks what the code asks of torch."""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_train
from gan_cli import device as dev
from gan_cli.device import (Workload, describe_device, device_rng_states, deterministic_mode,
                            parallel_job_number, pick_device, prepare_deterministic_cuda,
                            set_device_rng_states, tf32_mode)


@pytest.fixture
def fake_gpus(monkeypatch):
    """A machine with `n` visible CUDA GPUs (as far as torch.cuda's queries go)."""

    def install(n: int = 4, current: int = 0):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Fake GPU")

    return install


# ---------------------------------------------------------------- device=auto
def test_auto_keeps_the_launch_bound_mlps_on_the_cpu_and_sends_the_rest_to_the_gpu(fake_gpus):
    fake_gpus(1)
    cases = {(): "cpu",  # the default run: 2 x 128 x 128 x batch 512 = 16.8 M
             ("model=blog_onestop", "train.batch_size=64"): "cpu",  # seed 000's toy
             ("experiment=ring8_best",): "cuda:0",  # 3 x 256 layers
             ("experiment=mnist_mlp",): "cuda:0",
             ("experiment=mnist_dcgan",): "cuda:0"}  # convolutional
    for overrides, expected in cases.items():
        workload = Workload.of(compose_train(list(overrides)))
        assert str(pick_device("auto", workload)) == expected, overrides
    default = Workload.of(compose_train([]))
    assert default.multiply_adds == 2 * 128 * 128 * 512
    assert describe_device(torch.device("cpu"), "auto", default) == (
        "cpu (picked by device=auto: 16.8 M multiply-adds per step, under the 34 M from which "
        "a GPU pays: small MLP steps are bound by kernel launches; device=cuda to use the GPU "
        "anyway)")
    dcgan = Workload.of(compose_train(["experiment=mnist_dcgan"]))
    assert describe_device(pick_device("auto", dcgan), "auto", dcgan).startswith(
        "cuda:0 (Fake GPU, CUDA ")
    assert describe_device(pick_device("auto", dcgan), "auto", dcgan).endswith(
        "; picked by device=auto: a convolutional model)")
    # no workload (gan-sample): any GPU, as before; an explicit device is obeyed
    assert str(pick_device("auto")) == "cuda:0"
    assert str(pick_device("cuda", default)) == "cuda:0"


def test_auto_without_a_gpu_and_explicit_devices_that_do_not_exist(fake_gpus):
    fake_gpus(0)
    dcgan = Workload.of(compose_train(["experiment=mnist_dcgan"]))
    assert pick_device("auto", dcgan).type == "cpu"
    assert describe_device(torch.device("cpu"), "auto", dcgan) == "cpu: no CUDA or MPS GPU found"
    assert describe_device(torch.device("cpu"), "cpu") == "cpu (asked for)"
    with pytest.raises(dev.UserError, match="device=cuda:1: no CUDA GPU is visible"):
        pick_device("cuda:1")
    fake_gpus(2)
    with pytest.raises(dev.UserError, match=r"device=cuda:2: only 2 CUDA device\(s\)"):
        pick_device("cuda:2")


def test_parallel_sweep_jobs_take_the_gpus_round_robin(fake_gpus):
    fake_gpus(4, current=0)
    dcgan = Workload.of(compose_train(["experiment=mnist_dcgan"]))
    assert [pick_device("auto", dcgan, job_number=j).index for j in range(6)] == [0, 1, 2, 3, 0, 1]
    assert [pick_device("cuda", job_number=j).index for j in range(6)] == [0, 1, 2, 3, 0, 1]
    assert pick_device("cuda:2", job_number=5).index == 2  # an explicit GPU stays
    assert pick_device("auto", Workload.of(compose_train([])), job_number=5).type == "cpu"
    assert describe_device(torch.device("cuda", 1), "auto", dcgan, job_number=5).endswith(
        "; picked by device=auto: a convolutional model; sweep job 5 on GPU 5 mod 4)")


def _hydra_job(launcher: str, mode, num: int):
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"],
                      return_hydra_config=True)
    cfg.hydra.mode, cfg.hydra.job.num = mode, num
    HydraConfig.instance().set_config(cfg)


def test_the_job_number_counts_only_for_jobs_that_run_side_by_side():
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    saved = HydraConfig.instance().cfg
    try:
        HydraConfig.instance().cfg = None
        assert parallel_job_number() is None  # outside Hydra
        _hydra_job("joblib", RunMode.MULTIRUN, 5)
        assert parallel_job_number() == 5
        _hydra_job("basic", RunMode.MULTIRUN, 5)  # one job after another: GPU 0 is free
        assert parallel_job_number() is None
        _hydra_job("joblib", RunMode.RUN, 0)
        assert parallel_job_number() is None
    finally:
        HydraConfig.instance().cfg = saved


# ---------------------------------------------------------------- backend switches
def test_deterministic_mode_is_scoped_to_its_run(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic)
    assert before == (False, False, False)
    with deterministic_mode(True, torch.device("cuda", 0), warn=pytest.fail):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic) == before
    with deterministic_mode(False, torch.device("cpu")):
        assert torch.backends.cudnn.benchmark  # the autotuner, unless deterministic
        assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark
    with pytest.raises(RuntimeError, match="boom"):  # restored on an error too
        with deterministic_mode(True, torch.device("cpu")):
            raise RuntimeError("boom")
    assert not torch.are_deterministic_algorithms_enabled()


def test_the_cublas_setting_comes_before_cuda_starts_and_a_late_one_is_said(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert prepare_deterministic_cuda(False) is None
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    assert prepare_deterministic_cuda(True) is None
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"  # the user's own value stays
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # an earlier sweep job
    warned = []
    with deterministic_mode(True, torch.device("cuda"), warn=warned.append):
        pass
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert warned == ["warning: deterministic=true: CUDA started in this process before "
                      "CUBLAS_WORKSPACE_CONFIG was set; for bit-identical matrix products "
                      "export CUBLAS_WORKSPACE_CONFIG=:4096:8 before gan-train"]


def test_gan_train_sets_the_cublas_workspace_before_train_starts(monkeypatch, tmp_path):
    import gan_cli.train
    from gan_cli import cli

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = []

    def fake_train(cfg, run_dir, overrides=()):
        seen.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        return {"status": "completed", "objective": 0.0}

    monkeypatch.setattr(gan_cli.train, "train", fake_train)
    for flag, expected in (("false", None), ("true", ":4096:8")):
        monkeypatch.setattr(sys, "argv", ["gan-train", f"deterministic={flag}",
                                          f"hydra.run.dir={tmp_path / flag}"])
        with pytest.raises(SystemExit) as done:
            cli.train_main()
        assert done.value.code == 0
        assert seen[-1] == expected


def test_tf32_is_switched_for_cuda_runs_only_and_restored():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = matmul.allow_tf32, cudnn.allow_tf32
    assert before == (False, True)  # PyTorch's defaults
    with tf32_mode(True, torch.device("cuda", 0)):
        assert (matmul.allow_tf32, cudnn.allow_tf32) == (True, True)
    with tf32_mode(False, torch.device("cuda", 0)):
        assert (matmul.allow_tf32, cudnn.allow_tf32) == (False, False)
    with tf32_mode(True, torch.device("cpu")):
        assert (matmul.allow_tf32, cudnn.allow_tf32) == before
    assert (matmul.allow_tf32, cudnn.allow_tf32) == before
    assert compose_train([]).tf32 is False  # a documented key, off by default


# ---------------------------------------------------------------- generator states
def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(2).tolist(), random.random()


def test_cpu_states_round_trip_also_from_checkpoints_of_older_versions():
    def older_format() -> dict:  # what checkpoint.rng_states saved (no MPS, no CUDA index)
        states = device_rng_states(torch.device("cpu"))
        del states["cuda_device"], states["torch_mps"]
        return states

    for save in (lambda: device_rng_states(torch.device("cpu")), older_format):
        states = save()
        first = _draws()
        set_device_rng_states(states, torch.device("cpu"), warn=pytest.fail)
        assert _draws() == first


def test_the_mps_generator_is_saved_and_restored(monkeypatch):
    mps_state = {"now": torch.tensor([1, 2, 3], dtype=torch.uint8)}
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda device="mps": mps_state["now"])
    monkeypatch.setattr(torch.mps, "set_rng_state",
                        lambda state, device="mps": mps_state.update(now=state))
    mps = torch.device("mps")
    states = device_rng_states(mps)
    assert torch.equal(states["torch_mps"], torch.tensor([1, 2, 3], dtype=torch.uint8))
    mps_state["now"] = torch.tensor([9], dtype=torch.uint8)  # the run drew on
    set_device_rng_states(states, mps, warn=pytest.fail)
    assert torch.equal(mps_state["now"], torch.tensor([1, 2, 3], dtype=torch.uint8))
    warned = []
    set_device_rng_states({**states, "torch_mps": None}, mps, warn=warned.append)
    assert warned == ["warning: the checkpoint holds no MPS generator state (written by an "
                      "older gan_cli or on another device): the run continues, but not "
                      "bit-identically"]


def test_cuda_states_with_another_gpu_count_restore_the_runs_own_device_and_say_so(
        monkeypatch, fake_gpus):
    saved = [torch.tensor([k], dtype=torch.uint8) for k in range(2)]
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: calls.append(("all", s)))
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda s, device="cuda": calls.append((device, s)))
    fake_gpus(2)
    states = device_rng_states(torch.device("cuda", 1))  # a run on GPU 1 of 2
    assert states["cuda_device"] == 1 and states["torch_cuda"] == saved
    set_device_rng_states(states, torch.device("cuda", 1), warn=pytest.fail)
    assert calls.pop() == ("all", saved)  # the same GPUs: every one restored
    fake_gpus(3)
    warned = []
    set_device_rng_states(states, torch.device("cuda", 0), warn=warned.append)
    assert calls.pop() == (0, saved[1])  # the run continues on cuda:0 from cuda:1's state
    assert warned == ["warning: the checkpoint holds the generators of 2 CUDA device(s), this "
                      "machine shows 3: cuda:0 continues from the saved cuda:1's state (the "
                      "one the run drew from); the other GPUs' generators are not restored"]
    warned.clear()
    set_device_rng_states({**states, "torch_cuda": []}, torch.device("cuda", 0),
                          warn=warned.append)
    assert warned == ["warning: the checkpoint holds no CUDA generator state: the run "
                      "continues, but not bit-identically"]


# ---------------------------------------------------------------- deterministic sampling ops
@pytest.fixture
def no_nondeterministic_ops(monkeypatch):
    """torch.multinomial and float cumsum raise, as CUDA's do under deterministic=true."""

    def refuse(*args, **kwargs):
        raise RuntimeError("does not have a deterministic implementation")

    monkeypatch.setattr(torch, "multinomial", refuse)
    monkeypatch.setattr(torch, "cumsum", refuse)
    monkeypatch.setattr(torch.Tensor, "cumsum", refuse)


def test_mixture_labels_on_a_gpu_need_neither_multinomial_nor_cumsum(monkeypatch, request):
    from gan_cli.data import gaussian

    mix = gaussian.GaussianMixture([0.0, 1.0, 2.0, 3.0], 0.1, weights=[0.2, 0.0, 0.5, 0.3])
    edge = gaussian.GaussianMixture([0.0, 1.0], 0.1, weights=[1.0, 0.0])
    monkeypatch.setattr(gaussian, "draws_by_multinomial", lambda device: False)  # as on CUDA
    request.getfixturevalue("no_nondeterministic_ops")
    k = mix.sample_labels(200_000, torch.Generator().manual_seed(0))
    share = torch.bincount(k, minlength=4).double() / k.numel()
    assert share[1] == 0  # a zero-weight mode is never drawn
    assert torch.allclose(share, torch.tensor([0.2, 0.0, 0.5, 0.3], dtype=torch.double),
                          atol=0.005)
    assert (edge.sample_labels(10_000) == 0).all()  # nothing falls past the last bucket
    x, labels = mix.sample_labelled(1000, exact_weights=True)  # evaluation's balanced draw
    assert torch.bincount(labels, minlength=4).tolist() == [200, 0, 500, 300]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(mix.sample(64, g1), mix.sample(64, g2))


def test_mixture_draws_on_the_cpu_are_the_ones_runs_have_always_made():
    from gan_cli.data.gaussian import GaussianMixture

    w = [0.2, 0.0, 0.5, 0.3]
    mix = GaussianMixture([0.0, 1.0, 2.0, 3.0], [0.1, 0.2, 0.3, 0.4], weights=w)
    weights = torch.tensor(w) / torch.tensor(w).sum()
    for n in (1, 7, 512):
        g1, g2 = torch.Generator().manual_seed(n), torch.Generator().manual_seed(n)
        x, k = mix.sample_labelled(n, g1)
        expected_k = torch.multinomial(weights, n, replacement=True, generator=g2)
        expected_x = mix.means[expected_k] + mix.stds[expected_k] * torch.randn(n, 1, generator=g2)
        assert torch.equal(k, expected_k) and torch.equal(x, expected_x)
        u = (torch.arange(n) + 0.5) / n
        assert torch.equal(mix.balanced_labels(n),
                           torch.searchsorted(weights.cumsum(0), u).clamp(max=3))


def test_the_classifier_trains_on_a_gpu_without_adaptive_pooling_s_atomic_backward(monkeypatch):
    from gan_cli import image_metrics
    from gan_cli.image_metrics import AdaptiveAvgPool, DigitClassifier

    def backward_nodes(out: torch.Tensor) -> set[str]:
        seen, todo = {}, [out.grad_fn]
        while todo:
            node = todo.pop()
            if node is not None and node not in seen:
                seen[node] = node.name()
                todo.extend(next_fn for next_fn, _ in node.next_functions)
        return set(seen.values())

    torch.manual_seed(0)
    x = torch.randn(5, 1, 28, 28)
    net = DigitClassifier(1, 10)
    assert "AdaptiveAvgPool2DBackward0" in backward_nodes(net(x).sum())  # CPU: PyTorch's own
    # a cached classifier's weights still load: the same names as with nn.AdaptiveAvgPool2d
    assert [k for k in net.state_dict()] == ["body.0.weight", "body.0.bias", "body.3.weight",
                                             "body.3.bias", "body.8.weight", "body.8.bias",
                                             "head.weight", "head.bias"]
    native = {}
    for hw in ((7, 7), (5, 9), (4, 4), (28, 28)):
        t = torch.randn(3, 2, *hw, requires_grad=True)
        grad_out = torch.randn(3, 2, 4, 4)
        torch.nn.functional.adaptive_avg_pool2d(t, 4).backward(grad_out)
        native[hw] = (t, grad_out, t.grad.clone())
    monkeypatch.setattr(image_metrics, "native_pool_backward", lambda device: False)  # as on CUDA
    assert "AdaptiveAvgPool2DBackward0" not in backward_nodes(net(x).sum())
    for hw, (t, grad_out, expected) in native.items():
        t.grad = None
        y = AdaptiveAvgPool(4)(t)
        assert torch.equal(y, torch.nn.functional.adaptive_avg_pool2d(t, 4))  # the same forward
        y.backward(grad_out)
        assert torch.allclose(t.grad, expected, atol=1e-6), hw


# ---------------------------------------------------------------- mixed precision helpers
def test_autocast_runs_the_networks_in_bf16_and_keeps_weights_and_penalties_fp32():
    from gan_cli.device import autocast_context, full_precision

    cpu = torch.device("cpu")
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LeakyReLU(), torch.nn.Linear(8, 1))
    x = torch.randn(16, 4, requires_grad=True)
    with autocast_context("bf16", cpu):
        out = net(x)
        with full_precision(cpu):  # e.g. WGAN-GP's gradient norm
            (grad,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    assert out.dtype == torch.bfloat16 and grad.dtype == torch.float32
    out.float().mean().backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in net.parameters())  # the checkpoint keeps fp32 weights
    with autocast_context("fp32", cpu):
        assert net(x).dtype == torch.float32


def test_precision_names_and_the_fp16_scaler(monkeypatch):
    from gan_cli.device import check_precision, grad_scaler

    check_precision("bf16", torch.device("cpu"))
    with pytest.raises(dev.UserError, match="train.precision=fp8: allowed: fp32, bf16, fp16"):
        check_precision("fp8", torch.device("cpu"))
    with pytest.raises(dev.UserError, match="train.precision=fp16: needs a GPU"):
        check_precision("fp16", torch.device("cpu"))
    loss = torch.tensor(2.0, requires_grad=True)
    scaler = grad_scaler("bf16", torch.device("cpu"))
    assert not scaler.is_enabled() and scaler.scale(loss) is loss  # one step code for all
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert grad_scaler("fp16", torch.device("cuda", 0)).is_enabled()
    assert not grad_scaler("bf16", torch.device("cuda", 0)).is_enabled()
