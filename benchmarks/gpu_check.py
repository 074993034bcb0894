"""The prepared GPU check (issue 21): what a person with one NVIDIA GPU runs, in minutes.

    python benchmarks/gpu_check.py [--out gpu_check.md]     # on the GPU (device=cuda)
    python benchmarks/gpu_check.py --cpu [--out FILE]       # the same checks, tiny, on the CPU (CI)

Runs the real train() in this process and writes a markdown table (and prints it):
- host syncs per training step of the default run, WGAN-GP, 4 replicas, an unrolled GAN
  and the conditional DCGAN: the difference between a run of 2N and one of N steps (their
  start and end cancel), counted two ways: reads of a tensor's value by the host
  (aten._local_scalar_dense: .item(), float(t), if t: ...; on any device) and, on CUDA,
  every synchronising call torch.cuda.set_sync_debug_mode("warn") reports;
- training steps/s of seed 000's toy, the default run and the MNIST DCGAN, eager and,
  where this gan_cli's config has the key, compiled (train.compile) and bf16
  (train.precision); on the GPU also the CPU's steps/s for the two MLPs, which is what
  device=auto's rule (gan_cli/device.py) should agree with;
- resume exactness: N steps straight against N/2, then resume to N (weights bit-identical?);
- gan-sample device=cpu from the device's checkpoint (the installed command);
- deterministic=true: two runs (MLP and conditional DCGAN) and two trainings of the
  evaluation classifier give bit-identical weights, and no kernel refuses.
MNIST is a synthetic MNIST-shaped set in a temporary folder (no download). Exit code 1
if a correctness check (resume, gan-sample, deterministic) fails; syncs and speed are
findings to read, not failures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode

from mnist import cache_quick_classifier, synthetic_set

TOY = ["data=trimodal", "model=blog_onestop", "optim=gd_exp_decay", "train.batch_size=64"]
SYNC_RUNS = {"default": [], "wgan_gp": ["loss=wgan_gp"], "replicas": ["train.replicas=4"],
             "unrolled": ["train.unroll_steps=3"], "conditional DCGAN": ["experiment=mnist_cgan"]}
SPEED_RUNS = {"toy": TOY, "default": [], "MNIST DCGAN": ["experiment=mnist_dcgan"]}
VARIANTS = {"eager": (None, []), "compiled": ("train.compile", ["train.compile=true"]),
            "bf16": ("train.precision", ["train.precision=bf16"])}


@dataclass
class Sizes:
    """How much each check runs: a GPU's minutes, or the CPU mode's seconds."""

    sync_steps: int  # N: runs of N and 2N steps
    speed_steps: dict[str, int]
    resume_steps: int  # N: a run of N steps, resumed from its step N/2 checkpoint
    images: int  # synthetic MNIST training images
    shrink: dict[str, list[str]] = field(default_factory=dict)  # per model kind, CPU mode


GPU = Sizes(sync_steps=20, speed_steps={"toy": 3000, "default": 2000, "MNIST DCGAN": 300},
            resume_steps=200, images=10_000)
CPU = Sizes(sync_steps=1, speed_steps={"toy": 20, "default": 10, "MNIST DCGAN": 4},
            resume_steps=4, images=200, shrink={
                "mlp": ["train.batch_size=32", "model.generator.hidden=[16,16]",
                        "model.discriminator.hidden=[16,16]"],
                "dcgan": ["train.batch_size=16", "model.generator.width=8",
                          "model.discriminator.width=8"]})


# ---------------------------------------------------------------- running train()
class ScalarReads(TorchDispatchMode):
    """Counts host reads of a tensor's value (aten._local_scalar_dense) on any device."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


