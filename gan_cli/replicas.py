"""Batched seed replicas (train.replicas=R): R independent GANs trained as one computation.

Replica k is the run `seed=seed+k`: its networks are built after seeding with
seed+k, and its data, noise and instance noise come from its own generator,
which starts where that single run's global generator would start its loop.
Its weights are slice k of stacked parameters (R, *shape); Adam, RMSprop and
SGD work element by element, so one optimizer step over the stack is R
independent steps. The two runs agree step by step until float rounding
(batched vs. unbatched kernels) is amplified by the training dynamics.

This module is the only one that knows replicas exist: the step, the loop and the
evaluation talk to a replica axis — SingleRun or ReplicaRuns, the same methods —
that draws the random inputs, applies per-replica objectives, reduces per replica
and shapes rows and summaries; data sources, models and the health monitor take
one generator (or none) and know nothing of replicas.
"""

from __future__ import annotations

import copy
import math
import statistics
from typing import Any, Callable, Collection, Optional, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

# layers that act on each number alone, so they apply to (R, B, F) as they are
ELEMENTWISE = (nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.Softplus, nn.ELU, nn.Dropout, nn.Identity)


class Replicas(nn.Module):
    """R copies of one network as one module: each parameter and buffer is stacked to
    (R, *shape), and forward maps (R, B, ...) to (R, B, ...).

    The network must be a chain of layers (nested nn.Sequential), like the MLP models.
    Linear layers run as one batched matrix product and element-wise layers as they
    are; any other layer (minibatch statistics, packing, shifts) through torch.func.vmap.
    """

    def __init__(self, copies: Sequence[nn.Module]):
        super().__init__()
        self.count = len(copies)
        self.net = copy.deepcopy(copies[0])
        for name, _ in copies[0].named_parameters():
            owner, _, leaf = name.rpartition(".")
            stacked = torch.stack([c.get_parameter(name).detach() for c in copies])
            setattr(self.net.get_submodule(owner), leaf, nn.Parameter(stacked))
        for name, _ in copies[0].named_buffers():
            owner, _, leaf = name.rpartition(".")
            self.net.get_submodule(owner).register_buffer(
                leaf, torch.stack([c.get_buffer(name) for c in copies]))
        self.layers = _chain(self.net)
        self.weights = list(self.net.parameters())  # listed once (see grad_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (R, B, ...) -> (R, B, ...)
        for layer in self.layers:
            if isinstance(layer, nn.Linear):  # (R, B, in) @ (R, in, out) + (R, 1, out)
                w = layer.weight.transpose(1, 2)
                x = torch.bmm(x, w) if layer.bias is None else \
                    torch.baddbmm(layer.bias.unsqueeze(1), x, w)
            elif isinstance(layer, ELEMENTWISE):
                x = layer(x)
            else:
                x = _per_replica(layer, x)
        return x

    def grad_norm(self) -> torch.Tensor:
        """(R,): each replica's L2 norm of all its gradients together."""
        squares = [p.grad.flatten(1).square().sum(1) for p in self.weights
                   if p.grad is not None]
        if not squares:
            return torch.zeros(self.count, device=next(self.parameters()).device)
        return torch.stack(squares).sum(0).sqrt()

    def finite(self) -> torch.Tensor:
        """(R,) bool: whether every weight of each replica is finite."""
        return torch.stack([torch.isfinite(p.flatten(1)).all(1) for p in self.parameters()]).all(0)


def replica_weights(state: dict, k: int) -> dict:
    """Replica k's weights from a Replicas state dict, as the single network's state dict."""
    return {name.removeprefix("net."): tensor[k] for name, tensor in state.items()}


def _chain(module: nn.Module) -> list[nn.Module]:
    """The layers of nested nn.Sequential containers, in order."""
    if not isinstance(module, nn.Sequential):
        return [module]
    return [layer for child in module for layer in _chain(child)]


