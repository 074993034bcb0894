"""The compiled CPU step kept whole on disk, so that a later run skips tracing it.

torch.compile's own caches keep inductor's kernels, but every new process still traces
the step with dynamo (2-4 s for the toy) and probes the CPU's vector instructions by
spawning a dozen Python processes (2 s). torch.compile(...).aot_compile instead traces
once and returns the finished function with its guards, which saves to a file: a later
run with the same networks and options loads it (1.5 s for the toy), checks its guards
against its own step once (any difference in shapes, dtypes or constants: compiled
afresh), and then calls it directly, without dynamo's per-call frame handling (a third
of a compiled toy step's time in a whole run: benchmarks/README.md).

Files: <inductor's cache dir>/gan_cli/step-<key>.bin, the key a hash of the config that
shapes the graph, the code of gan_cli and torch, and the CPU's vector capability (a cache
dir shared between machines must not hand AVX-512 code to one without it). A file that
fails to load or to match is compiled again and replaced, with a console line saying so.
aot_compile is experimental in torch; without it (no torch.compiler.load_compiled_function),
or when it fails, the step is compiled by dynamo at its first call, as on CUDA.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import hashlib
import json
import platform
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

import gan_cli
from gan_cli.errors import first_line
from gan_cli.files import atomic_write

# train keys that change the run's length or bookkeeping, never its step's graph: a seed
# sweep or a longer run reuses the same file
NOT_IN_GRAPH = ("steps", "log_every", "eval_every", "ckpt_every", "keep_checkpoints", "compile",
                "d_pretrain_steps")


def path(cfg: DictConfig, device: torch.device, cache_dir: str) -> Path:
    """Where this run's compiled step is kept."""
    return Path(cache_dir) / "gan_cli" / f"step-{graph_key(cfg, device)}.bin"


def graph_key(cfg: DictConfig, device: torch.device) -> str:
    """A hash of everything the compiled step's graph depends on (see the module doc; the
    inductor options are in compiled.py's code)."""
    train = {k: v for k, v in OmegaConf.to_container(cfg.train, resolve=True).items()
             if k not in NOT_IN_GRAPH}
    shaping = {name: OmegaConf.to_container(cfg[name], resolve=True)
               for name in ("data", "model", "loss", "optim")}
    shaping["optim"].pop("schedule", None)  # host-side: the lrs enter the graph as values
    parts = json.dumps([shaping, train, str(device.type), platform.machine(),
                        torch.backends.cpu.get_cpu_capability(), torch.__version__,
                        _source_hash()], sort_keys=True, default=str)
    return hashlib.sha256(parts.encode()).hexdigest()[:24]


def _source_hash() -> str:
    """gan_cli's code: a changed step, loss or network must not load an old graph."""
    digest = hashlib.sha256()
    for path in sorted(Path(gan_cli.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def available() -> bool:
    return hasattr(torch.compiler, "load_compiled_function")


def savable_guards(entries: Sequence[Any]) -> list[bool]:
    """torch.compile's guard_filter_fn for a step saved to disk: its guards without the
    ones that name one process's objects (ids, dict versions: another process's never
    match) or globals (module functions and constants: the key holds gan_cli's code).
    Replicas need it: vmap's pytree code puts a guard on the version of torch's registry of
    pytree types, which torch's own filter lets through and then cannot save."""
    from torch._dynamo.guards import CheckFunctionManager

    process_local = set(CheckFunctionManager.UNSUPPORTED_SERIALIZATION_GUARD_TYPES)
    return [not (e.is_global or e.guard_type in process_local
                 or process_local.intersection(e.derived_guard_types)) for e in entries]


def load_or_compile(method: Any, owner: Any, args: tuple, path: Path,
                    say: Callable[[str], None]) -> tuple[Optional[Callable], bool]:
    """A torch.compile'd method of owner as a function of args (its first call's, under
    no_grad): loaded from path when a file there matches it, else compiled and saved there.
    Returns it (None when torch cannot compile it ahead of time: the caller lets dynamo
    compile it at its first call) and whether it was loaded."""
    if path.exists():
        fn, problem = _load(path, (owner, *args))
        if fn is not None:
            return functools.partial(fn, owner), True
        say(f"the saved compiled step {path} {problem}: compiling it again")
    try:
        with _generators_saved_as_none():
            fn = method.aot_compile((args, {}))
    except Exception as e:  # e.g. guards torch cannot save: dynamo's own path compiles it
        say(f"the step is compiled in this run only (not ahead of time: {type(e).__name__}: "
            f"{first_line(e)})")
        return None, False
    try:
        atomic_write(path, lambda tmp: fn.save_compiled_function(str(tmp)))
    except Exception as e:  # a full disk or an unsavable graph: this run trains anyway
        say(f"the compiled step could not be saved for later runs ({type(e).__name__}: "
            f"{first_line(e)})")
    fn.disable_guard_check()
    return functools.partial(fn, owner), False


def _load(path: Path, args: tuple) -> tuple[Optional[Callable], str]:
    from torch._guards import TracingContext, tracing
    from torch._inductor import config

    try:
        # tracing(): torch 2.13 reinstalls some guards while unpickling them, which needs a
        # tracing context. vec_isa_ok: the key holds this CPU's vector capability, and the
        # file was compiled with it, so inductor's probe of the compiler (a dozen Python
        # subprocesses) would only confirm what an earlier run found
        with path.open("rb") as f, tracing(TracingContext(None)), \
                config.patch({"cpp.vec_isa_ok": True}):
            fn = torch.compiler.load_compiled_function(f)
        if not fn.guard_check(*args):
            return None, "does not match this run's step"
    except Exception as e:  # a torch upgrade, a truncated file: compile again
        return None, f"could not be loaded ({type(e).__name__}: {first_line(e)})"
    fn.disable_guard_check()
    return fn, ""


@contextlib.contextmanager
def _generators_saved_as_none() -> Iterator[None]:
    """torch saves the objects the step's guards start from (the step and what it holds)
    without their tensors, but with any torch.Generator whole (replicas' per-replica
    streams), and then fails to load one back. The compiled step never uses them (it draws
    from torch's global stream), and no guard looks at them: saved as None instead."""
    generator = torch._C.Generator
    before = copyreg.dispatch_table.get(generator)
    copyreg.pickle(generator, lambda g: (type(None), ()))
    try:
        yield
    finally:
        if before is None:
            copyreg.dispatch_table.pop(generator, None)
        else:
            copyreg.dispatch_table[generator] = before
