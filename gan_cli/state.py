"""The run state: everything a run's future depends on, in one object whose state_dict()
is what a checkpoint holds (the only definition of a checkpoint).

What resume guarantees (docs/reliability.md): a run resumed from the checkpoint of
step s repeats, on the same device and thread count, exactly what the uninterrupted
run did after step s — so the state holds the weights, optimizer and schedule
states, G's EMA, the fixed evaluation noise, the metrics rows so far, the running
sums of the current log interval, the clocks and every random-number-generator state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from gan_cli.checkpoint import load_weights
from gan_cli.device import device_rng_states, set_device_rng_states
from gan_cli.errors import UserError
from gan_cli.health import HealthMonitor
from gan_cli.replicas import SingleRun
from gan_cli.step import Balance, Players

# what a checkpoint must hold to be resumed exactly (older files lacking others migrate)
REQUIRED = ("step", "config", "generator", "discriminator", "opt_g", "opt_d", "schedulers",
            "eval_z", "rng", "rng_eval", "rows", "final_metrics", "converged_at", "health",
            "wall_time_s", "train_time_s", "device_type")


class Clock:
    """Wall time and training time (wall time less the interval work: evaluation, plots,
    checkpoints), carried over from the earlier sessions of a resumed run."""

    def __init__(self, past_wall: float = 0.0, past_train: float = 0.0):
        self.past_wall, self.past_train = past_wall, past_train
        self.started = self.train_started = time.perf_counter()
        self.off_path = 0.0  # seconds of interval work since training started

    def start_training(self) -> None:
        self.train_started = time.perf_counter()

    def wall(self) -> float:
        return self.past_wall + time.perf_counter() - self.started

    def training(self) -> float:
        return self.past_train + time.perf_counter() - self.train_started - self.off_path


@dataclass
class Evaluation:
    """What evaluation draws from: a fixed noise batch, so that frames are comparable, and
    its own generators, so that it never shifts the training random stream."""

    z: torch.Tensor  # (N, z), (R, N, z) for replicas
    labels: Optional[torch.Tensor]  # a conditional G's fixed classes (N,), or None
    rngs: list[torch.Generator]  # one per replica


class RunState:
    """The players, the evaluation inputs, the health sums, the metric rows so far, the
    clocks and the step counter of one run (or of R replicas)."""

    def __init__(self, config: dict, players: Players, axis: SingleRun, evaluation: Evaluation,
                 health: HealthMonitor, device: torch.device, data_shape: list,
                 n_classes: Optional[int], balance: Optional[Balance] = None):
        self.config, self.players, self.axis = config, players, axis
        self.balance = balance  # train.balance's adaptive noise (the step's), or None
        self.evaluation, self.health, self.device = evaluation, health, device
        self.data_shape, self.n_classes = data_shape, n_classes  # gan-sample builds G from them
        self.step = 0
        self.rows: list[dict] = []  # the metrics.csv rows so far
        self.converged_at: list[Optional[int]] = [None] * axis.count  # per replica
        self.final_metrics: list[dict] = [{} for _ in range(axis.count)]  # latest evaluation
        self.clock = Clock()
        self.saved_step: Optional[int] = None  # the step of checkpoints/last.pt

    def state_dict(self) -> dict:
        p, axis, ev = self.players, self.axis, self.evaluation
        return {
            "step": self.step,
            "config": self.config,
            "generator": p.generator.state_dict(),
            "discriminator": p.discriminator.state_dict(),
            "generator_ema": p.generator_ema.state_dict() if p.generator_ema is not None
            else None,
            "opt_g": p.opt_g.state_dict(),
            "opt_d": p.opt_d.state_dict(),
            "schedulers": [s.state_dict() for s in p.schedulers],
            "scalers": [p.scaler_g.state_dict(), p.scaler_d.state_dict()],  # (fp16's)
            "eval_z": ev.z,
            "eval_labels": ev.labels,
            "data_shape": self.data_shape,
            "n_classes": self.n_classes,
            "rng": device_rng_states(self.device),
            "rng_eval": axis.pack([g.get_state() for g in ev.rngs]),
            "rng_replicas": [g.get_state() for g in axis.generators],
            "device_type": self.device.type,
            "rows": self.rows,
            "converged_at": axis.pack(self.converged_at),
            "final_metrics": axis.pack(self.final_metrics),
            "health": self.health.state_dict(),
            "balance_noise": None if self.balance is None else self.balance.noise.clone(),
            "wall_time_s": self.clock.wall(),
            "train_time_s": self.clock.training(),
        }

    def load_state_dict(self, state: dict, source: str, warn: Callable[[str], None]) -> None:
        """Continue from a checkpoint (migrated from older versions of the format)."""
        state = migrate(state, source)
        p, axis, ev = self.players, self.axis, self.evaluation
        load_weights(p.generator, state["generator"], "generator", source)
        load_weights(p.discriminator, state["discriminator"], "discriminator", source)
        if p.generator_ema is not None and state["generator_ema"] is not None:
            load_weights(p.generator_ema, state["generator_ema"], "generator_ema", source)
        p.opt_g.load_state_dict(state["opt_g"])
        p.opt_d.load_state_dict(state["opt_d"])
        for sched, sched_state in zip(p.schedulers, state["schedulers"]):
            sched.load_state_dict(sched_state)
        for scaler, scaler_state in zip((p.scaler_g, p.scaler_d), state["scalers"]):
            if scaler_state:  # (a disabled scaler's state is empty)
                scaler.load_state_dict(scaler_state)
        ev.z = state["eval_z"].to(self.device)
        if ev.labels is not None:
            ev.labels = state["eval_labels"].to(self.device)
        if state["device_type"] == self.device.type:
            for g, rng in zip(ev.rngs, axis.unpack(state["rng_eval"])):
                g.set_state(rng.cpu())
            set_device_rng_states(state["rng"], self.device, warn=warn)
            for g, rng in zip(axis.generators, state["rng_replicas"]):
                g.set_state(rng.cpu())
        else:  # another kind of device draws other random numbers anyway
            warn(f"warning: resuming a {state['device_type']} run on {self.device}: it "
                 "continues, but not bit-identically to an uninterrupted run")
        self.step, self.rows = state["step"], state["rows"]
        self.converged_at = axis.unpack(state["converged_at"])
        self.final_metrics = axis.unpack(state["final_metrics"])
        self.health.load_state_dict(state["health"])
        if self.balance is not None:  # (an older checkpoint's None: the noise starts at 0)
            saved = state["balance_noise"]
            self.balance.noise.copy_(0.0 if saved is None else saved.to(self.device))
        self.clock = Clock(state["wall_time_s"], state["train_time_s"])
        self.saved_step = self.step


def migrate(state: dict, source: str) -> dict:
    """A checkpoint in today's format. Files from before train.replicas lack the replica
    generators and the health monitor's divergence record, files from before
    train.balance its adaptive noise (it then starts at 0); their config's missing keys
    take defaults when it is read (checkpoint.run_config)."""
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise UserError(f"resume={source}: the checkpoint lacks {', '.join(missing)} (written "
                        "by an older gan_cli?); gan-sample can still use it, resume cannot")
    state = {"rng_replicas": [], "eval_labels": None, "scalers": [], "balance_noise": None,
             **state}
    state["health"] = {"diverged": {}, **state["health"]}
    return state
