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

from gan_cli.errors import UserError


ROUND = 10_000  # gan-sample's candidates per round, at least n (up to MAX_ROUND)
MAX_ROUND = 1_000_000  # torch.quantile takes at most 2^24 values


def keep_mask(logits: torch.Tensor, quantile: float,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Which of the samples with D's logits (N,) to keep: (N,) bools. Logits that are
    not all finite (a diverged D) say nothing: every sample is kept."""
    if not torch.isfinite(logits).all():
        return torch.ones_like(logits, dtype=torch.bool)
    threshold = torch.quantile(logits.float(), quantile)
    draw = torch.rand(logits.shape, generator=generator, device=logits.device)
    return draw < (logits - threshold).exp()


def judged_in_batches(judge: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                      batch: int, dim: int = 0) -> torch.Tensor:
    """judge's logits on samples x (along dim), in chunks of exactly `batch`: a D with a
    minibatch layer judges each sample among `batch` others, as in training. The last
    chunk is filled up with x's first samples, whose second logits are dropped."""
    n = x.shape[dim]
    padded = x.index_select(dim, torch.arange(n + (-n) % batch, device=x.device) % n)
    logits = torch.cat([judge(chunk) for chunk in padded.split(batch, dim=dim)], dim=dim)
    return logits.narrow(dim, 0, n)


def sample_kept(draw: Callable[[int], torch.Tensor], logits_of: Callable[[torch.Tensor], torch.Tensor],
                n: int, quantile: float) -> tuple[torch.Tensor, float]:
    """n samples that D lets through, from rounds of candidates draw(m) judged by
    logits_of (each round keeps at least its samples above the quantile, so this ends);
    and the share of candidates kept. Raises UserError for a D whose logits are not
    finite."""
    size = min(max(n, ROUND), MAX_ROUND)
    kept, n_kept, drawn = [], 0, 0
    while n_kept < n:
        x = draw(size)
        logits = logits_of(x)
        if not torch.isfinite(logits).all():
            raise UserError("rejection_quantile: this checkpoint's D gives non-finite logits "
                            "(a diverged run?); sample without rejection_quantile")
        kept.append(x[keep_mask(logits, quantile)])
        n_kept, drawn = n_kept + len(kept[-1]), drawn + size
    return torch.cat(kept)[:n], n_kept / drawn
