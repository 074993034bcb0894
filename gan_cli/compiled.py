"""train.compile: the whole GAN step (step.py) compiled as one graph with torch.compile.

The compiled step is a functional twin of GANStep.__call__ that reuses its parts: the
same random draws (d_batch, draws.labels), the same losses (d_objective, g_objective)
and the same statistics. Only what cannot be traced is replaced: `backward()` by
torch.func.grad_and_value over the players' parameters (via functional_call), and
`optimizer.step()` by PyTorch's own functional optimizer kernels
(torch.optim.adam.adam, sgd.sgd, rmsprop.rmsprop) called on the optimizer's own
parameters and state tensors, with the hyperparameters of its param_groups. So the
configured torch.optim optimizers stay the source of truth, their state_dict() is
what a checkpoint holds whichever way the run trained, and eager and compiled
checkpoints load into each other.

What enters the graph per step: one small tensor holding instance noise's sigma, the
EMA decay and each param group's lr (a 0-d value each, so no step recompiles). The
random draws happen inside the graph from torch's global generator, as eager's do
(inductor's fallback_random: the same aten random kernels, in the same order), so the
RNG state a checkpoint saves is the one the graph consumes and resume is exact.

train.replicas compiles too: the stacked weights update element by element as eager's
do, and each gradient norm is per replica. Per-replica torch.Generators cannot be
traced, so a compiled replica run draws every replica's random inputs in one batched
call from torch's global stream (replicas.ReplicaRuns.trace_draws): each replica still
starts from seed+k's networks and draws numbers of its own, but not the ones the single
run seed+k draws (eager replicas do), and resume stays exact (that stream is saved).

Not compiled (the run trains eagerly, with one console line saying why): options whose
step needs a second autograd pass inside the first (WGAN-GP's penalty, unrolled GAN;
R1, loss.r1_gamma, does compile: its input gradient is a torch.func.grad nested in ours),
optimizers other than Adam/AdamW/SGD/RMSprop, and devices other than the CPU and CUDA.

CUDA runs the same graph, replayed as a CUDA graph (inductor's cudagraph trees; a
console line says whether capture happened). Not measured here: no GPU;
benchmarks/gpu_check.py reports it.
One difference to eager that the networks never meet: eager optimizers skip a weight
whose gradient is None, the compiled step gives every weight its (possibly zero)
gradient — both players' networks use all their weights in every step.

Compiling takes tens of seconds. On the CPU the step is compiled ahead of time and saved
whole in inductor's cache directory (under /tmp/torchinductor_<user>, or
$TORCHINDUCTOR_CACHE_DIR): a later run or sweep job with the same networks and options
loads it in a second or two (step_cache.py). CUDA runs reuse inductor's kernel cache.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call, grad_and_value
from torch.optim.adam import adam as adam_kernel
from torch.optim.rmsprop import rmsprop as rmsprop_kernel
from torch.optim.sgd import sgd as sgd_kernel

from gan_cli import step_cache
from gan_cli.losses import GANLoss
from gan_cli.state import Clock
from gan_cli.step import GANStep

# train.compile=auto compiles runs of at least this many steps: a cold compile costs
# ~30 s on a laptop-class CPU and saves ~2 ms per toy step (README, "Compiled steps")
AUTO_MIN_STEPS = 20_000

Update = Callable[[list, torch.Tensor], None]  # (grads of one param group, its lr) -> None


# ---------------------------------------------------------------- optimizer kernels
def _adam(group: dict, state: dict) -> Update:
    params = group["params"]
    exp_avgs = [state[p]["exp_avg"] for p in params]
    exp_avg_sqs = [state[p]["exp_avg_sq"] for p in params]
    max_sqs = [state[p]["max_exp_avg_sq"] for p in params] if group["amsgrad"] else []
    steps = [state[p]["step"] for p in params]
    beta1, beta2 = group["betas"]

    def update(grads: list, lr: torch.Tensor) -> None:
        adam_kernel(
            params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps, foreach=False,
            capturable=False, differentiable=False, fused=None, has_complex=False,
            decoupled_weight_decay=group.get("decoupled_weight_decay", False),
            amsgrad=group["amsgrad"], beta1=beta1, beta2=beta2, lr=lr,
            weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"])

    return update


def _sgd(group: dict, state: dict) -> Update:
    params = group["params"]
    buffers = [state[p].get("momentum_buffer") if p in state else None for p in params]

    def update(grads: list, lr: torch.Tensor) -> None:
        sgd_kernel(
            params, grads, buffers, has_sparse_grad=False, foreach=False, fused=None,
            weight_decay=group["weight_decay"], momentum=group["momentum"], lr=lr,
            dampening=group["dampening"], nesterov=group["nesterov"],
            maximize=group["maximize"])

    return update


def _rmsprop(group: dict, state: dict) -> Update:
    params = group["params"]
    square_avgs = [state[p]["square_avg"] for p in params]
    grad_avgs = [state[p]["grad_avg"] for p in params] if group["centered"] else []
    momenta = [state[p]["momentum_buffer"] for p in params] if group["momentum"] > 0 else []
    steps = [state[p]["step"] for p in params]

    def update(grads: list, lr: torch.Tensor) -> None:
        rmsprop_kernel(
            params, grads, square_avgs, grad_avgs, momenta, steps, foreach=False,
            maximize=group["maximize"], differentiable=False, capturable=False,
            has_complex=False, lr=lr, alpha=group["alpha"], eps=group["eps"],
            weight_decay=group["weight_decay"], momentum=group["momentum"],
            centered=group["centered"])

    return update


# the optimizers whose functional kernel the compiled step calls (AdamW is an Adam)
KERNELS = {torch.optim.Adam: _adam, torch.optim.SGD: _sgd, torch.optim.RMSprop: _rmsprop}


def kernel_of(opt: torch.optim.Optimizer) -> Optional[Callable[[dict, dict], Update]]:
    return next((k for cls, k in KERNELS.items() if isinstance(opt, cls)), None)


def optimizer_problem(opt: torch.optim.Optimizer, who: str) -> Optional[str]:
    """Why this optimizer cannot run in the compiled step, or None."""
    if kernel_of(opt) is None:
        return f"optim.{who} is {type(opt).__name__} (compiled: Adam, AdamW, SGD, RMSprop)"
    for group in opt.param_groups:
        if group.get("differentiable") or group.get("capturable"):
            return f"optim.{who}: differentiable/capturable optimizers are not compiled"
    return None


def state_ready(opt: torch.optim.Optimizer) -> bool:
    """Whether the optimizer has taken a step (its state tensors exist). SGD without
    momentum keeps no state: always ready."""
    if isinstance(opt, torch.optim.SGD):
        return all(g["momentum"] == 0 for g in opt.param_groups) or len(opt.state) > 0
    return len(opt.state) > 0


class OptimizerUpdate:
    """One optimizer's update as the compiled step applies it: each param group's
    functional kernel on the optimizer's own state tensors (gathered once)."""

    def __init__(self, opt: torch.optim.Optimizer, names: dict[nn.Parameter, str]):
        kernel = kernel_of(opt)
        self.groups = [(kernel(group, opt.state), [names[p] for p in group["params"]])
                       for group in opt.param_groups]

    def __call__(self, grads: dict[str, torch.Tensor], lrs: list[torch.Tensor]) -> None:
        for (update, names), lr in zip(self.groups, lrs):
            update([grads[name] for name in names], lr)


