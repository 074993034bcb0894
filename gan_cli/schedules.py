"""Learning-rate schedules that need a derived value (the run's length) to be built."""

from __future__ import annotations

import torch


def exponential_decay(optimizer: torch.optim.Optimizer, final_fraction: float,
                      total_steps: int) -> torch.optim.lr_scheduler.ExponentialLR:
    """lr_t = lr_0 * final_fraction ** (t / total_steps), stepped once per training step.

    Unlike a fixed per-step factor, the curve stretches with train.steps, so a
    longer run does not spend its second half at a negligible learning rate.
    """
    gamma = final_fraction ** (1 / total_steps)
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
