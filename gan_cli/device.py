"""Where a run computes, and the process-wide torch switches that go with that device.

- pick_device / describe_device: `device=auto` by a documented rule (see Workload), a
  parallel sweep job's GPU by its job number, and the reason shown on the console;
- deterministic_mode / tf32_mode: backend flags set for one run and restored after it,
  so that a later job in the same process does not inherit them;
- device_rng_states / set_device_rng_states: every generator state a run draws from
  (CPU, CUDA, MPS, numpy, Python), saved in checkpoints for an exact resume;
- autocast_context / full_precision / grad_scaler: mixed precision for the step.
"""

from __future__ import annotations

import contextlib
import os
import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator, Optional

import numpy as np
import torch

from gan_cli.errors import UserError

Warn = Callable[[str], None]

# A step of the MLP GANs costs the CPU about 1.5 ms of per-kernel overhead (~250 small
# kernels) plus ~0.1 ms per million multiply-adds of their hidden layers (measured on a
# 2-core EPYC, one thread: 650 steps/s for 16-unit layers, 268 for the default 128-unit
# ones at batch 512, 64 for 3 x 256 units). A GPU step costs about its launch overhead
# alone, some 2 ms, so the GPU pays above ~5 M multiply-adds per CPU thread; 32 M
# (2^25) leaves room for a CPU of a few cores. benchmarks/gpu_check.py measures both
# sides on a GPU machine, which is how this number should be revised.
GPU_PAYS_FROM = 2**25  # hidden-layer multiply-adds per training step (batch x per sample)

# the values cuBLAS documents for reproducible results (":16:8" saves memory, is slower)
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")


# ---------------------------------------------------------------- device=auto
@dataclass(frozen=True)
class Workload:
    """What device=auto weighs: a convolutional model always goes to a GPU; an MLP GAN
    when its step has at least GPU_PAYS_FROM multiply-adds in the hidden layers of G and
    D (the layers to and from the data, small for the mixtures, are left out)."""

    convolutional: bool
    multiply_adds: int  # per training step: batch_size x one sample's pass through G and D

    @classmethod
    def of(cls, cfg: Any) -> "Workload":
        """From a composed train config (model.* and train.batch_size)."""
        nets = (cfg.model.generator, cfg.model.discriminator)
        if any("width" in net for net in nets):  # DCGAN: convolutions
            return cls(convolutional=True, multiply_adds=0)
        per_sample = sum(a * b for net in nets
                         for a, b in zip(net.hidden, list(net.hidden)[1:]))
        return cls(convolutional=False, multiply_adds=per_sample * cfg.train.batch_size)

    @property
    def gpu_pays(self) -> bool:
        return self.convolutional or self.multiply_adds >= GPU_PAYS_FROM

    def reason(self) -> str:
        if self.convolutional:
            return "a convolutional model"
        size = f"{self.multiply_adds / 1e6:.1f} M multiply-adds per step"
        if self.gpu_pays:
            return f"{size}, at least the {GPU_PAYS_FROM / 1e6:.0f} M from which a GPU pays"
        return (f"{size}, under the {GPU_PAYS_FROM / 1e6:.0f} M from which a GPU pays: "
                "small MLP steps are bound by kernel launches")


def _gpu_kind() -> Optional[str]:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return None


def _cuda_index(job_number: Optional[int]) -> int:
    """The GPU of a parallel sweep's job (round-robin by job number), else the current one."""
    if job_number is None:
        return torch.cuda.current_device()
    return job_number % torch.cuda.device_count()


def pick_device(name: str, workload: Optional[Workload] = None,
                job_number: Optional[int] = None) -> torch.device:
    """The device for `device=name`.

    auto: a GPU (CUDA, else Apple MPS) if there is one and the workload pays for it
    (no workload given, as in gan-sample: any GPU), else the CPU. An explicit device
    must exist. job_number (parallel_job_number()): auto and a bare `cuda` take GPU
    job_number mod the visible GPUs, so parallel sweep jobs do not pile onto GPU 0.
    """
    if name == "auto":
        kind = _gpu_kind()
        if kind is None or (workload is not None and not workload.gpu_pays):
            return torch.device("cpu")
        return torch.device("cuda", _cuda_index(job_number)) if kind == "cuda" else \
            torch.device("mps")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device={name}: no CUDA GPU is visible here; use device=auto or cpu")
        index = torch.device(name).index
        if index is None:
            return torch.device("cuda", _cuda_index(job_number))
        if index >= torch.cuda.device_count():
            raise UserError(f"device={name}: only {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device=mps: Apple MPS is not available here; use device=auto or cpu")
    return torch.device(name)


