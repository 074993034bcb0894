"""Discriminator pre-training (train.d_pretrain_steps): D fitted to the true density first.

As in the AYLIEN/gan-intro code of January 2017 (commit 93bb948), which the blog of
seed 000 extends: before the game, D's output (sigmoid of its logit for the
cross-entropy losses: `loss.output`) is fitted by mean squared error to the data's
density at uniform points, "to make sure that the discriminator is providing useful
gradient information to the generator from the start"; the game then starts from
those weights. aylien fits a copy (D_pre) and copies its weights into D; fitting D
itself with an optimizer of its own is the same thing, and leaves the game's
optimizer untouched (its state starts fresh).

Only data with a known density can be fitted: Gaussian mixtures (data/gaussian.py).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig

from gan_cli.errors import UserError

# the uniform points' box, per dimension: [-M, M] with M the farthest mode's |mean| plus
# this many of its stds. Symmetric about 0 like aylien's [-5, 5] for N(4, 0.5) (which
# this widens to [-6, 6] to hold the whole mode): G's first samples lie near 0 (weights
# centred on 0, model.center=false), and D must give them a gradient towards the data
BOX_STDS = 4.0
SEED_OFFSET = 2_000_003  # the points' generators: apart from training's and evaluation's


def check_pretraining(cfg: DictConfig, data: Any) -> None:
    """Refuse, naming the key, train.d_pretrain_steps > 0 where it has no meaning."""
    steps = cfg.train.get("d_pretrain_steps", 0)
    if not steps:
        return
    if not callable(getattr(data, "density", None)):
        raise UserError(f"train.d_pretrain_steps={steps}: pre-training fits D to the data's "
                        f"true density, which only Gaussian mixtures have (data={data.describe()}"
                        "); use 0 here")
    if cfg.model.get("conditional", False) or cfg.model.discriminator.get("pack", 1) != 1:
        raise UserError(f"train.d_pretrain_steps={steps}: D must judge one sample without a "
                        "label to be fitted to the density: use model.conditional=false and "
                        "model.discriminator.pack=1, or 0 here")


def pretraining_box(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(d,) low and high corners of the box the points are drawn from (see BOX_STDS)."""
    reach = (data.means.abs() + BOX_STDS * data.stds).amax(0)  # (d,)
    return -reach, reach


def pretrain_discriminator(D: torch.nn.Module, loss: Any, data: Any, axis: Any,
                           make_optimizer: Callable[[Any], torch.optim.Optimizer],
                           make_schedule: Optional[Callable[[Any], Any]], steps: int,
                           batch_size: int, device: torch.device) -> tuple[float, float]:
    """Fit loss.output(D(x)) to data.density(x) by MSE at uniform points, `steps` updates
    of `batch_size` points, in place. Replicas (axis.count > 1): each replica has its own
    points, from a generator seeded with its seed + SEED_OFFSET (the training stream is
    left as it was), and its own MSE; the summed MSEs make one optimizer step R
    independent ones. Returns the mean MSE (over replicas) of the first and last update.
    """
    optimizer = make_optimizer(D.parameters())
    schedule = make_schedule(optimizer) if make_schedule is not None else None
    generators = [torch.Generator(device=device).manual_seed(s + SEED_OFFSET) for s in axis.seeds]
    low, high = (c.to(device) for c in pretraining_box(data))

    def points(g: Optional[torch.Generator]) -> torch.Tensor:  # (B, d)
        u = torch.rand((batch_size, data.dim), device=device, generator=g)
        return low + (high - low) * u

    first = last = float("nan")
    for k in range(steps):
        x = axis.draw(points, generators)  # (B, d), or (R, B, d)
        target = data.density(x.reshape(-1, data.dim)).reshape(x.shape[:-1])  # (B,) / (R, B)
        said = loss.output(D(x)).squeeze(-1)
        per_replica = (said - target).square().mean(-1)  # () or (R,)
        optimizer.zero_grad(set_to_none=True)
        per_replica.sum().backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if k == 0:  # the console line's two numbers: the only host syncs
            first = float(per_replica.detach().mean())
        if k == steps - 1:
            last = float(per_replica.detach().mean())
    optimizer.zero_grad(set_to_none=True)
    return first, last


def pretraining_line(steps: int, first: float, last: float, replicas: int) -> str:
    each = f" (mean over {replicas} replicas)" if replicas > 1 else ""
    return f"pre-trained D for {steps} steps: MSE {first:.3g} -> {last:.3g}{each}"

