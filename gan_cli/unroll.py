"""Unrolled GAN (Metz et al. 2017, arXiv:1611.02163): G's loss sees D after k look-ahead updates.

The look-ahead runs on a functional copy of D's weights (torch.func.functional_call),
so the models need no changes and the real D is untouched. Each look-ahead update
is differentiable (create_graph=True), so G's gradient includes how D would react
to G's move: the term that discourages G from hopping between modes.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

Batch = Callable[[], torch.Tensor]


def step_sizes(opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> list:
    """Per-parameter step size of a plain gradient step that is about as large as the
    optimizer's own: lr, divided by Adam's / RMSprop's running RMS of the gradient when
    it has one. (The optimizer's state is read, never changed.)"""
    group_of = {id(p): group for group in opt.param_groups for p in group["params"]}
    sizes = []
    for p in params:
        group, state = group_of[id(p)], opt.state.get(p, {})
        lr = group["lr"]
        if "exp_avg_sq" in state:  # Adam: bias-corrected second moment
            v = state["exp_avg_sq"] / (1 - group["betas"][1] ** float(state["step"]))
            sizes.append(lr / (v.sqrt() + group["eps"]))
        elif "square_avg" in state:  # RMSprop
            sizes.append(lr / (state["square_avg"].sqrt() + group["eps"]))
        else:  # SGD, or before the first real update
            sizes.append(lr)
    return sizes


def unrolled(D: nn.Module, opt_d: torch.optim.Optimizer, loss, k: int, real_batch: Batch,
             fake_batch: Batch) -> Callable[[torch.Tensor], torch.Tensor]:
    """D after k look-ahead updates on fresh batches, as a function of its input.

    fake_batch must return fakes that still carry G's graph: the look-ahead's
    dependence on G is what unrolling adds.
    """
    names = [name for name, _ in D.named_parameters()]
    live = [p for _, p in D.named_parameters()]
    sizes = step_sizes(opt_d, live)
    # the look-ahead starts from D's weights, but no gradient flows back into them
    weights = [p.detach().requires_grad_(True) for p in live]
    buffers = {name: b.clone() for name, b in D.named_buffers()}  # e.g. spectral norm's u, v

    def D_with(ws: list[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        state = {**dict(zip(names, ws)), **buffers}
        return lambda x: functional_call(D, state, (x,))

    D_ahead = D_with(weights)
    for _ in range(k):
        real, fake = real_batch(), fake_batch()
        d_loss = loss.d_loss(D_ahead(real), D_ahead(fake)) + loss.penalty(D_ahead, real, fake)
        grads = torch.autograd.grad(d_loss, weights, create_graph=True)
        weights = [w - s * g for w, s, g in zip(weights, sizes, grads)]
        D_ahead = D_with(weights)
    return D_ahead
