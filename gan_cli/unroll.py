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


class LookAheadOptimizer:
    """A differentiable copy of D's optimizer, started from its state (read, never changed).

    Adam and RMSprop update copies of their running moments with each look-ahead
    gradient, as the real optimizer would, so each look-ahead step is as large as the
    optimizer's own: Adam's is bounded by about lr, where a plain step of lr / RMS
    would explode wherever the running RMS is still small. SGD, and any optimizer
    before its first update, take lr x gradient.
    """

    def __init__(self, opt: torch.optim.Optimizer, params: list[nn.Parameter]):
        group_of = {id(p): group for group in opt.param_groups for p in group["params"]}
        self.slots = []  # per parameter: its group and copies of its optimizer state
        for p in params:
            group, state = group_of[id(p)], opt.state.get(p, {})
            slot = {"group": group}
            if "exp_avg_sq" in state:  # Adam
                slot.update(m=state["exp_avg"].clone(), v=state["exp_avg_sq"].clone(),
                            t=torch.as_tensor(state["step"], dtype=torch.float64))
            elif "square_avg" in state:  # RMSprop
                slot.update(v=state["square_avg"].clone())
            self.slots.append(slot)

    def step(self, weights: list[torch.Tensor], grads: tuple) -> list[torch.Tensor]:
        return [w - self._update(slot, g) for w, slot, g in zip(weights, self.slots, grads)]

    @staticmethod
    def _update(slot: dict, g: torch.Tensor) -> torch.Tensor:
        group = slot["group"]
        lr, eps = group["lr"], group.get("eps", 1e-8)
        # sqrt(v + eps^2): sqrt's gradient at v = 0 (a weight that never had a gradient)
        # would be infinite; the difference to Adam's sqrt(v) is below float precision
        if "m" in slot:
            b1, b2 = group["betas"]
            slot["t"] = slot["t"] + 1  # a new tensor: the optimizer's own step stays
            slot["m"] = b1 * slot["m"] + (1 - b1) * g
            slot["v"] = b2 * slot["v"] + (1 - b2) * g * g
            m_hat = slot["m"] / (1 - b1 ** slot["t"])
            v_hat = slot["v"] / (1 - b2 ** slot["t"])
            return lr * m_hat / ((v_hat + eps**2).sqrt() + eps)
        if "v" in slot:
            alpha = group["alpha"]
            slot["v"] = alpha * slot["v"] + (1 - alpha) * g * g
            return lr * g / ((slot["v"] + eps**2).sqrt() + eps)
        return lr * g


def unrolled(D: nn.Module, opt_d: torch.optim.Optimizer, loss, k: int, real_batch: Batch,
             fake_batch: Batch) -> Callable[[torch.Tensor], torch.Tensor]:
    """D after k look-ahead updates on fresh batches, as a function of its input.

    fake_batch must return fakes that still carry G's graph: the look-ahead's
    dependence on G is what unrolling adds.
    """
    names = [name for name, _ in D.named_parameters()]
    live = [p for _, p in D.named_parameters()]
    optimizer = LookAheadOptimizer(opt_d, live)
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
        weights = optimizer.step(weights, grads)
        D_ahead = D_with(weights)
    return D_ahead