class Runner:
    """train() on composed configs, quietly, in numbered folders under `root`."""

    def __init__(self, root: Path, device: str, sizes: Sizes, data: Path):
        self.root, self.device, self.sizes, self.data = root, device, sizes, data

    def overrides(self, extra: list[str], steps: int) -> list[str]:
        images = any(o.startswith("experiment=mnist") for o in extra)
        shrink = self.sizes.shrink.get("dcgan" if images else "mlp", [])
        if "model=blog_onestop" in extra:  # the toy keeps its own networks
            shrink = [o for o in shrink if ".hidden=" not in o]
        data = [f"data.root={self.data}", "data.download=false"] if images else []
        quiet = [f"device={self.device}", f"train.steps={steps}", "train.eval_every=null",
                 "train.ckpt_every=null", "train.log_every=100000", "eval.n_samples=200",
                 "eval.plots=false", "print_config=false"]
        given = {o.split("=", 1)[0] for o in extra}  # extra's own values win
        return [*data, *shrink, *(o for o in quiet if o.split("=", 1)[0] not in given), *extra]

    def compose(self, overrides: list[str]):
        from hydra import compose, initialize_config_module

        with initialize_config_module("gan_cli.conf", version_base="1.3"):
            return compose("train", overrides=overrides)

    def train(self, extra: list[str], steps: int, resume: Optional[Path] = None
              ) -> tuple[dict, Path]:
        """One run of `extra` for `steps` steps in a new folder (or continue `resume`)."""
        from gan_cli.train import train

        if resume is not None:  # as `gan-train resume=... device=...` does
            command = [f"resume={resume}", f"device={self.device}"]
            cfg, folder = self.compose(command), resume
        else:
            command = []
            cfg = self.compose(self.overrides(extra, steps))
            folder = Path(tempfile.mkdtemp(dir=self.root, prefix="run_"))
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            summary = train(cfg, folder, overrides=command)
        print(f"gpu_check: {' '.join(command or extra) or 'default'}, {steps} steps: "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        if summary["status"] != "completed":
            raise RuntimeError(f"{extra}: {summary['status']} ({summary.get('error')})")
        return summary, folder


def weights(folder: Path) -> dict[str, torch.Tensor]:
    state = torch.load(folder / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    return {f"{net}.{k}": v for net in ("generator", "discriminator")
            for k, v in state[net].items()}


def max_difference(a: dict, b: dict) -> float:
    """0.0 when every tensor is bit-identical, else the largest absolute difference."""
    if all(torch.equal(a[k], b[k]) for k in a):
        return 0.0
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def has_key(dotted: str) -> bool:
    """Whether this gan_cli's config schema declares `dotted` (e.g. train.compile)."""
    from gan_cli.config import TrainConfig

    return OmegaConf.select(OmegaConf.structured(TrainConfig), dotted, default=KeyError) \
        is not KeyError


@contextlib.contextmanager
def deterministic_afterwards_off():
    """Until train() scopes deterministic=true itself (deterministic_mode), reset it."""
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)


# ---------------------------------------------------------------- the checks
Row = tuple[str, str, str, str]  # check, run, result, verdict


def check_syncs(run: Runner, cuda: bool) -> list[Row]:
    rows, n = [], run.sizes.sync_steps
    for name, extra in SYNC_RUNS.items():
        counts = []
        for steps in (n, 2 * n):
            reads = ScalarReads()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if cuda:
                    torch.cuda.set_sync_debug_mode("warn")
                try:
                    with reads:
                        run.train(extra, steps)
                finally:
                    if cuda:
                        torch.cuda.set_sync_debug_mode(0)
            syncs = sum("synchroniz" in str(w.message) for w in caught)
            counts.append((reads.count, syncs))
        per_step = [(b - a) / n for a, b in zip(*counts)]
        result = f"{per_step[0]:g} value reads" + (f", {per_step[1]:g} CUDA syncs" if cuda else "")
        if not any(per_step):
            verdict = "ok"
        elif cuda and per_step[1]:
            verdict = "FINDING: the step waits for the GPU"
        else:  # on the CPU a read is no sync, and some ops read only there (F.one_hot's checks)
            verdict = "host reads: a sync on the GPU if the tensor lives there"
        rows.append(("host syncs per step", name, result, verdict))
    return rows


def check_speed(run: Runner, cuda: bool) -> list[Row]:
    rows = []
    for name, extra in SPEED_RUNS.items():
        steps = run.sizes.speed_steps[name]
        for variant, (key, overrides) in VARIANTS.items():
            if key is not None and not has_key(key):
                rows.append(("steps/s", f"{name}, {variant}", f"skipped: no {key} in the config",
                             ""))
                continue
            summary, folder = run.train(extra + overrides, steps)
            rows.append(("steps/s", f"{name}, {variant}, {run.device}",
                         f"{summary['steps_per_sec']:.3g}", compile_note(folder)))
        if cuda and name != "MNIST DCGAN":  # what device=auto weighs: the CPU's side
            summary, _ = Runner(run.root, "cpu", run.sizes, run.data).train(extra, steps)
            rows.append(("steps/s", f"{name}, eager, cpu", f"{summary['steps_per_sec']:.3g}",
                         f"device=auto picks {auto_choice(run, extra)}"))
    return rows


def compile_note(folder: Path) -> str:
    """What a run's train.log says about compiling: how long, and on CUDA whether the
    step replays as a CUDA graph (empty for an eager run)."""
    log = folder / "train.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    return "; ".join(line.strip() for line in lines
                     if "compiled the step" in line or "CUDA graph" in line
                     or "runs eagerly" in line)


