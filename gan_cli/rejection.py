"""Discriminator rejection sampling (Azadi et al. 2019, https://arxiv.org/abs/1810.06758).

A D trained with a logistic loss estimates, near its optimum, logit(x) = log p_data(x) /
p_G(x). Keeping each of G's samples with probability min(1, exp(logit(x) - M)) then
thins out what G draws too often, such as the mass G spreads along the lines between
the modes of a grid, and the kept samples follow p_data more closely. The exact rule
takes M as the largest logit and keeps few samples; like the paper's shift gamma we
lower M to the logits' q-quantile (eval.rejection_quantile), which keeps more of them
and still rejects most of the samples D finds least real.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch


def keep_mask(logits: torch.Tensor, quantile: float,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Which of the samples with D's logits (N,) to keep: (N,) bools."""
    threshold = torch.quantile(logits.float(), quantile)
    draw = torch.rand(logits.shape, generator=generator, device=logits.device)
    return draw < (logits - threshold).exp()


def sample_kept(draw: Callable[[int], torch.Tensor], logits_of: Callable[[torch.Tensor], torch.Tensor],
                n: int, quantile: float) -> tuple[torch.Tensor, float]:
    """n samples that D lets through, from rounds of max(n, 10,000) candidates draw(m)
    judged by logits_of (each round keeps at least its samples above the quantile, so
    this ends); and the share of candidates kept."""
    size = max(n, 10_000)
    kept, n_kept, drawn = [], 0, 0
    while n_kept < n:
        x = draw(size)
        kept.append(x[keep_mask(logits_of(x), quantile)])
        n_kept, drawn = n_kept + len(kept[-1]), drawn + size
    return torch.cat(kept)[:n], n_kept / drawn
