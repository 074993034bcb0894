"""The GAN step: the whole training algorithm, (1) D step(s), (2) G step(s), (3) schedules
and G's moving average, in one object with one method.

The step reads its random inputs from `RandomDraws`, updates the players in place
and returns the step's statistics on the device: no host sync, no I/O, and no Python
decision on a tensor's value (every `if` below tests the config). The loss object
owns the GAN math (its d_loss, g_loss, penalty and after_d_step), so the step never
asks which loss it runs. A single run and train.replicas=R run this same code: the
replica axis (replicas.py) puts (R, ...) in front of each tensor and applies the
per-replica objectives. Shapes below are a single run's.

A new regulariser goes into d_step or g_step here (or, if it is a loss term, into
the loss class's `penalty`); nothing else in the loop needs to know about it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from gan_cli.health import STATS
from gan_cli.labels import Conditioning
from gan_cli.models import ema_updater, frozen, judges_each_sample_alone
from gan_cli.replicas import RandomDraws, SingleRun
from gan_cli.unroll import unrolled

Scalar = float | torch.Tensor  # a per-step value: a number, or a 0-d tensor (compiled steps)


@dataclass
class Players:
    """What the step trains: the two networks, their optimizers and schedules, and G's
    exponential moving average (None when train.ema is off)."""

    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    schedulers: list = field(default_factory=list)  # stepped once per step
    generator_ema: Optional[nn.Module] = None
    # fp16's gradient scalers, one per player (disabled for fp32 and bf16: then scale() is
    # the loss itself and step() the optimizer's step)
    scaler_g: Optional[torch.amp.GradScaler] = None
    scaler_d: Optional[torch.amp.GradScaler] = None

    def __post_init__(self) -> None:
        self.scaler_g = self.scaler_g or torch.amp.GradScaler("cpu", enabled=False)
        self.scaler_d = self.scaler_d or torch.amp.GradScaler("cpu", enabled=False)

    @property
    def generator_for_eval(self) -> nn.Module:
        """The G that evaluation and sampling use: the moving average when there is one."""
        return self.generator_ema if self.generator_ema is not None else self.generator


@dataclass
class StepSettings:
    """The config's train.* values the step needs, read once (an OmegaConf lookup costs
    microseconds, a tenth of a toy step when the loop made a dozen per step)."""

    batch_size: int
    d_steps: int  # train.d_steps, or the loss's n_critic
    g_steps: int
    unroll_steps: int
    instance_noise: float
    ema: Optional[float]
    image: bool  # the samples are images (labels join D's input as channels)
    precision: str = "fp32"  # train.precision
    # train.balance: D's accuracy to hold it at (None: off), the added noise std's change
    # per step and its ceiling
    balance_target: Optional[float] = None
    balance_rate: float = 0.001
    balance_max: float = 1.0
    # where the networks' forward passes run: torch.autocast for train.precision=bf16/fp16,
    # a no-op for fp32 (device.autocast_context)
    autocast: Callable[[], Any] = contextlib.nullcontext


def schedule(settings: StepSettings, step: int, steps: int) -> tuple[float, float]:
    """The per-step scalars of step `step` (0-based) of `steps`: the instance-noise std
    (falling linearly to 0) and G's EMA decay (warmed up: early on the average must not
    remember the random init)."""
    sigma = settings.instance_noise * (1.0 - step / steps)
    ema_decay = 0.0 if settings.ema is None else min(settings.ema, (2 + step) / (11 + step))
    return sigma, ema_decay


class Balance:
    """train.balance: instance noise that adapts to D's accuracy, the way stylegan2-ada
    adapts its augmentation probability p to D's overfitting (training_loop.py:
    p += sign(r_t - ada_target) x a fixed speed, clamped at 0).

    Why noise rather than a cut in D's learning rate: a D that already separates real
    from fake keeps separating them at any lr (a slower D is still a perfect one, and its
    saturated logits still give G no gradient), while noise on D's inputs — both real and
    fake, which both players see — makes the supports overlap, so D's best attainable
    accuracy falls and G's gradients come back (Sønderby et al. 2017; Arjovsky & Bottou
    2017). The control loop then closes on the quantity itself: more noise, lower accuracy.

    The added std is a device tensor, () or (R,) (each replica its own), updated inside
    the step from the step's own accuracy by tensor arithmetic (no host sync, no branch on
    its value) and saved in the run state (state.py), so resume continues it exactly.
    """

    ACCURACY = [STATS.index("d_acc_real"), STATS.index("d_acc_fake")]

    def __init__(self, settings: StepSettings, leading: tuple[int, ...], device: torch.device):
        self.target, self.rate, self.ceiling = (settings.balance_target, settings.balance_rate,
                                                settings.balance_max)
        self.noise = torch.zeros(leading, device=device)  # the std added to sigma

    @property
    def on(self) -> bool:
        return self.target is not None

    def sigma(self, sigma: Scalar) -> Scalar:
        """The step's instance-noise std: the schedule's plus the adaptive part."""
        return sigma + self.noise if self.on else sigma

    def update(self, stats: torch.Tensor) -> None:
        """One step of the control loop from the step's statistics (..., STATS): D's
        accuracy (the mean over real and fake) above the target adds `rate` to the std,
        below it takes `rate` off. In place, so a compiled graph updates the same tensor."""
        if not self.on:
            return
        accuracy = stats[..., self.ACCURACY].mean(-1)  # () or (R,)
        moved = self.noise + self.rate * torch.sign(accuracy - self.target)
        self.noise.copy_(moved.clamp(0.0, self.ceiling))


class GANStep:
    """step(sigma, ema_decay) -> the step's statistics, (STATS,) (health.py's order)."""

    def __init__(self, players: Players, loss: Any, cond: Conditioning, draws: RandomDraws,
                 axis: SingleRun, settings: StepSettings):
        self.players, self.loss, self.cond, self.draws = players, loss, cond, draws
        self.axis, self.settings = axis, settings
        G, D = players.generator, players.discriminator
        # gathered once: walking the module tree every step costs more than a toy update
        self.grad_norm_d, self.grad_norm_g = axis.grad_norm_of(D), axis.grad_norm_of(G)
        self.d_weights = list(D.parameters())
        self.update_ema = ema_updater(players.generator_ema, G) \
            if players.generator_ema is not None else None
        # one D pass over real and fake together halves the D step's kernel launches; a D
        # with batch norm or minibatch layers must see pure real or pure fake batches (seed 003)
        self.joint_pass = judges_each_sample_alone(D)
        self.balance = Balance(settings, axis.leading, next(G.parameters()).device)

    def __call__(self, sigma: Scalar, ema_decay: Scalar) -> torch.Tensor:
        sigma = self.balance.sigma(sigma)  # (train.balance: plus the adaptive noise)
        # (1) D step(s): real samples up, fresh fakes (no G gradient) down
        for _ in range(self.settings.d_steps):
            d_loss, real_logits, fake_logits, grad_norm_d = self.d_step(sigma)
        # (2) G step(s): make D (or, unrolled, D after k look-ahead steps) call fakes real
        for _ in range(self.settings.g_steps):
            g_loss, grad_norm_g = self.g_step(sigma)
        # (3) schedules, G's moving average, the step's statistics
        for sched in self.players.schedulers:
            sched.step()
        if self.update_ema is not None:
            self.update_ema(decay=ema_decay)
        stats = self.statistics(d_loss, g_loss, real_logits, fake_logits, grad_norm_d,
                                grad_norm_g)
        self.balance.update(stats)  # the next step's adaptive noise, from this step's D
        return stats

    def statistics(self, d_loss: torch.Tensor, g_loss: torch.Tensor, real_logits: torch.Tensor,
                   fake_logits: torch.Tensor, grad_norm_d: torch.Tensor,
                   grad_norm_g: torch.Tensor) -> torch.Tensor:
        """The step's statistics, (STATS,) (health.py's order)."""
        loss, per_replica = self.loss, self.axis.per_replica
        with torch.no_grad():
            accuracy = per_replica(loss.accuracy)(real_logits, fake_logits)  # (2,)
            return torch.stack([
                d_loss, g_loss, loss.output(real_logits).mean((-2, -1)),
                loss.output(fake_logits).mean((-2, -1)), *accuracy.unbind(-1),
                grad_norm_d, grad_norm_g], dim=-1)

    def d_step(self, sigma: Scalar) -> tuple[torch.Tensor, ...]:
        """One D update; returns its loss, its logits on the real and fake batch
        ((B / pack, 1) each) and its gradient norm."""
        d_loss, real_logits, fake_logits = self.d_objective(*self.d_batch(sigma))
        grad_norm = self.update(d_loss, self.players.opt_d, self.players.scaler_d,
                                self.grad_norm_d)
        self.loss.after_d_step(self.players.discriminator)  # e.g. WGAN's weight clipping
        return d_loss, real_logits, fake_logits, grad_norm

    def d_batch(self, sigma: Scalar) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """D's inputs: a real batch (B, d), fakes of its classes (no G gradient), the (B,)
        labels or None."""
        G, cond, batch = self.players.generator, self.cond, self.settings.batch_size
        real, labels = self.draws.real(batch)
        real = self.blur(real, sigma)
        with torch.no_grad(), self.settings.autocast():  # fakes of the real batch's classes
            fake = self.fp32(G(cond.generator_input(self.draws.noise(batch), labels)))
        return real, self.blur(fake, sigma), labels

    def d_objective(self, real: torch.Tensor, fake: torch.Tensor,
                    labels: Optional[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """D's loss (per replica) on a batch, and its logits on the real and the fake half."""
        loss, cond = self.loss, self.cond
        with self.settings.autocast():
            (real_logits, real_class), (fake_logits, fake_class) = \
                self.judge_both(real, fake, labels)
        # the objectives, and the penalties' own D passes, in fp32 (a gradient norm in
        # half precision overflows: StudioGAN #175)
        penalty = loss.penalty(lambda x: self.judge(x, labels)[0], real, fake,
                               self.axis.batch_dim)  # () or per replica (R,)
        d_loss = self.axis.per_replica(loss.d_loss)(real_logits, fake_logits) + penalty + \
            cond.aux_loss(real_class, labels) + cond.aux_loss(fake_class, labels)
        return d_loss, real_logits, fake_logits

    def g_step(self, sigma: Scalar) -> tuple[torch.Tensor, torch.Tensor]:
        """One G update; returns its loss and its gradient norm."""
        G, batch = self.players.generator, self.settings.batch_size
        critic = self.players.discriminator
        if self.settings.unroll_steps:  # (no labels: refused with conditional GANs)
            critic = unrolled(critic, self.players.opt_d, self.loss, self.settings.unroll_steps,
                              real_batch=lambda: self.blur(self.draws.real(batch)[0], sigma),
                              fake_batch=lambda: self.blur(G(self.draws.noise(batch)), sigma))
        labels = self.draws.labels(batch)  # (B,) classes for G to draw, or None
        with frozen(self.d_weights):  # D's input gradient only, not its weights'
            g_loss = self.g_objective(sigma, labels, critic)
        grad_norm = self.update(g_loss, self.players.opt_g, self.players.scaler_g,
                                self.grad_norm_g)
        return g_loss, grad_norm

    @staticmethod
    def update(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               grad_norm: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One optimizer step on the loss's gradient; returns the gradient's norm.
        Replicas: the sum's gradient for each replica's weights is its own loss's."""
        opt.zero_grad(set_to_none=True)
        if not scaler.is_enabled():  # fp32, bf16
            loss.sum().backward()
            norm = grad_norm()
            opt.step()
            return norm
        scaler.scale(loss.sum()).backward()  # fp16: scaled, so small gradients do not underflow
        scaler.unscale_(opt)  # the true gradients, for their norm and the update
        norm = grad_norm()
        scaler.step(opt)  # (skipped when a gradient is not finite)
        scaler.update()
        return norm

    def g_objective(self, sigma: Scalar, labels: Optional[torch.Tensor],
                    critic: Optional[Callable] = None) -> torch.Tensor:
        """G's loss (per replica) on fresh fakes of classes `labels` (None: no labels)."""
        G, cond, batch = self.players.generator, self.cond, self.settings.batch_size
        with self.settings.autocast():
            fake = self.fp32(G(cond.generator_input(self.draws.noise(batch), labels)))
            fake_logits, fake_class = self.judge(self.blur(fake, sigma), labels, critic)
        return self.axis.per_replica(self.loss.g_loss)(fake_logits) + \
            cond.aux_loss(fake_class, labels)

    def blur(self, x: torch.Tensor, sigma: Scalar) -> torch.Tensor:
        """Instance noise: both players see D's inputs blurred, less so as training goes."""
        if not (self.settings.instance_noise or self.balance.on):
            return x
        if isinstance(sigma, torch.Tensor):  # () or, per replica, (R,) -> (R, 1, ...)
            sigma = sigma.reshape(sigma.shape + (1,) * (x.dim() - sigma.dim()))
        return x + sigma * self.draws.normal_like(x)

    def judge(self, x: torch.Tensor, labels: Optional[torch.Tensor],
              critic: Optional[Callable] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """D's logits (B / pack, 1) on samples x of classes `labels` (None: no labels) and,
        for AC-GAN, its class logits (B, K) (else None)."""
        critic = critic or self.players.discriminator
        out = critic(self.cond.discriminator_input(x, labels, self.settings.image))
        return self.cond.split(self.fp32(out))

    def fp32(self, x: torch.Tensor) -> torch.Tensor:
        """A network's output under autocast back in fp32, for the losses and statistics."""
        return x if self.settings.precision == "fp32" else x.float()

    def judge_both(self, real: torch.Tensor, fake: torch.Tensor, labels: Optional[torch.Tensor]):
        """judge() of real and of fake samples of the same classes: (real's, fake's)."""
        if not self.joint_pass:
            return self.judge(real, labels), self.judge(fake, labels)
        dim = self.axis.batch_dim
        both = None if labels is None else torch.cat([labels, labels], dim=dim)
        logits, classes = self.judge(torch.cat([real, fake], dim=dim), both)
        real_logits, fake_logits = logits.chunk(2, dim=dim)
        if classes is None:
            return (real_logits, None), (fake_logits, None)
        real_classes, fake_classes = classes.chunk(2, dim=dim)
        return (real_logits, real_classes), (fake_logits, fake_classes)