def describe_device(device: torch.device, requested: str, workload: Optional[Workload] = None,
                    job_number: Optional[int] = None) -> str:
    """The device and why it was chosen, for the console, e.g.
    'cuda:1 (NVIDIA A100, CUDA 12.4; picked by device=auto: a convolutional model;
    sweep job 5 on GPU 5 mod 4)'."""
    why = []
    if requested == "auto" and workload is not None:
        why.append(f"picked by device=auto: {workload.reason()}")
    elif requested == "auto":
        why.append("picked by device=auto")
    if device.type == "cuda" and job_number is not None and requested in ("auto", "cuda"):
        why.append(f"sweep job {job_number} on GPU {job_number} mod "
                   f"{torch.cuda.device_count()}")
    if device.type == "cuda":
        what = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
        return f"{device} ({'; '.join([what, *why])})"
    if device.type == "mps":
        return f"{device} ({'; '.join(['Apple GPU', *why])})"
    if requested == "cpu":
        return "cpu (asked for)"
    gpu = _gpu_kind()
    if gpu is None:
        return "cpu: no CUDA or MPS GPU found"
    return f"cpu ({'; '.join(why)}; device={gpu} to use the GPU anyway)"


def parallel_job_number() -> Optional[int]:
    """This job's number (hydra.job.num) when Hydra runs the sweep's jobs side by side on
    this machine (hydra/launcher=joblib); else None: a single run, the basic launcher's
    one job at a time, or SLURM, which gives each job its own GPUs."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    launcher = str((hydra_cfg.get("launcher") or {}).get("_target_", ""))
    if hydra_cfg.mode != RunMode.MULTIRUN or not launcher.endswith("JoblibLauncher"):
        return None
    return int(hydra_cfg.job.num)


# ---------------------------------------------------------------- backend switches
def prepare_deterministic_cuda(deterministic: bool) -> Optional[str]:
    """Set CUBLAS_WORKSPACE_CONFIG for a deterministic run, which cuBLAS reads when CUDA
    starts: without it PyTorch refuses the first matrix product on CUDA. Call it before
    anything touches CUDA (cli.py does, before train). Returns a warning when CUDA was
    already started in this process (an earlier sweep job) without the setting."""
    if not deterministic or "CUBLAS_WORKSPACE_CONFIG" in os.environ:
        return None  # a user's own value is kept (PyTorch says if it is not deterministic)
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC[0]
    if torch.cuda.is_initialized():
        return ("warning: deterministic=true: CUDA started in this process before "
                "CUBLAS_WORKSPACE_CONFIG was set; for bit-identical matrix products export "
                f"CUBLAS_WORKSPACE_CONFIG={CUBLAS_DETERMINISTIC[0]} before gan-train")
    return None


@contextmanager
def deterministic_mode(on: bool, device: torch.device, warn: Warn = print) -> Iterator[None]:
    """Deterministic kernels only (on) or cuDNN's autotuner (off) for the run inside,
    and torch's previous settings back afterwards (the flags are process-wide: without
    this, later in-process sweep jobs would inherit them)."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if on and device.type == "cuda":
        message = prepare_deterministic_cuda(True)
        if message:
            warn(message)
    _use_deterministic_algorithms(on)
    # benchmark: cuDNN times the convolution algorithms for each new shape and keeps the
    # fastest, which may differ from one process to the next: only when not deterministic
    torch.backends.cudnn.benchmark = not on
    torch.backends.cudnn.deterministic = on
    try:
        yield
    finally:
        _use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2:]


def _use_deterministic_algorithms(on: bool, warn_only: bool = False) -> None:
    """torch.use_deterministic_algorithms, called only when the setting changes: it also
    sets inductor's copy of the flag, and importing inductor (and dynamo) to do so cost
    every run, eager ones included, ~1.5 s of start-up even when nothing changed."""
    if (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled()) != (on, warn_only):
        torch.use_deterministic_algorithms(on, warn_only=warn_only)


