"""The training health monitor: per-step statistics, divergence, and warnings shown once.

The loop adds each step's statistics (STATS) to running sums on the device and
notes there, without a host sync, the first step at which each one stopped
being finite; `HealthMonitor` reads both once per log interval.
"""

from __future__ import annotations

from typing import Optional

import torch

# one per-step statistic each; metrics.csv has one column per name (interval means)
STATS = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake",
         "grad_norm_d", "grad_norm_g")

# D right about (almost) every real and fake sample for this many steps: G learns little
D_WINS_ACCURACY = 0.99
D_WINS_STEPS = 1000


class HealthMonitor:
    """Tracks the statistics between log intervals and decides when to stop or warn."""

    def __init__(self, device: torch.device, leading: tuple[int, ...] = ()):
        # (STATS,) per step; leading dimensions in front, e.g. (R,) for replicas
        shape = (*leading, len(STATS))
        self.sums = torch.zeros(shape, device=device)
        self.steps = 0  # steps summed since the last read
        # per statistic: the first step at which it was not finite (-1: never), and its value
        self.bad_step = torch.full(shape, -1, dtype=torch.long, device=device)
        self.bad_value = torch.zeros(shape, device=device)
        self.d_wins_since: Optional[int] = None  # step from which D has been winning outright
        self.all_modes_at: Optional[int] = None  # first evaluation step with every mode covered
        self.warned: dict[str, str] = {}  # kind -> the warning given (each kind once)
        self.diverged: dict[int, str] = {}  # run (replica) index -> why it diverged

    def state_dict(self) -> dict:
        return {"sums": self.sums, "steps": self.steps, "d_wins_since": self.d_wins_since,
                "all_modes_at": self.all_modes_at, "warned": self.warned,
                "diverged": self.diverged}

    def load_state_dict(self, state: dict) -> None:
        self.sums = state["sums"].to(self.sums.device)
        self.steps = state["steps"]
        self.d_wins_since, self.all_modes_at = state["d_wins_since"], state["all_modes_at"]
        self.warned = dict(state["warned"])
        self.diverged = dict(state["diverged"])

    def add(self, step: int, stats: torch.Tensor) -> None:
        """stats: this step's (STATS,) or (R, STATS), on the device. No host sync."""
        self.sums += stats
        newly_bad = (self.bad_step < 0) & ~torch.isfinite(stats)
        self.bad_step = torch.where(newly_bad, step, self.bad_step)
        self.bad_value = torch.where(newly_bad, stats, self.bad_value)
        self.steps += 1

    def problems(self) -> list[Optional[str]]:
        """Per run (one entry, or one per replica): the first statistic that stopped being
        finite, with its value and step, or None (a host sync)."""
        bad_steps = self.bad_step.reshape(-1, len(STATS)).tolist()
        bad_values = self.bad_value.reshape(-1, len(STATS)).tolist()
        found = []
        for steps, values in zip(bad_steps, bad_values):
            bad = [(s, i) for i, s in enumerate(steps) if s >= 0]
            first = min(bad)[1] if bad else None
            found.append(None if first is None else
                         f"{STATS[first]} is {values[first]} at step {steps[first]}")
        return found

    def means(self) -> list[dict]:
        """Per run (one entry, or one per replica): each statistic's mean since the last
        reset (a host sync)."""
        means = (self.sums / max(self.steps, 1)).reshape(-1, len(STATS)).tolist()
        return [dict(zip(STATS, m)) for m in means]

    def reset(self) -> None:
        self.sums.zero_()
        self.steps = 0

    def d_wins_warning(self, step: int, means: dict, probabilistic: bool,
                       remedies: str) -> Optional[str]:
        """Once: D has been right about nearly every sample for D_WINS_STEPS steps.

        Only for losses whose D outputs a probability: a critic separating real from
        fake is doing its job (WGAN), and its 'accuracy' is no sign of trouble.
        """
        winning = min(means["d_acc_real"], means["d_acc_fake"]) >= D_WINS_ACCURACY
        if not (probabilistic and winning):
            self.d_wins_since = None
            return None
        if self.d_wins_since is None:
            self.d_wins_since = step
        if step - self.d_wins_since >= D_WINS_STEPS:
            return self._once("d_wins", f"warning: step {step}: D has told real from fake with "
                              f">= {D_WINS_ACCURACY:.0%} accuracy since step {self.d_wins_since}; "
                              f"G's gradients may vanish (try {remedies})")
        return None

    def coverage_warning(self, step: int, metrics: dict) -> Optional[str]:
        """Once: fewer modes are covered than at an earlier evaluation that covered them all."""
        covered, n = metrics.get("modes_covered"), metrics.get("n_modes")
        if covered is None:
            return None
        if covered == n:
            self.all_modes_at = self.all_modes_at if self.all_modes_at is not None else step
            return None
        if self.all_modes_at is not None:
            return self._once("coverage", f"warning: step {step}: {covered}/{n} modes covered, "
                              f"after all {n} were at step {self.all_modes_at} (mode collapse?)")
        return None

    def _once(self, kind: str, message: str) -> Optional[str]:
        if kind in self.warned:
            return None
        self.warned[kind] = message
        return message
