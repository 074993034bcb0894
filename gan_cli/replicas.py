"""Batched seed replicas (train.replicas=R): R independent GANs trained as one computation.

Replica k is the run `seed=seed+k`: its networks are built after seeding with
seed+k, and its data, noise and instance noise come from its own generator,
which starts where that single run's global generator would start its loop.
Its weights are slice k of stacked parameters (R, *shape); Adam, RMSprop and
SGD work element by element, so one optimizer step over the stack is R
independent steps. The two runs agree step by step until float rounding
(batched vs. unbatched kernels) is amplified by the training dynamics.
"""

from __future__ import annotations

import copy
import math
import statistics
from typing import Callable, Collection, Optional, Sequence

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


def draw_each(draw: Callable[..., torch.Tensor], shape: tuple, device: torch.device,
              generator: Optional[torch.Generator] = None,
              generators: Optional[Sequence[torch.Generator]] = None) -> torch.Tensor:
    """draw(shape, device=, generator=) once; or, given `generators` (replicas), once
    from each, stacked to (R, *shape)."""
    if generators is None:
        return draw(shape, device=device, generator=generator)
    return torch.stack([draw(shape, device=device, generator=g) for g in generators])


class RandomDraws:
    """Where the loop's random inputs come from.

    A single run (generators=None) draws from torch's global generator. Replicas draw
    each from their own generator, stacked to (R, n, ...), in the order a single run
    would, so replica k sees exactly the numbers the run with seed seed+k sees.
    """

    def __init__(self, data, noise: Callable[..., torch.Tensor],
                 generators: Optional[list[torch.Generator]] = None, labelled: bool = False):
        self.data, self.prior, self.generators = data, noise, generators
        self.labelled = labelled  # a conditional GAN: real samples come with their labels

    def real(self, n: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(n, d) samples (or (R, n, d)) and their labels (n,), or None without labels."""
        if not self.labelled:
            return self.data.sample(n, generators=self.generators), None
        return self.data.sample_labelled(n, generators=self.generators)

    def labels(self, n: int) -> Optional[torch.Tensor]:
        """(n,) (or (R, n)) labels for G to draw, as often as the data has each; None
        without labels."""
        return self.data.sample_labels(n, generators=self.generators) if self.labelled else None

    def noise(self, n: int) -> torch.Tensor:  # (n, z) or (R, n, z)
        return self.prior(n, generators=self.generators)

    def normal_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise of x's shape (for instance noise)."""
        if self.generators is None:
            return torch.randn_like(x)
        return draw_each(torch.randn, x.shape[1:], x.device, generators=self.generators)


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
                 "converged_at_step": converged_at[k]}
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
              e["metrics"].get(objective_key, math.nan) for e in per_replica]
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