def auto_choice(run: Runner, extra: list[str]) -> str:
    from gan_cli.device import Workload, pick_device

    return str(pick_device("auto", Workload.of(run.compose(run.overrides(extra, 1)))))


def check_resume(run: Runner) -> tuple[list[Row], Path]:
    """A run of N steps against a copy of it resumed from its step N/2 checkpoint (as
    after a kill: the copy loses last.pt), to the same N steps."""
    n = run.sizes.resume_steps
    _, straight = run.train([f"train.ckpt_every={n // 2}", "train.keep_checkpoints=null"], n)
    copy = run.root / f"{straight.name}_resumed"
    shutil.copytree(straight, copy)
    (copy / "checkpoints" / "last.pt").unlink()
    run.train([], n, resume=copy)
    diff = max_difference(weights(straight), weights(copy))
    return [("resume", f"{n} steps vs stopped at {n // 2} and resumed, {run.device}",
             "bit-identical" if diff == 0 else f"max abs difference {diff:.3g}",
             "ok" if diff == 0 else "FAILED")], straight


def check_sample(folder: Path, out_dir: Path) -> list[Row]:
    out = out_dir / "samples.npy"
    command = [str(Path(sys.executable).with_name("gan-sample")), f"ckpt={folder}", "n=64",
               f"out={out}", "device=cpu"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return [("gan-sample device=cpu", str(folder.name), done.stderr.strip()[-200:],
                 "FAILED")]
    x = np.load(out)
    ok = x.shape[0] == 64 and bool(np.isfinite(x).all())
    return [("gan-sample device=cpu", "from the resume check's run", f"{x.shape} samples",
             "ok" if ok else "FAILED")]


def check_deterministic(run: Runner) -> list[Row]:
    rows = []
    for name, extra in (("default", []), ("conditional DCGAN", ["experiment=mnist_cgan"])):
        folders = []
        for _ in range(2):
            with deterministic_afterwards_off():
                folders.append(run.train(extra + ["deterministic=true"], run.sizes.resume_steps)[1])
        diff = max_difference(*(weights(f) for f in folders))
        rows.append(("deterministic=true", f"{name}, two runs, {run.device}",
                     "bit-identical" if diff == 0 else f"max abs difference {diff:.3g}",
                     "ok" if diff == 0 else "FAILED"))
    rows.append(classifier_determinism(run))
    return rows


def classifier_determinism(run: Runner) -> Row:
    """The evaluation classifier's training (convolutions, pooling, cross-entropy) twice."""
    from gan_cli import image_metrics
    from gan_cli.data.mnist import IDXImages
    from gan_cli.device import deterministic_mode

    device = torch.device(run.device)
    data = IDXImages(root=str(run.data), download=False, device=device)
    trained = []
    for _ in range(2):
        with deterministic_mode(True, device):
            net, _ = image_metrics.train_classifier(data, device, log=lambda line: None)
        trained.append({k: v.cpu() for k, v in net.state_dict().items()})
    diff = max_difference(*trained)
    return ("deterministic=true", f"classifier training, two runs, {run.device}",
            "bit-identical" if diff == 0 else f"max abs difference {diff:.3g}",
            "ok" if diff == 0 else "FAILED")


# ---------------------------------------------------------------- the report
def markdown(rows: list[Row], device: str, seconds: float) -> str:
    if device == "cuda":
        where = f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
    else:
        where = "CPU mode (tiny settings: checks that the script works, not GPU numbers)"
    lines = [f"# GPU check, {datetime.date.today()}", "",
             f"{where}; torch {torch.__version__}; {seconds:.0f} s", "",
             "| check | run | result | verdict |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="tiny settings on the CPU (CI)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"))
    args = parser.parse_args()
    from gan_cli.config import register_configs
    from gan_cli.device import prepare_deterministic_cuda

    register_configs()  # the schemas the YAML files extend
    prepare_deterministic_cuda(True)  # before CUDA starts: the deterministic check needs it
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU visible; run with --cpu for the CPU mode")
    device, sizes = ("cpu", CPU) if args.cpu else ("cuda", GPU)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gan_gpu_check_") as tmp:
        root = Path(tmp)
        data = root / "mnist"
        data.mkdir()
        synthetic_set(data, sizes.images, n_test=min(1000, sizes.images))
        cache_quick_classifier(data)  # a few steps: what is checked is not its accuracy
        run = Runner(root, device, sizes, data)
        cuda = device == "cuda"
        rows = check_syncs(run, cuda) + check_speed(run, cuda)
        resume_rows, folder = check_resume(run)
        rows += resume_rows + check_sample(folder, root) + check_deterministic(run)
    report = markdown(rows, device, time.perf_counter() - start)
    args.out.write_text(report)
    print(report)
    return 1 if any(row[3] == "FAILED" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