@contextmanager
def tf32_mode(on: bool, device: torch.device) -> Iterator[None]:
    """TF32 tensor cores for CUDA matrix products and cuDNN convolutions (on) or full
    fp32 (off) for the run inside; the previous settings back afterwards. Other devices
    are left alone (only NVIDIA GPUs since Ampere have TF32)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---------------------------------------------------------------- random-number generators
def _run_cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def device_rng_states(device: torch.device) -> dict:
    """Every generator state the loop may draw from: torch's CPU one and the run device's
    (all visible CUDA GPUs, or MPS), numpy's and Python's. Plain tensors and numbers:
    checkpoints load with weights_only=True, which accepts no numpy objects."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = device.type == "cuda"
    return {
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if cuda else [],
        "cuda_device": _run_cuda_index(device) if cuda else None,  # the one the run draws on
        "torch_mps": torch.mps.get_rng_state() if device.type == "mps" else None,
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def set_device_rng_states(states: dict, device: torch.device, warn: Warn = print) -> None:
    """Put back what device_rng_states saved (also from checkpoints of older versions,
    which saved no MPS state and no run device index). Whatever cannot be put back is
    said through `warn`: the run then continues, but not bit-identically."""
    # generator states are CPU byte tensors, whatever map_location moved them to
    torch.set_rng_state(states["torch_cpu"].cpu())
    if device.type == "cuda":
        _set_cuda_states(states.get("torch_cuda") or [], states.get("cuda_device"), device, warn)
    if device.type == "mps":
        if states.get("torch_mps") is None:
            warn("warning: the checkpoint holds no MPS generator state (written by an older "
                 "gan_cli or on another device): the run continues, but not bit-identically")
        else:
            torch.mps.set_rng_state(states["torch_mps"].cpu())
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def _set_cuda_states(saved: list, saved_index: Optional[int], device: torch.device,
                     warn: Warn) -> None:
    if not saved:
        warn("warning: the checkpoint holds no CUDA generator state: the run continues, "
             "but not bit-identically")
        return
    count = torch.cuda.device_count()
    if len(saved) == count:
        torch.cuda.set_rng_state_all([s.cpu() for s in saved])
        return
    # another GPU count (other CUDA_VISIBLE_DEVICES, another machine): the run's own
    # device gets the state of the device the run drew on, which is all it draws from
    source = saved_index if saved_index is not None else 0  # older checkpoints: cuda:0
    here = _run_cuda_index(device)
    if source >= len(saved):
        warn(f"warning: the checkpoint's CUDA generator states do not include its run's "
             f"cuda:{source}: the run continues, but not bit-identically")
        return
    torch.cuda.set_rng_state(saved[source].cpu(), here)
    warn(f"warning: the checkpoint holds the generators of {len(saved)} CUDA device(s), "
         f"this machine shows {count}: {device} continues from the saved cuda:{source}'s "
         "state (the one the run drew from); the other GPUs' generators are not restored")


# ---------------------------------------------------------------- mixed precision
# train.precision (to be declared in config.py's TrainLoop when the step uses it): the
# dtype the networks' forward passes run in under torch.autocast; fp32 = no autocast
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """A UserError for an unknown precision, or fp16 where there is no GPU (CPU kernels
    for fp16 are slow and its scaler is built for GPUs: bf16 is the CPU's lever)."""
    if precision not in PRECISIONS:
        raise UserError(f"train.precision={precision}: allowed: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise UserError("train.precision=fp16: needs a GPU; on the CPU use bf16 (or fp32)")


def autocast_context(precision: str, device: torch.device) -> ContextManager:
    """Where the networks' forward passes run: torch.autocast to bf16 / fp16 (matrix
    products and convolutions in that dtype, reductions and losses autocast keeps in
    fp32), or nothing for fp32. The weights, and so the checkpoint, stay fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def full_precision(device: torch.device) -> ContextManager:
    """Inside an autocast region, back to fp32: for WGAN-GP's gradient penalty (its
    gradient norm overflows or goes NaN in fp16, StudioGAN #175) and the statistics."""
    return torch.autocast(device_type=device.type, enabled=False)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """One per player (D and G have their own losses). Enabled for fp16 only, whose small
    gradients underflow unscaled; disabled, scale() returns the loss as it is and
    step() is the optimizer's step, so the step code is the same for every precision."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
