"""Typed config schemas (so typos and wrong types fail at compose time) and value checks.

The YAML files in conf/ extend these schemas through their defaults lists
(`- base_mlp` etc.); Hydra merges the YAML into the dataclass, so every key a
user can set is declared exactly once, here, with its unit and meaning.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig

from gan_cli.errors import UserError  # noqa: F401  (re-exported: raised by the checks below)


# ---------------------------------------------------------------- top level
@dataclass
class TrainLoop:
    steps: int = 5000  # total training steps (one step = d_steps D updates + g_steps G updates)
    batch_size: int = 512  # real and fake samples per update
    d_steps: Optional[int] = None  # discriminator updates per step; null = the loss's n_critic (5 for wgan*, else 1)
    g_steps: int = 1  # generator updates per step
    log_every: int = 100  # steps between metrics.csv rows / console lines
    eval_every: Optional[int] = 500  # steps between evaluations and plots; null = only at the end
    ckpt_every: Optional[int] = 1000  # steps between checkpoints/step_*.pt; null = last.pt at the end
    keep_checkpoints: Optional[int] = 5  # newest periodic checkpoints kept; null = all
    ema: Optional[float] = 0.999  # decay of an EMA of G's weights used to evaluate and sample; null = off
    instance_noise: float = 0.0  # std of Gaussian noise added to D's inputs at step 0, falling linearly to 0
    unroll_steps: int = 0  # G's loss sees D after this many look-ahead updates (unrolled GAN); 0 = off
    replicas: int = 1  # independent GANs (seeds seed..seed+R-1) trained as one batched computation
    # the whole step as one torch.compile graph: true | false | auto (= true when at least
    # gan_cli.compiled.AUTO_MIN_STEPS steps remain, so that the ~30 s compile pays)
    compile: Any = "auto"


@dataclass
class Eval:
    n_samples: int = 10_000  # generated and fresh real samples per evaluation
    w1_tol: Optional[float] = None  # w1 below which a run counts as converged; null = 0.2 x mean std
    projections: int = 256  # random directions for the sliced W1 in more than one dimension
    hq_sigmas: float = 3.0  # "high quality": within this many std of the nearest mode
    plots: bool = True  # write per-evaluation pictures and training.gif
    plot_every: Optional[int] = None  # steps between those pictures; null = every evaluation
    # discriminator rejection sampling: evaluate only the samples D lets through, each kept
    # with probability min(1, exp(logit - the logits' q-quantile)) (gan_cli/rejection.py)
    rejection_quantile: Optional[float] = None  # q in (0, 1]; null = off


@dataclass
class TrainConfig:
    seed: int = 0  # seeds torch, numpy and random
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps ; auto = cuda, then mps, then cpu
    resume: Optional[str] = None  # run folder (or .pt) to continue; null = a fresh run
    deterministic: bool = False  # deterministic kernels only (matters on CUDA; slower there)
    threads: Optional[int] = None  # torch CPU threads; null = auto (parallel sweep jobs share cores)
    train: TrainLoop = field(default_factory=TrainLoop)
    eval: Eval = field(default_factory=Eval)
    data: Any = MISSING
    model: Any = MISSING
    loss: Any = MISSING
    optim: Any = MISSING
    logger: Any = MISSING  # live view beside the CSV/JSON files: none | tensorboard
    experiment: Any = None  # set by experiment=<name> (overrides only)
    print_config: bool = True  # show the composed config as a tree before training


@dataclass
class SampleConfig:
    ckpt: str = MISSING  # run folder or checkpoint file
    n: int = 1000  # number of samples
    out: str = "samples.npy"  # .npy (raw samples) or .png (a picture of them)
    seed: int = 0
    device: str = "auto"
    ema: bool = True  # use G's moving average when the checkpoint has one
    replica: Optional[int] = None  # which replica of a train.replicas run to sample from (0..R-1)
    label: Optional[int] = None  # a conditional G: draw only this class; null = every class in turn
    labels: Optional[list[int]] = None  # a conditional G: these classes, in equal shares
    rejection_quantile: Optional[float] = None  # keep only what D lets through (see eval.*)


# ---------------------------------------------------------------- groups
@dataclass
class GaussianMixtureConfig:
    _target_: str = "gan_cli.data.gaussian.GaussianMixture"
    means: list[Any] = MISSING  # K centres: numbers (1-D) or lists of d numbers
    stds: Any = 1.0  # one number, one per mode, or one list of d per mode
    weights: Optional[list[float]] = None  # mixing weights (normalised); null = equal


@dataclass
class EvenlySpacedConfig:
    """k equal 1-D modes, evenly spaced around 0 (seed 000's 'more modes' arm)."""

    _target_: str = "gan_cli.data.gaussian.evenly_spaced"
    k: int = 5  # number of modes
    spacing: float = 4.0  # distance between neighbouring centres
    std: float = 0.5  # every mode's standard deviation


@dataclass
class IDXImagesConfig:
    """MNIST-format image sets: four IDX files, read once onto the training device."""

    _target_: str = "gan_cli.data.mnist.IDXImages"
    name: str = "mnist"  # mnist | fashion_mnist: which files, checksums and mirrors
    root: Optional[str] = None  # folder holding the IDX files; null = <user cache>/gan_cli/<name>
    download: bool = True  # fetch missing files from `mirrors` (checksums verified)
    mirrors: list[str] = field(default_factory=list)  # base URLs tried in order
    classes: Optional[list[int]] = None  # train on these labels only; null = all
    limit: Optional[int] = None  # the first N training images (after `classes`); null = all


@dataclass
class NoiseConfig:
    dist: str = "normal"  # normal | uniform | stratified (uniform, one sample per stratum)
    dim: Optional[int] = None  # latent dimension; null = the data's dimension
    low: float = -1.0  # range of uniform / stratified noise
    high: float = 1.0
    categories: int = 0  # K > 0: append the one-hot code of a uniform category (discrete latent)


@dataclass
class MLPConfig:
    _target_: str = "gan_cli.models.MLP"
    hidden: list[int] = field(default_factory=lambda: [64, 64])  # widths of the hidden layers
    activation: str = "leaky_relu"  # tanh | relu | leaky_relu | softplus | elu
    dropout: float = 0.0  # dropout probability after each hidden layer
    init_std: Optional[float] = None  # weights ~ N(0, init_std^2), biases 0; null = PyTorch's default


@dataclass
class GeneratorMLPConfig(MLPConfig):
    output_activation: Optional[str] = None  # on G's output, e.g. tanh for images; null = linear


@dataclass
class DiscriminatorMLPConfig(MLPConfig):
    minibatch: str = "none"  # none | stddev | discrimination: a layer comparing samples in a batch
    spectral_norm: bool = False  # divide each weight by its largest singular value
    pack: int = 1  # PacGAN: D judges this many samples at once (1 = off)


@dataclass
class GANModelConfig:
    # class-conditional GAN: G is told which class (a digit, or a mixture's component) to
    # draw, and D judges (sample, label) pairs (with loss.aux_weight > 0, AC-GAN: D guesses it)
    conditional: bool = False


@dataclass
class MLPGANConfig(GANModelConfig):
    generator: GeneratorMLPConfig = field(default_factory=GeneratorMLPConfig)
    discriminator: DiscriminatorMLPConfig = field(default_factory=DiscriminatorMLPConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    # multiply the generator's hidden widths by the number of modes (seed 000's "one-stop" G)
    widths_per_mode: bool = False
    # subtract the data's mean from D's input and add it to G's output
    center: bool = True


@dataclass
class DCGANGeneratorConfig:
    _target_: str = "gan_cli.models.DCGANGenerator"
    width: int = 64  # channels of the last hidden layer (the first has twice as many)
    upsample: str = "transposed"  # transposed | resize_conv (nearest upsampling + 3x3 conv)
    norm: str = "batch"  # batch | virtual_batch (statistics of a fixed reference batch)
    reference_batch: int = 64  # size of virtual batch norm's reference batch


@dataclass
class DCGANDiscriminatorConfig:
    _target_: str = "gan_cli.models.DCGANDiscriminator"
    width: int = 64  # channels of the first convolution (the second has twice as many)
    batch_norm: bool = True  # after the second convolution (never on D's input)
    spectral_norm: bool = False  # divide each weight by its largest singular value
    pack: int = 1  # PacGAN: D judges this many images at once, stacked as channels


@dataclass
class DCGANConfig(GANModelConfig):
    generator: DCGANGeneratorConfig = field(default_factory=DCGANGeneratorConfig)
    discriminator: DCGANDiscriminatorConfig = field(default_factory=DCGANDiscriminatorConfig)
    noise: NoiseConfig = field(default_factory=lambda: NoiseConfig(dist="normal", dim=100))


@dataclass
class LoggerConfig:
    _target_: Optional[str] = None  # the logger class; null = none (CSV/JSON/plots only)
    subdir: str = "tb"  # its folder inside the run folder


@dataclass
class LossConfig:
    _target_: str = MISSING
    label_smoothing: float = 0.0  # one-sided: real target = 1 - label_smoothing (0.1 -> 0.9)
    # AC-GAN: D gets a class head, and both players add aux_weight x its cross-entropy
    # against the labels (needs model.conditional=true); 0 = off
    aux_weight: float = 0.0


@dataclass
class WassersteinConfig(LossConfig):
    _target_: str = "gan_cli.losses.Wasserstein"
    clip: float = 0.01  # every critic weight is clipped to [-clip, clip] after each update


@dataclass
class WassersteinGPConfig(LossConfig):
    _target_: str = "gan_cli.losses.WassersteinGP"
    gp_weight: float = 10.0  # lambda of the gradient penalty
    one_sided: bool = True  # penalise only gradient norms above 1 (false: Gulrajani's two-sided)


@dataclass
class AdamConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 0.0
    fused: bool = True  # one kernel updates every weight (5x faster on CPU); false = PyTorch's loop


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    fused: bool = True  # one kernel updates every weight; false = PyTorch's per-tensor loop


@dataclass
class RMSpropConfig:
    _target_: str = "torch.optim.RMSprop"
    _partial_: bool = True
    lr: float = 5e-5
    alpha: float = 0.99
    momentum: float = 0.0
    weight_decay: float = 0.0
    foreach: bool = True  # few multi-tensor kernels per update (RMSprop has no fused one)


@dataclass
class StepLRConfig:
    """lr x gamma every step_size steps (staircase exponential decay)."""

    _target_: str = "torch.optim.lr_scheduler.StepLR"
    _partial_: bool = True
    step_size: int = 150
    gamma: float = 0.95


@dataclass
class ConstantLRConfig:
    """The learning rate never changes (a no-op scheduler, so every optim preset has one)."""

    _target_: str = "torch.optim.lr_scheduler.ConstantLR"
    _partial_: bool = True
    factor: float = 1.0
    total_iters: int = 0


@dataclass
class ExponentialDecayConfig:
    """lr x final_fraction ** (step / total_steps): smooth decay, ending at final_fraction."""

    _target_: str = "gan_cli.schedules.exponential_decay"
    _partial_: bool = True
    final_fraction: float = 0.03  # lr at the last step, as a fraction of the initial lr
    total_steps: int = II("train.steps")


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_train", node=TrainConfig)
    cs.store(name="base_sample", node=SampleConfig)
    cs.store(group="data", name="base_gaussian", node=GaussianMixtureConfig)
    cs.store(group="data", name="base_evenly_spaced", node=EvenlySpacedConfig)
    cs.store(group="data", name="base_idx_images", node=IDXImagesConfig)
    cs.store(group="model", name="base_mlp", node=MLPGANConfig)
    cs.store(group="model", name="base_dcgan", node=DCGANConfig)
    cs.store(group="loss", name="base_loss", node=LossConfig)
    cs.store(group="loss", name="base_wgan", node=WassersteinConfig)
    cs.store(group="loss", name="base_wgan_gp", node=WassersteinGPConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    for name, node in [("adam", AdamConfig), ("sgd", SGDConfig), ("rmsprop", RMSpropConfig)]:
        cs.store(group="optim/optimizer", name=name, node=node)
    cs.store(group="optim/schedule", name="constant", node=ConstantLRConfig)
    cs.store(group="optim/schedule", name="step", node=StepLRConfig)
    cs.store(group="optim/schedule", name="exp", node=ExponentialDecayConfig)


# ---------------------------------------------------------------- value checks
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
ACTIVATIONS = ("tanh", "relu", "leaky_relu", "softplus", "elu")
NOISE_DISTS = ("normal", "uniform", "stratified")
MINIBATCH_LAYERS = ("none", "stddev", "discrimination")
UPSAMPLING = ("transposed", "resize_conv")
NORMS = ("batch", "virtual_batch")


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UserError(f"{key}={value}: {allowed}")


def _positive(key: str, value: Any, *, integer: bool = False, allow_null: bool = False) -> None:
    if value is None and allow_null:
        return
    ok = isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    _require(ok, key, value, "must be a positive " + ("integer" if integer else "number"))


def validate_train_config(cfg: DictConfig) -> None:
    """Check values that types alone cannot (signs, ranges, names). Raises UserError."""
    _require(bool(DEVICE_PATTERN.match(cfg.device)), "device", cfg.device,
             "allowed: auto, cpu, cuda, cuda:N, mps")
    t = cfg.train
    for key in ("steps", "batch_size", "g_steps", "log_every"):
        _positive(f"train.{key}", t[key], integer=True)
    for key in ("d_steps", "eval_every", "ckpt_every", "keep_checkpoints"):
        _positive(f"train.{key}", t[key], integer=True, allow_null=True)
    if t.ema is not None:
        _require(0.0 <= t.ema < 1.0, "train.ema", t.ema, "must be in [0, 1) or null")
    _require(math.isfinite(t.instance_noise) and t.instance_noise >= 0, "train.instance_noise",
             t.instance_noise, "must be a standard deviation >= 0 (0 = off)")
    _require(t.unroll_steps >= 0, "train.unroll_steps", t.unroll_steps, "must be >= 0 (0 = off)")
    _positive("train.replicas", t.replicas, integer=True)
    _require(t.compile in (True, False, "auto"), "train.compile", t.compile,
             "allowed: true, false, auto")
    e = cfg.eval
    _positive("eval.n_samples", e.n_samples, integer=True)
    _positive("eval.projections", e.projections, integer=True)
    _positive("eval.hq_sigmas", e.hq_sigmas)
    _positive("eval.w1_tol", e.w1_tol, allow_null=True)
    _positive("eval.plot_every", e.plot_every, integer=True, allow_null=True)
    check_rejection(cfg, e.rejection_quantile, "eval.rejection_quantile")

    for who in ("generator", "discriminator"):
        _positive(f"optim.{who}.lr", cfg.optim[who].lr)
    schedule = cfg.optim.get("schedule")
    if schedule is not None and "final_fraction" in schedule:
        _require(0.0 < schedule.final_fraction <= 1.0, "optim.schedule.final_fraction",
                 schedule.final_fraction, "must be in (0, 1]")
    m = cfg.model
    for who in ("generator", "discriminator"):
        node = m[who]
        if "hidden" in node:  # an MLP
            _require(node.activation in ACTIVATIONS, f"model.{who}.activation", node.activation,
                     "allowed: " + ", ".join(ACTIVATIONS))
            _require(0.0 <= node.dropout < 1.0, f"model.{who}.dropout", node.dropout,
                     "must be in [0, 1)")
            _require(all(isinstance(w, int) and w > 0 for w in node.hidden),
                     f"model.{who}.hidden", list(node.hidden),
                     "must be a list of positive integers")
            _positive(f"model.{who}.init_std", node.init_std, allow_null=True)
        if "width" in node:  # a convolutional network
            _positive(f"model.{who}.width", node.width, integer=True)
    g = m.generator
    if "upsample" in g:
        _require(g.upsample in UPSAMPLING, "model.generator.upsample", g.upsample,
                 "allowed: " + ", ".join(UPSAMPLING))
        _require(g.norm in NORMS, "model.generator.norm", g.norm, "allowed: " + ", ".join(NORMS))
        _positive("model.generator.reference_batch", g.reference_batch, integer=True)
        # its reference batch is drawn as N(0, I) over G's whole input: one-hot codes there
        # would be normalised with statistics of inputs G never sees
        _require(g.norm != "virtual_batch" or not (m.get("conditional", False)
                                                    or m.noise.get("categories", 0)),
                 "model.generator.norm", g.norm, "virtual batch norm is not built for "
                 "labels or noise categories: use norm=batch with model.conditional=true or "
                 "model.noise.categories > 0")
    output = m.generator.get("output_activation")
    _require(output is None or output in ACTIVATIONS, "model.generator.output_activation",
             output, "allowed: null (linear), " + ", ".join(ACTIVATIONS))
    d = m.discriminator
    minibatch = d.get("minibatch", "none")
    _require(minibatch in MINIBATCH_LAYERS, "model.discriminator.minibatch", minibatch,
             "allowed: " + ", ".join(MINIBATCH_LAYERS))
    _positive("model.discriminator.pack", d.pack, integer=True)
    _require(t.batch_size % d.pack == 0, "model.discriminator.pack", d.pack,
             f"must divide train.batch_size={t.batch_size} (D judges packs of that many samples)")
    n = m.noise
    _require(n.dist in NOISE_DISTS, "model.noise.dist", n.dist, "allowed: " + ", ".join(NOISE_DISTS))
    _positive("model.noise.dim", n.dim, integer=True, allow_null=True)
    _require(n.categories >= 0, "model.noise.categories", n.categories,
             "must be >= 0 (0 = no discrete latent)")
    _require(n.low < n.high, "model.noise.low", n.low, f"must be below model.noise.high={n.high}")
    _require(0.0 <= cfg.loss.label_smoothing < 0.5, "loss.label_smoothing",
             cfg.loss.label_smoothing, "must be in [0, 0.5)")
    _check_loss_combinations(cfg)
    _check_labels(cfg)
    if t.replicas > 1:
        _check_replica_support(cfg)


def check_rejection(cfg: DictConfig, q: Optional[float], key: str) -> None:
    """Discriminator rejection sampling (q: its quantile, given as `key`; None = off) with
    the run config cfg: it reads D's logit as a log density ratio, one per sample."""
    if q is None:
        return
    _require(isinstance(q, (int, float)) and 0 < q <= 1, key, q,
             "must be in (0, 1] (1 = the exact rule, lower keeps more samples) or null")
    from hydra.utils import get_class

    _require(get_class(cfg.loss._target_).probabilistic, key, q,
             "rejection sampling needs a D whose logit estimates log p_data/p_G: use "
             "loss=nonsaturating, minimax or maxlik")
    _require(cfg.model.discriminator.pack == 1, key, q,
             f"a D that judges packs (model.discriminator.pack="
             f"{cfg.model.discriminator.pack}) has no logit per sample: use pack=1")
    _require(not cfg.model.get("conditional", False), key, q,
             "rejection sampling is not built for a conditional G")


def _check_replica_support(cfg: DictConfig) -> None:
    """Options whose batched form (one computation for R replicas) is not built."""
    unsupported = [
        ("gp_weight" in cfg.loss, "loss=wgan_gp (its gradient penalty)"),
        (cfg.train.unroll_steps > 0, f"train.unroll_steps={cfg.train.unroll_steps}"),
        (cfg.model.discriminator.get("spectral_norm", False),
         "model.discriminator.spectral_norm=true"),
        ("width" in cfg.model.generator, "a convolutional model (model=dcgan)"),
    ]
    for found, what in unsupported:
        _require(not found, "train.replicas", cfg.train.replicas,
                 f"{what} cannot run batched: use train.replicas=1 and sweep the seeds "
                 f"instead (gan-train -m seed=0,1,2,...)")


def _check_labels(cfg: DictConfig) -> None:
    """model.conditional and AC-GAN's loss.aux_weight (gan_cli/labels.py)."""
    aux = cfg.loss.get("aux_weight", 0.0)
    _require(math.isfinite(aux) and aux >= 0, "loss.aux_weight", aux,
             "must be a weight >= 0 (0 = no auxiliary classifier)")
    if not cfg.model.get("conditional", False):
        _require(aux == 0, "loss.aux_weight", aux, "AC-GAN needs a G told which class to "
                 "draw: add model.conditional=true (or set loss.aux_weight=0)")
        return
    _require(cfg.train.unroll_steps == 0, "train.unroll_steps", cfg.train.unroll_steps,
             "unrolling is not built for conditional GANs: use 0 with model.conditional=true")
    if aux:
        pack = cfg.model.discriminator.pack
        _require(pack == 1, "model.discriminator.pack", pack, "AC-GAN's D classifies each "
                 "sample, so it cannot judge packs: use pack=1 with loss.aux_weight > 0")


def _check_loss_combinations(cfg: DictConfig) -> None:
    """Objectives that rule out an optimizer or a discriminator layer (WGAN papers)."""
    loss = cfg.loss
    if "clip" in loss:
        _positive("loss.clip", loss.clip)
        opt = cfg.optim.discriminator
        momentum = opt.betas[0] if "betas" in opt else opt.get("momentum", 0.0)
        _require(momentum == 0, "optim.discriminator", opt._target_.rsplit(".", 1)[-1] +
                 f" with momentum {momentum}", "loss=wgan clips the critic's weights, which "
                 "momentum makes unstable (Arjovsky et al.); use optim=rmsprop (the loss's own "
                 "preset), momentum 0, or loss=wgan_gp")
    if "gp_weight" in loss:
        _positive("loss.gp_weight", loss.gp_weight)
        # the penalty constrains D's gradient per sample: a D that mixes the samples of a
        # batch (batch norm, minibatch layers) has no per-sample gradient (Gulrajani et al.)
        d = cfg.model.discriminator
        minibatch = d.get("minibatch", "none")
        _require(minibatch == "none", "model.discriminator.minibatch", minibatch,
                 "loss=wgan_gp needs a D that judges each sample alone: use minibatch=none")
        _require(not d.get("batch_norm", False), "model.discriminator.batch_norm", True,
                 "loss=wgan_gp needs a D that judges each sample alone: set it to false "
                 "(Gulrajani et al. drop batch norm from the critic)")