# ---------------------------------------------------------------- what compiles
def refusal(step: GANStep, device: torch.device) -> Optional[str]:
    """Why this run's step cannot be compiled (it then trains eagerly), or None."""
    s, players = step.settings, step.players
    if device.type not in ("cpu", "cuda"):
        return f"device {device.type}: compiled steps run on the CPU and CUDA"
    if s.unroll_steps:
        return "train.unroll_steps: the look-ahead differentiates through D's updates"
    if s.precision != "fp32":
        return f"train.precision={s.precision}: compiled steps run in fp32"
    if getattr(type(step.loss), "penalty", GANLoss.penalty) is not GANLoss.penalty:
        return f"loss {type(step.loss).__name__}: its gradient penalty differentiates twice"
    for opt, who in ((players.opt_g, "generator"), (players.opt_d, "discriminator")):
        problem = optimizer_problem(opt, who)
        if problem:
            return problem
    return None


class _Both(nn.Module):
    """G and D under one module, so that functional_call can swap either's parameters
    for the duration of any step code (not just one forward)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator

    def forward(self, f: Callable, *args):
        return f(*args)


class CompiledStep:
    """A GANStep's step as one torch.compile graph; the same call, the same statistics.

    The first call of a fresh run is the eager step: it makes PyTorch's optimizers
    create their state exactly as they always do; the graph is compiled on the second.
    """

    def __init__(self, step: GANStep, say: Callable[[str], None], clock: Optional[Clock] = None,
                 saved: Optional[Path] = None):
        self.eager, self.say, self.clock = step, say, clock
        self.saved = saved  # where the compiled CPU step is kept for later runs (step_cache.py)
        p = step.players
        self.both = _Both(p.generator, p.discriminator)
        self.g_params = dict(p.generator.named_parameters())
        self.d_params = dict(p.discriminator.named_parameters())
        # both players' buffers (batch norm's running statistics, spectral norm's vectors),
        # which their forward passes update in place: a torch.func transform lets a
        # function mutate only tensors it is given, so the objectives take them as inputs
        self.buffers = dict(self.both.named_buffers())
        self.device = next(iter(self.g_params.values())).device
        self.graph: Optional[Callable] = None
        self.cuda_graph = self.device.type == "cuda"  # also captured as a CUDA graph
        self.warm = False  # the graph has run once: its guards may be skipped

    def __getstate__(self) -> dict:
        """What torch keeps of this object when it saves the step's guards (step_cache.py):
        the step's parts, not the console, the clock or the graph itself."""
        return {k: v for k, v in self.__dict__.items() if k not in ("say", "clock", "graph")}

    def __getattr__(self, name: str):  # settings, judge, ...: the eager step's
        if name == "eager":  # (not set yet: an object being unpickled)
            raise AttributeError(name)
        return getattr(self.eager, name)

    def __call__(self, sigma: float, ema_decay: float) -> torch.Tensor:
        p = self.eager.players
        if self.graph is None:
            if not (state_ready(p.opt_g) and state_ready(p.opt_d)):
                return self.eager(sigma, ema_decay)
            skips_before = _cuda_graph_skips()
            start = time.perf_counter()
            loaded = self._compile(self._scalars(sigma, ema_decay))
            stats = self._run(sigma, ema_decay)
            seconds = time.perf_counter() - start
            if self.clock is not None:  # start-up, like building the run: not training time
                self.clock.off_path += seconds
            self.say(f"loaded the compiled step ({self.saved}) in {seconds:.1f} s" if loaded
                     else f"compiled the step in {seconds:.1f} s")
            if self.cuda_graph:
                self.say("the compiled step replays as a CUDA graph" if
                         _cuda_graph_skips() == skips_before else
                         "CUDA graph capture skipped (TORCH_LOGS=perf_hints says why): the "
                         "compiled step runs without it")
            return stats
        return self._run(sigma, ema_decay)

    def _compile(self, scalars: torch.Tensor) -> bool:
        """Sets self.graph; returns whether it was loaded from a saved file."""
        p = self.eager.players
        self.update_g = OptimizerUpdate(p.opt_g, {v: k for k, v in self.g_params.items()})
        self.update_d = OptimizerUpdate(p.opt_d, {v: k for k, v in self.d_params.items()})
        self.n_lr_g = len(p.opt_g.param_groups)
        self.eager.axis.trace_draws()  # replicas: all replicas' draws in one traced call
        for opt in (p.opt_g, p.opt_d):  # the step does take optimizer steps (for the schedulers'
            opt._opt_called = True      # check that their first step came after one)
        if p.generator_ema is not None:
            self.ema_pairs = (list(p.generator_ema.parameters()), list(p.generator.parameters()),
                              list(p.generator_ema.buffers()), list(p.generator.buffers()))
        # fallback_random: inductor calls the aten random kernels on torch's global
        # generator, as eager does, instead of its own seeded stream. size_asserts off: the
        # graph's inputs (one small tensor; the players' fixed weights and states) cannot
        # change shape, and checking ~100 of them costs a tenth of a toy step.
        # isolate_recompiles: runs one after another in one process (a sweep's jobs under
        # the basic launcher, tests) each get their own graph, never another run's.
        # cpp_wrapper: the graph's ~50 kernels called from C++ rather than Python: 1.2x the
        # toy's compiled steps/s, 1.05x with 64 replicas (benchmarks/README.md); a warm
        # compile takes as long.
        # use_decompose_tanh: tanh as 2 / (1 + exp(-2x)) - 1, which inductor vectorizes into
        # exp; its default, Sleef's tanh, takes 7x as long as eager's here and a tenth of
        # the 64-replica toy's step (1.1x its replica-steps/s). Its error is absolute, ~1e-7
        # (relatively larger only for |x| < 1e-6, where no network's next layer can tell)
        options = {"fallback_random": True, "size_asserts": False, "cpp_wrapper": True,
                   "cpp.use_decompose_tanh": True}
        if self.cuda_graph:
            # on CUDA the graph's launches are replayed as one CUDA graph (inductor's
            # cudagraph trees, as mode="reduce-overhead"), which needs every tensor the step
            # updates in place at a fixed address: the optimizers' states, the buffers and
            # train.balance's noise (parameters are fixed already); inductor itself skips
            # capture, and says why
            # under TORCH_LOGS=perf_hints, when something in the graph cannot be captured.
            # No cpp_wrapper: a replayed graph leaves no launch overhead to save, and inductor
            # declines capture with it when it partitions the graph
            options = {**options, "cpp_wrapper": False, "triton.cudagraphs": True}
            for t in [*self.buffers.values(), *_state_tensors(p.opt_g), *_state_tensors(p.opt_d),
                      self.eager.balance.noise]:
                torch._dynamo.mark_static_address(t)
        compile_step = functools.partial(torch.compile, self._step, fullgraph=True,
                                         dynamic=False, isolate_recompiles=True)
        if self.cuda_graph or self.saved is None or not step_cache.available():
            self.graph = self._guarded(compile_step(options=options))  # compiled at 1st call
            return False
        # the CPU step traced now and saved whole (step_cache.py). Gradients: the eager first
        # step left them; the graph never reads them, and torch cannot save them in its guards
        for param in [*self.g_params.values(), *self.d_params.values()]:
            param.grad = None
        with torch.no_grad():
            graph, loaded = step_cache.load_or_compile(
                compile_step(options={**options, "guard_filter_fn": step_cache.savable_guards}),
                self, (scalars,), self.saved, self.say)
        self.graph = graph or self._guarded(compile_step(options=options))
        return loaded

    def _guarded(self, compiled: Callable) -> Callable:
        """dynamo's compiled step: its guards are checked at the first call only (after it,
        none can fail: the run has one graph, whose inputs keep their shapes and whose
        closed-over modules and settings never change, and checking each of its ~100
        tensors and module attributes costs more than the step)."""
        def call(scalars: torch.Tensor) -> torch.Tensor:
            with torch.compiler.set_stance(skip_guard_eval_unsafe=self.warm):
                return compiled(scalars)
        return call

    def _scalars(self, sigma: float, ema_decay: float) -> torch.Tensor:
        p = self.eager.players
        return torch.tensor([sigma, ema_decay, *(g["lr"] for g in p.opt_g.param_groups),
                             *(g["lr"] for g in p.opt_d.param_groups)], device=self.device)

    def _run(self, sigma: float, ema_decay: float) -> torch.Tensor:
        scalars = self._scalars(sigma, ema_decay)
        if self.cuda_graph:  # a new replay: the previous step's outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad():  # torch.func.grad inside ignores it; the graph is inference-only
            stats = self.graph(scalars)
        if self.cuda_graph:  # (the loop keeps a step's statistics past the next replay)
            stats = stats.clone()
        self.warm = True
        for sched in self.eager.players.schedulers:  # host-side: they change param_groups' lr
            sched.step()
        return stats

    # ------------------------------------------------------------ traced
    def _step(self, scalars: torch.Tensor) -> torch.Tensor:
        step, s = self.eager, self.eager.settings
        sigma, ema_decay = step.balance.sigma(scalars[0]), scalars[1]  # (train.balance)
        lrs = list(scalars[2:].unbind())
        lr_g, lr_d = lrs[:self.n_lr_g], lrs[self.n_lr_g:]
        for _ in range(s.d_steps):
            real, fake, labels = step.d_batch(sigma)
            grads, (_, (d_loss, real_logits, fake_logits)) = grad_and_value(
                self._d_objective, has_aux=True)(self.d_params, self.buffers, real, fake, labels)
            grad_norm_d = step.axis.norm_of(list(grads.values()))
            self.update_d(grads, lr_d)
            step.loss.after_d_step(step.players.discriminator)
        for _ in range(s.g_steps):
            labels = step.draws.labels(s.batch_size)
            grads, (_, g_loss) = grad_and_value(self._g_objective, has_aux=True)(
                self.g_params, self.buffers, sigma, labels)
            grad_norm_g = step.axis.norm_of(list(grads.values()))
            self.update_g(grads, lr_g)
        if step.players.generator_ema is not None:
            averaged, live, averaged_buffers, live_buffers = self.ema_pairs
            for a, w in zip(averaged, live):
                a.lerp_(w, 1.0 - ema_decay)
            for a, b in zip(averaged_buffers, live_buffers):
                a.copy_(b)
        stats = step.statistics(d_loss, g_loss, real_logits, fake_logits, grad_norm_d,
                                grad_norm_g)
        step.balance.update(stats)  # train.balance: in place, as eager's
        return stats

    def _d_objective(self, d_params: dict, buffers: dict, real, fake, labels):
        swapped = {**buffers, **{f"discriminator.{k}": v for k, v in d_params.items()}}
        d_loss, real_logits, fake_logits = functional_call(
            self.both, swapped, (self.eager.d_objective, real, fake, labels), strict=False)
        return d_loss.sum(), (d_loss.detach(), real_logits.detach(), fake_logits.detach())

    def _g_objective(self, g_params: dict, buffers: dict, sigma, labels):
        swapped = {**buffers, **{f"generator.{k}": v for k, v in g_params.items()}}
        g_loss = functional_call(self.both, swapped, (self.eager.g_objective, sigma, labels),
                                 strict=False)
        return g_loss.sum(), g_loss.detach()