def _per_replica(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a layer with stacked weights to (R, B, ...) one replica slice at a time, batched."""
    params, buffers = dict(layer.named_parameters()), dict(layer.named_buffers())

    def one(p: dict, b: dict, xk: torch.Tensor) -> torch.Tensor:
        return functional_call(layer, (p, b), (xk,))

    return vmap(one, randomness="different")(params, buffers, x)


def copy_of_global_generator(device: torch.device) -> torch.Generator:
    """A generator in the state torch's global one for `device` is in now."""
    g = torch.Generator(device=device)
    if device.type == "cuda":
        g.set_state(torch.cuda.get_rng_state(device))
    elif device.type == "mps":
        g.set_state(torch.mps.get_rng_state())
    else:
        g.set_state(torch.get_rng_state())
    return g


# ---------------------------------------------------------------- the replica axis
Draw = Callable[[Optional[torch.Generator]], Any]  # generator -> a tensor or a tuple of them


class SingleRun:
    """The loop's view of a single run: no replica axis. Its twin ReplicaRuns puts
    (R, ...) in front of every tensor; the step, the loop and the evaluation call the
    same methods on either, so only this module knows replicas exist."""

    count = 1
    leading: tuple[int, ...] = ()  # the dimensions in front of one run's tensors
    batch_dim = 0  # the dimension of a batch's samples in the loop's tensors
    row_keys: tuple[str, ...] = ()  # metrics.csv columns that name the replica

    def __init__(self, seed: int):
        self.seeds = [seed]
        self.generators: list[torch.Generator] = []  # none of its own: torch's global stream

    def draw(self, draw: Draw, generators: Optional[Sequence[torch.Generator]] = None) -> Any:
        """draw(generator): from generators[0], or torch's global stream by default."""
        return draw(generators[0] if generators else None)

    def trace_draws(self) -> None:
        """From now on, draw the step's random inputs in a way a compiled graph can trace
        (a single run draws from torch's global stream already)."""

    def norm_of(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        """The L2 norm of all of these gradients together, as grad_norm_of's (in a form
        inductor fuses: per-tensor norms, not _foreach_norm, which has no C++-wrapper kernel)."""
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))

    def per_replica(self, f: Callable) -> Callable:
        """f over one replica's tensors, applied to the loop's (one run: f itself)."""
        return f

    def unstack(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each replica's slice of x."""
        return [x]

    def pack(self, per_replica: list) -> Any:
        """A per-replica value as a checkpoint holds it: a single run's bare, as before
        replicas existed (unpack undoes it)."""
        return per_replica[0]

    def unpack(self, entry: Any) -> list:
        return entry if isinstance(entry, list) else [entry]

    def grad_norm_of(self, module: nn.Module) -> Callable[[], torch.Tensor]:
        """A function giving the L2 norm of all of module's gradients together, as a 0-d
        tensor on the device. The weights are listed once: walking the module tree every
        step costs more than a toy network's update."""
        params = list(module.parameters())

        def norm() -> torch.Tensor:
            grads = [p.grad for p in params if p.grad is not None]
            if not grads:
                return torch.zeros(())
            # one fused kernel for the per-tensor norms, then their norm: 3 ops, where
            # clip_grad_norm_'s get_total_norm spends ~30 small ones (a tenth of a toy step)
            return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

        return norm

    def check_finite(self, problems: list[Optional[str]], G: nn.Module, D: nn.Module,
                     step: int, diverged: dict[int, str]) -> list[str]:
        """The divergence check (a host sync): FloatingPointError on a non-finite loss,
        gradient or weight, so that a single run never saves anything non-finite."""
        if problems[0] is not None:
            raise FloatingPointError(problems[0])
        bad = first_non_finite_parameter(G, D)
        if bad is not None:
            raise FloatingPointError(f"parameter {bad} is not finite at step {step}")
        return []

    def label_rows(self, rows: list[dict]) -> list[dict]:
        return rows

    def describe(self) -> str:
        return f"seed {self.seeds[0]}"

    def eval_line(self, line: str, converged_at: list[Optional[int]]) -> str:
        return line

    def summary(self, final_metrics: list[dict], converged_at: list[Optional[int]],
                diverged: dict[int, str], keys: Sequence[str], status: str,
                objective_key: str) -> dict:
        """summary.json's entries beyond a single run's (none)."""
        return {}

    def table_title(self, step: int) -> str:
        return f"final metrics after {step} steps"

    def table_counts(self, summary: dict) -> dict:
        return {}


class ReplicaRuns(SingleRun):
    """train.replicas=R: R runs (seeds seed..seed+R-1) side by side, every tensor of the
    loop with a leading replica dimension; each draws its random inputs from its own
    generator, in the order the single run with its seed would."""

    batch_dim = 1
    row_keys = ("replica", "seed")

    def __init__(self, seeds: Sequence[int], generators: Sequence[torch.Generator]):
        self.seeds, self.generators = list(seeds), list(generators)
        self.count = len(self.seeds)
        self.leading = (self.count,)
        self.one_stream = False  # trace_draws(): the step draws from torch's global stream

    def draw(self, draw: Draw, generators: Optional[Sequence[torch.Generator]] = None) -> Any:
        """draw(generator) once from each replica's generator, stacked to (R, ...); after
        trace_draws(), the step's draws (no `generators`) come from torch's global stream."""
        if self.one_stream and generators is None:
            # one batched call for all replicas, each its own numbers (vmap's "different"
            # randomness): R draws in one kernel, and no torch.Generator, which a graph
            # cannot trace
            index = torch.arange(self.count)
            return vmap(lambda _: draw(None), randomness="different")(index)
        drawn = [draw(g) for g in (generators or self.generators)]
        if isinstance(drawn[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*drawn))
        return torch.stack(drawn)

    def per_replica(self, f: Callable) -> Callable:
        return vmap(f)  # the objectives map one replica's D outputs to a number

    def unstack(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(x)

    def trace_draws(self) -> None:
        """Compiled steps: the replicas' random inputs come from torch's global stream (the
        one a checkpoint saves), all replicas' in one call, rather than from each replica's
        own generator. Each replica still starts from seed+k's networks and draws its own
        numbers, but no longer the ones the single run seed+k would draw."""
        self.one_stream = True

    def norm_of(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        """(R,): each replica's L2 norm of all its gradients together (Replicas.grad_norm's)."""
        return torch.stack([g.flatten(1).square().sum(1) for g in grads]).sum(0).sqrt()

    def pack(self, per_replica: list) -> Any:
        return per_replica

    def grad_norm_of(self, module: nn.Module) -> Callable[[], torch.Tensor]:
        return module.grad_norm  # (R,): a Replicas module's

    def check_finite(self, problems: list[Optional[str]], G: nn.Module, D: nn.Module,
                     step: int, diverged: dict[int, str]) -> list[str]:
        """Replicas are independent: one that diverges is recorded (in `diverged`) and
        trains on harmlessly (its NaNs stay in its own slice); only when all have
        diverged does the run stop as diverged. Returns a line per newly diverged one."""
        lines = []
        weights_finite = (G.finite() & D.finite()).tolist()
        for k, (problem, finite) in enumerate(zip(problems, weights_finite)):
            if k not in diverged and (problem or not finite):
                diverged[k] = problem or f"a weight is not finite at step {step}"
                lines.append(f"replica {k} (seed {self.seeds[k]}) diverged: {diverged[k]}")
        if len(diverged) == self.count:
            raise FloatingPointError(f"every replica diverged (replica 0: {diverged[0]})")
        return lines

    def label_rows(self, rows: list[dict]) -> list[dict]:
        for k, row in enumerate(rows):
            row.update(replica=k, seed=self.seeds[k])
        return rows

    def describe(self) -> str:
        return f"seeds {self.seeds[0]}..{self.seeds[-1]} ({self.count} replicas)"

    def eval_line(self, line: str, converged_at: list[Optional[int]]) -> str:
        converged = sum(c is not None for c in converged_at)
        return line.replace(": ", ": median ", 1) + f"  | converged {converged}/{self.count}"

    def summary(self, final_metrics: list[dict], converged_at: list[Optional[int]],
                diverged: dict[int, str], keys: Sequence[str], status: str,
                objective_key: str) -> dict:
        return replica_summary(self.seeds, final_metrics, converged_at, diverged, keys, status,
                               objective_key)

    def table_title(self, step: int) -> str:
        return f"final metrics after {step} steps (median of {self.count} replicas)"

    def table_counts(self, summary: dict) -> dict:
        return {"replicas converged": f"{summary['converged']}/{self.count}",
                "replicas diverged": summary["diverged"]}


def first_non_finite_parameter(*modules: nn.Module) -> Optional[str]:
    """The name of the first parameter holding a NaN or infinity, or None (one host sync)."""
    named = [(name, p) for m in modules for name, p in m.named_parameters()]
    finite = torch.stack([torch.isfinite(p).all() for _, p in named]).tolist()
    return next((name for (name, _), ok in zip(named, finite) if not ok), None)


class RandomDraws:
    """Where the step's random inputs come from: the data, G's noise prior and instance
    noise, each drawn through the replica axis (a single run: torch's global stream;
    replicas: each its own generator, stacked to (R, n, ...))."""

    def __init__(self, data, noise: Callable[..., torch.Tensor], axis: SingleRun,
                 labelled: bool = False):
        self.data, self.prior, self.axis = data, noise, axis
        self.labelled = labelled  # a conditional GAN: real samples come with their labels

    def real(self, n: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(n, d) samples and their (n,) labels, or None without labels."""
        if not self.labelled:
            return self.axis.draw(lambda g: self.data.sample(n, generator=g)), None
        return self.axis.draw(lambda g: self.data.sample_labelled(n, generator=g))

    def labels(self, n: int) -> Optional[torch.Tensor]:
        """(n,) labels for G to draw, as often as the data has each; None without labels."""
        if not self.labelled:
            return None
        return self.axis.draw(lambda g: self.data.sample_labels(n, generator=g))

    def noise(self, n: int) -> torch.Tensor:  # (n, z)
        return self.axis.draw(lambda g: self.prior(n, generator=g))

    def normal_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise of x's shape (for instance noise)."""
        shape = x.shape[self.axis.batch_dim:]  # one replica's
        return self.axis.draw(lambda g: torch.randn(shape, device=x.device, generator=g))


def median_row(rows: list[dict], skip: Collection[int] = ()) -> dict:
    """One row standing for several: a single run's row as it is; for replicas, each
    number's median over the rows whose index is not in `skip` (diverged replicas)."""
    if len(rows) == 1:
        return rows[0]
    kept = [row for k, row in enumerate(rows) if k not in skip] or rows
    shown = {}
    for key, value in kept[0].items():
        if key in ("replica", "seed") or not isinstance(value, (int, float)):
            continue
        finite = [row[key] for row in kept if math.isfinite(row[key])]
        shown[key] = statistics.median(finite) if finite else math.nan
    return shown


def replica_summary(seeds: list[int], final_metrics: list[dict],
                    converged_at: list[Optional[int]], diverged: dict[int, str],
                    keys: Sequence[str], status: str, objective_key: str = "w1") -> dict:
    """summary.json's entries for replicas: each replica's result, and over the replicas
    that did not diverge the median of each metric and its interquartile range.

    converged_at_step is the (lower) median over all replicas, counting one that never
    converged as never: null when fewer than half converged. The objective (what a
    sweeper minimises) is the median `objective_key` (w1, or fd for images) over all
    replicas, a diverged one counting as infinite: a setting where most seeds diverge
    ranks last, not by its survivors.
    """
    per_replica = []
    for k, seed in enumerate(seeds):
        entry = {"replica": k, "seed": seed,
                 "status": "diverged" if k in diverged else status,
                 "metrics": {key: final_metrics[k][key] for key in keys
                             if key in final_metrics[k]},
                 "converged_at_step": converged_at[k],
                 # what a sweeper ranks this replica by: a diverged one is infinitely bad
                 "objective": None if k in diverged else final_metrics[k].get(objective_key)}
        if k in diverged:
            entry["error"] = diverged[k]
        per_replica.append(entry)
    healthy = [e["metrics"] for e in per_replica if e["status"] != "diverged"]
    median, iqr = {}, {}
    for key in keys:
        values = sorted(m[key] for m in healthy if isinstance(m.get(key), (int, float))
                        and math.isfinite(m[key]))  # (lists, e.g. class_w1: per replica only)
        if values:
            median[key] = statistics.median(values)
            q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 \
                else [values[0]] * 3
            iqr[key] = [q[0], q[2]]
    steps = sorted(math.inf if c is None else c for c in converged_at)
    lower_median = steps[(len(steps) - 1) // 2]
    scores = [math.inf if e["status"] == "diverged" else
              _or_nan(e["objective"]) for e in per_replica]
    objective = statistics.median(scores) if all(not math.isnan(s) for s in scores) else \
        math.nan
    return {
        "metrics": median,
        "objective": objective if math.isfinite(objective) else None,
        "metrics_iqr": iqr,  # [25th, 75th percentile] over the replicas that did not diverge
        "converged_at_step": None if lower_median == math.inf else lower_median,
        "replicas": len(seeds),
        "converged": sum(c is not None for c in converged_at),
        "diverged": len(diverged),
        "per_replica": per_replica,
    }


def _or_nan(x: Optional[float]) -> float:
    return math.nan if x is None else x