def _state_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [t for state in opt.state.values() for t in state.values()
            if isinstance(t, torch.Tensor)]


def _cuda_graph_skips() -> int:
    """How many graphs inductor has declined to capture as CUDA graphs in this process."""
    return torch._dynamo.utils.counters["inductor"]["cudagraph_skips"]


# ---------------------------------------------------------------- the switch
def cache_location() -> str:
    """Where inductor keeps what it compiled ($TORCHINDUCTOR_CACHE_DIR, or its default)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return cache_dir()


def wanted(setting, steps_left: int, convolutional: bool = False,
           device_type: str = "cpu") -> bool:
    """train.compile as a decision: true, false, or auto = compile runs with at least
    AUTO_MIN_STEPS steps still to go (shorter ones finish before compiling would pay),
    except convolutional networks on the CPU: their convolutions are the same oneDNN calls
    either way, and inductor's batch norm and layout copies cost more than eager's (the
    MNIST DCGAN trained at 0.97x eager's images/s compiled, benchmarks/README.md)."""
    if setting == "auto":
        return steps_left >= AUTO_MIN_STEPS and not (convolutional and device_type == "cpu")
    return bool(setting)


def convolutional(*networks: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for net in networks for m in net.modules())


def choose_step(step: GANStep, setting, steps_left: int, device: torch.device,
                say: Callable[[str], None], clock: Optional[Clock] = None,
                cfg: Optional[DictConfig] = None) -> GANStep | CompiledStep:
    """The step the loop runs: compiled when train.compile asks for it and the run's
    options allow it; otherwise the eager step, with one line saying why when asked.
    cfg: the run's config, which names the file its compiled step is kept in."""
    players = step.players
    if not wanted(setting, steps_left, convolutional(players.generator, players.discriminator),
                  device.type):
        return step
    problem = refusal(step, device)
    if problem is not None:
        say(f"train.compile={str(setting).lower()}: the step runs eagerly ({problem})")
        return step
    say(f"train.compile={str(setting).lower()}: the step will be compiled as one graph "
        f"(cache: {cache_location()})")
    saved = None if cfg is None else step_cache.path(cfg, device, cache_location())
    return CompiledStep(step, say, clock, saved)
