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
class Balance:
    """Adaptive instance noise against a D that wins (gan_cli/step.py, `Balance`): while D's
    accuracy on the step's batch is above `target`, the std of the noise added to D's
    inputs (on top of train.instance_noise's) grows by `rate` per step, and while it is
    below, shrinks by `rate`, within [0, max_noise] (stylegan2-ada's adaptive p)."""

    target: Optional[float] = None  # D's accuracy (the mean of d_acc_real and d_acc_fake) to hold D at, in (0.5, 1); null = off
    rate: float = 0.001  # change of the added noise std per step, in data units (0.001: 0 -> 0.5 in 500 steps)
    max_noise: float = 1.0  # the added noise std never exceeds this (data units)


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
    # dtype of the networks' forward passes: fp32 | bf16 (CPU with AMX/AVX-512-BF16, or GPU) | fp16 (GPU, with a gradient scaler); losses, penalties, statistics and the checkpoint's weights stay fp32
    precision: str = "fp32"
    replicas: int = 1  # independent GANs (seeds seed..seed+R-1) trained as one batched computation
    # the whole step as one torch.compile graph: true | false | auto (= true when at least
    # gan_cli.compiled.AUTO_MIN_STEPS steps remain, so that the ~30 s compile pays; never
    # for convolutional networks on the CPU, whose compiled step is no faster)
    compile: Any = "auto"
    # updates fitting D's output to the data's true density by MSE before the game (aylien's
    # January 2017 pre-training; gan_cli/pretrain.py); Gaussian mixtures only; 0 = off
    d_pretrain_steps: int = 0
    balance: Balance = field(default_factory=Balance)


@dataclass
class Eval:
    n_samples: int = 10_000  # generated and fresh real samples per evaluation
    w1_tol: Optional[float] = None  # w1 below which a run counts as converged; null = 0.2 x mean std
    projections: int = 256  # random directions for the sliced W1 in more than one dimension
    hq_sigmas: float = 3.0  # "high quality": within this many std of the nearest mode
    # mode_spread = the worst covered mode's min(r, 1/r), r = G's std / the real std there
    # (per dimension): 1 = every mode as wide as the data's, 0 = squeezed to a point
    spread_tol: float = 0.8  # mode_spread a run needs to count as converged
    plots: bool = True  # write per-evaluation pictures and training.gif
    plot_every: Optional[int] = None  # steps between those pictures; null = every evaluation
    # discriminator rejection sampling: evaluate only the samples D lets through, each kept
    # with probability min(1, exp(logit - the logits' q-quantile)) (gan_cli/rejection.py)
    rejection_quantile: Optional[float] = None  # q in (0, 1]; null = off
    # point sets and unlabelled image folders (gan_cli/point_metrics.py), in standardised units
    knn_k: int = 5  # k of the k-NN precision, recall, density and coverage (Naeem et al.: 5)
    bins: int = 20  # k-means cells of the training points for bin_mass / bin_kl
    # converged once precision and recall reach this fraction of their real-vs-real floors
    floor_fraction: float = 0.9
    # image data: FID and KID (gan_cli/inception.py, torchmetrics + torch-fidelity) with the
    # Inception v3 weights in this local file (torch-fidelity's weights-inception-2015-12-05
    # .pth, downloaded beforehand); null = off
    inception_weights: Optional[str] = None
    # G's and real held-out images per FID/KID (Inception runs at 299 x 299: about 0.1-1 s
    # per image on a CPU); FID is biased upwards at small counts: compare equal counts
    inception_samples: int = 1000


@dataclass
class TrainConfig:
    seed: int = 0  # seeds torch, numpy and random
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps ; auto = cuda, then mps, then cpu
    resume: Optional[str] = None  # run folder (or .pt) to continue; null = a fresh run
    deterministic: bool = False  # deterministic kernels only (matters on CUDA; slower there)
    # CUDA matrix products and cuDNN convolutions on TF32 tensor cores (Ampere and newer:
    # several times faster, 10-bit mantissa); false = full fp32. Ignored off CUDA
    tf32: bool = False
    threads: Optional[int] = None  # torch CPU threads; null = auto: 1 for small networks, else the launcher's share of the cores
    train: TrainLoop = field(default_factory=TrainLoop)
    eval: Eval = field(default_factory=Eval)
    data: Any = MISSING
    model: Any = MISSING
    loss: Any = MISSING
    optim: Any = MISSING
    logger: Any = MISSING  # live view beside the CSV/JSON files: none | tensorboard | mlflow | wandb
    experiment: Any = None  # set by experiment=<name> (overrides only)
    print_config: bool = True  # show the composed config as a tree before training


@dataclass
class SampleConfig:
    ckpt: str = MISSING  # run folder or checkpoint file
    n: int = 1000  # number of samples
    out: str = "samples.npy"  # .npy (raw samples) or .png (a picture of them)
    seed: int = 0  # seeds the noise the samples are drawn from
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps ; auto = cuda, then mps, then cpu
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
class PointsConfig:
    """Your own (N, d) point set from .npy / .npz / .csv / .txt (gan_cli/data/points.py)."""

    _target_: str = "gan_cli.data.points.PointSet"
    path: str = MISSING  # the file; relative paths are from the folder gan-train starts in
    key: Optional[str] = None  # .npz: which array; null = its only one
    columns: Optional[list[Any]] = None  # feature columns (0-based numbers or CSV header names); null = all but the label
    label_column: Optional[Any] = None  # column of class labels (number or name) for conditional GANs; null = none
    max_classes: int = 100  # more distinct labels than this are refused (a wrong label column?)
    holdout: float = 0.1  # share of the points held out for evaluation, in (0, 1)
    split_seed: int = 0  # seeds the held-out split (fixed, so runs of any seed share it)


@dataclass
class ImageFolderConfig:
    """Your own images: PNG/JPEG/BMP files in DIR (flat) or DIR/<class>/ (gan_cli/data/image_folder.py)."""

    _target_: str = "gan_cli.data.image_folder.ImageFolder"
    path: str = MISSING  # the folder
    size: int = 28  # images are resized (shorter side) and centre-cropped to size x size pixels
    channels: int = 1  # 1 = greyscale, 3 = RGB (converted as asked)
    max_classes: int = 100  # more class subfolders than this are refused
    holdout: float = 0.1  # share of the images held out for evaluation, in (0, 1)
    split_seed: int = 0  # seeds the held-out split
    cache: Optional[str] = None  # folder of the decoded uint8 cache; null = <user cache>/gan_cli/image_folder


@dataclass
class NoiseConfig:
    dist: str = "normal"  # normal | uniform | stratified (uniform, one sample per stratum)
    dim: Optional[int] = None  # latent dimension; null = the data's dimension
    low: float = -1.0  # lower end of uniform / stratified noise
    high: float = 1.0  # upper end of uniform / stratified noise
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
class MLflowLoggerConfig:
    _target_: Optional[str] = None  # set by conf/logger/mlflow.yaml
    # where runs go; null = $MLFLOW_TRACKING_URI, else sqlite:///<working dir>/mlflow.db
    # with artifacts in <working dir>/mlruns/
    tracking_uri: Optional[str] = None
    experiment: Optional[str] = None  # null = the sweep folder for -m jobs, else "gan-train"


@dataclass
class WandbLoggerConfig:
    _target_: Optional[str] = None  # set by conf/logger/wandb.yaml
    project: str = "gan-cli"  # the W&B project the runs go to
    entity: Optional[str] = None  # team or user; null = the logged-in user's default
    group: Optional[str] = None  # null = the sweep folder for -m jobs, else no group
    # online | offline | disabled; null = $WANDB_MODE, else online when logged in, else offline
    mode: Optional[str] = None


@dataclass
class LossConfig:
    _target_: str = MISSING
    label_smoothing: float = 0.0  # one-sided: real target = 1 - label_smoothing (0.1 -> 0.9)
    # AC-GAN: D gets a class head, and both players add aux_weight x its cross-entropy
    # against the labels (needs model.conditional=true); 0 = off
    aux_weight: float = 0.0
    # R1 gradient penalty (Mescheder et al. 2018): D's loss adds r1_gamma / 2 x the mean
    # over the real batch of |grad_x D(x)|^2 (x in data units); 0 = off
    r1_gamma: float = 0.0


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
    lr: float = 2e-4  # learning rate (step size per update)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # decay of the gradient's running mean and square
    weight_decay: float = 0.0  # L2 penalty coefficient; 0 = off
    fused: bool = True  # one kernel updates every weight (5x faster on CPU); false = PyTorch's loop


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.01  # learning rate (step size per update)
    momentum: float = 0.0  # fraction of the last update carried into the next; 0 = plain SGD
    nesterov: bool = False  # Nesterov momentum (needs momentum > 0)
    weight_decay: float = 0.0  # L2 penalty coefficient; 0 = off
    fused: bool = True  # one kernel updates every weight; false = PyTorch's per-tensor loop


@dataclass
class RMSpropConfig:
    _target_: str = "torch.optim.RMSprop"
    _partial_: bool = True
    lr: float = 5e-5  # learning rate (step size per update)
    alpha: float = 0.99  # decay of the running mean of squared gradients
    momentum: float = 0.0  # fraction of the last update carried into the next; 0 = off
    weight_decay: float = 0.0  # L2 penalty coefficient; 0 = off
    foreach: bool = True  # few multi-tensor kernels per update (RMSprop has no fused one)


@dataclass
class StepLRConfig:
    """lr x gamma every step_size steps (staircase exponential decay)."""

    _target_: str = "torch.optim.lr_scheduler.StepLR"
    _partial_: bool = True
    step_size: int = 150  # steps between two decays
    gamma: float = 0.95  # lr factor at each decay


@dataclass
class ConstantLRConfig:
    """The learning rate never changes (a no-op scheduler, so every optim preset has one)."""

    _target_: str = "torch.optim.lr_scheduler.ConstantLR"
    _partial_: bool = True
    factor: float = 1.0  # lr multiplier (1 = unchanged)
    total_iters: int = 0  # steps it applies for (0 = none: the lr never changes)


@dataclass
class ExponentialDecayConfig:
    """lr x final_fraction ** (step / total_steps): smooth decay, ending at final_fraction."""

    _target_: str = "gan_cli.schedules.exponential_decay"
    _partial_: bool = True
    final_fraction: float = 0.03  # lr at the last step, as a fraction of the initial lr
    total_steps: int = II("train.steps")  # steps over which it decays; default train.steps


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_train", node=TrainConfig)
    cs.store(name="base_sample", node=SampleConfig)
    cs.store(group="data", name="base_gaussian", node=GaussianMixtureConfig)
    cs.store(group="data", name="base_evenly_spaced", node=EvenlySpacedConfig)
    cs.store(group="data", name="base_idx_images", node=IDXImagesConfig)
    cs.store(group="data", name="base_points", node=PointsConfig)
    cs.store(group="data", name="base_image_folder", node=ImageFolderConfig)
    cs.store(group="model", name="base_mlp", node=MLPGANConfig)
    cs.store(group="model", name="base_dcgan", node=DCGANConfig)
    cs.store(group="loss", name="base_loss", node=LossConfig)
    cs.store(group="loss", name="base_wgan", node=WassersteinConfig)
    cs.store(group="loss", name="base_wgan_gp", node=WassersteinGPConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    cs.store(group="logger", name="base_mlflow", node=MLflowLoggerConfig)
    cs.store(group="logger", name="base_wandb", node=WandbLoggerConfig)
    for name, node in [("adam", AdamConfig), ("sgd", SGDConfig), ("rmsprop", RMSpropConfig)]:
        cs.store(group="optim/optimizer", name=name, node=node)
    cs.store(group="optim/schedule", name="constant", node=ConstantLRConfig)
    cs.store(group="optim/schedule", name="step", node=StepLRConfig)
    cs.store(group="optim/schedule", name="exp", node=ExponentialDecayConfig)
    from gan_cli.suggest import refuse_undeclared_additions

    # `+train.step=1` must not run with the key ignored
    refuse_undeclared_additions((TrainConfig, SampleConfig))


# ---------------------------------------------------------------- value checks
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
ACTIVATIONS = ("tanh", "relu", "leaky_relu", "softplus", "elu")
NOISE_DISTS = ("normal", "uniform", "stratified")
MINIBATCH_LAYERS = ("none", "stddev", "discrimination")
UPSAMPLING = ("transposed", "resize_conv")
NORMS = ("batch", "virtual_batch")
WANDB_MODES = ("online", "offline", "disabled")
PRECISIONS = ("fp32", "bf16", "fp16")  # train.precision (the dtypes: device.PRECISIONS)


# Upper limits: a value beyond them cannot be meant, and would exhaust memory or time or
# overflow float32 training (a 10^12 batch, 10^12 D steps per step, lr 1e300) instead of
# being refused here with the limit
MAX_STEPS = 10**9  # train.steps (a year at 30 steps/s)
MAX_BATCH = 65_536  # train.batch_size, model.generator.reference_batch
MAX_UPDATES = 1000  # train.d_steps, g_steps, unroll_steps: updates per step
MAX_REPLICAS = 1024  # train.replicas
MAX_EVAL_SAMPLES = 1_000_000  # eval.n_samples, and gan-sample's n
MAX_PROJECTIONS = 4096  # eval.projections
MAX_EVAL_WORK = 10**8  # eval.n_samples x eval.projections: the sliced W1 holds 4 such matrices
MAX_WIDTH = 65_536  # MLP hidden widths, noise dimension and categories
MAX_CONV_WIDTH = 4096  # DCGAN channel widths
# data values, noise range, instance noise: float32 holds 7 digits, so a mode at 1e7
# could not have a std of 1
MAX_MAGNITUDE = 1e6
# learning rates, weight decays, loss weights, init stds, WGAN's clip: a larger number
# cannot scale a float32 tensor (torch raises an overflow error mid-step); large ones
# below it are legal, and a run they make diverge stops as diverged (exit code 1)
FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max
MAX_THREADS = 1024  # threads (torch crashes on absurd counts)
MAX_SEED = 2**63 - 2**32  # seed (torch takes 64-bit seeds; replicas and evaluation add to it)


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UserError(f"{key}={value}: {allowed}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(key: str, value: Any, *, integer: bool = False, allow_null: bool = False,
              at_most: Optional[float] = None) -> None:
    if value is None and allow_null:
        return
    ok = _is_number(value) and math.isfinite(value) and value > 0 and (
        at_most is None or value <= at_most)
    too_big = _is_number(value) and at_most is not None and value > at_most
    _require(ok, key, value, f"must be at most {at_most:g}" if too_big else
             "must be a positive " + ("integer" if integer else "number"))


def _within(key: str, value: Any, low: float, high: float, *, low_open: bool = False,
            high_open: bool = False, allow_null: bool = False, note: str = "") -> None:
    """low <= value <= high (or < at an open end); NaN, infinities and null are refused
    unless allow_null."""
    if value is None and allow_null:
        return
    ok = _is_number(value) and not math.isnan(value) and \
        (low < value if low_open else low <= value) and \
        (value < high if high_open else value <= high)
    if high >= FLOAT32_MAX:  # no real upper limit: say the lower one
        bound = f"must be {'>' if low_open else '>='} {low:g} and a finite float32 number"
    else:
        bound = f"must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    _require(ok, key, value, bound + (" or null" if allow_null else "") + note)


def check_seed(key: str, seed: Any) -> None:
    _require(isinstance(seed, int) and 0 <= seed <= MAX_SEED, key, seed,
             f"must be an integer in [0, {MAX_SEED}]")


def check_threads(threads: Any) -> None:
    """The `threads` key: torch's CPU threads, or null (auto)."""
    _require(threads is None or (isinstance(threads, int) and 1 <= threads <= MAX_THREADS),
             "threads", threads, f"must be a positive integer, or null (auto); at most "
             f"{MAX_THREADS}")


def validate_sample_config(cfg: DictConfig) -> None:
    """gan-sample's values that need no checkpoint to judge. Raises UserError."""
    _require(isinstance(cfg.n, int) and 1 <= cfg.n <= MAX_EVAL_SAMPLES, "n", cfg.n,
             f"must be a positive integer of at most {MAX_EVAL_SAMPLES}")
    check_seed("seed", cfg.get("seed", 0))
    _within("rejection_quantile", cfg.get("rejection_quantile"), 0, 1, low_open=True,
            allow_null=True)  # (a config built by hand may leave the optional keys out)


def validate_train_config(cfg: DictConfig) -> None:
    """Check values that types alone cannot (signs, ranges, names). Raises UserError."""
    _require(bool(DEVICE_PATTERN.match(cfg.device)), "device", cfg.device,
             "allowed: auto, cpu, cuda, cuda:N, mps")
    check_seed("seed", cfg.seed)
    check_threads(cfg.get("threads"))
    _check_train_loop(cfg.train)
    _check_eval(cfg)
    _check_optim(cfg.optim)
    _check_model(cfg)
    _require(0.0 <= cfg.loss.label_smoothing < 0.5, "loss.label_smoothing",
             cfg.loss.label_smoothing, "must be in [0, 0.5)")
    _check_loss_combinations(cfg)
    _check_r1(cfg)
    _check_labels(cfg)
    if cfg.train.replicas > 1:
        _check_replica_support(cfg)


def _check_train_loop(t: DictConfig) -> None:
    _positive("train.steps", t.steps, integer=True, at_most=MAX_STEPS)
    _positive("train.batch_size", t.batch_size, integer=True, at_most=MAX_BATCH)
    _positive("train.g_steps", t.g_steps, integer=True, at_most=MAX_UPDATES)
    _positive("train.d_steps", t.d_steps, integer=True, allow_null=True, at_most=MAX_UPDATES)
    _positive("train.log_every", t.log_every, integer=True)
    for key in ("eval_every", "ckpt_every", "keep_checkpoints"):
        _positive(f"train.{key}", t[key], integer=True, allow_null=True)
    _within("train.ema", t.ema, 0, 1, high_open=True, allow_null=True)
    _require(t.precision in PRECISIONS, "train.precision", t.precision,
             f"allowed: {', '.join(PRECISIONS)}")
    _within("train.instance_noise", t.instance_noise, 0, MAX_MAGNITUDE,
            note=" (a standard deviation; 0 = off)")
    _within("train.unroll_steps", t.unroll_steps, 0, MAX_UPDATES, note=" (0 = off)")
    _positive("train.replicas", t.replicas, integer=True, at_most=MAX_REPLICAS)
    _within("train.d_pretrain_steps", t.d_pretrain_steps, 0, MAX_STEPS, note=" (0 = off)")
    _require(t.compile in (True, False, "auto"), "train.compile", t.compile,
             "allowed: true, false, auto")
    b = t.balance
    _within("train.balance.target", b.target, 0.5, 1, low_open=True, high_open=True,
            allow_null=True, note=" (D's accuracy to hold it at; null = off)")
    _positive("train.balance.rate", b.rate, at_most=MAX_MAGNITUDE)
    _positive("train.balance.max_noise", b.max_noise, at_most=MAX_MAGNITUDE)


def _check_eval(cfg: DictConfig) -> None:
    e = cfg.eval
    _positive("eval.n_samples", e.n_samples, integer=True, at_most=MAX_EVAL_SAMPLES)
    _positive("eval.projections", e.projections, integer=True, at_most=MAX_PROJECTIONS)
    _require(e.n_samples * e.projections <= MAX_EVAL_WORK, "eval.projections", e.projections,
             f"times eval.n_samples={e.n_samples} must be at most {MAX_EVAL_WORK:g} (the "
             "sliced W1 projects every sample on every direction at once, in memory)")
    _positive("eval.hq_sigmas", e.hq_sigmas)
    _require(0 <= e.spread_tol <= 1, "eval.spread_tol", e.spread_tol,
             "must be in [0, 1] (1 = every mode exactly as wide as the data's; 0 = off)")
    _positive("eval.w1_tol", e.w1_tol, allow_null=True)
    _positive("eval.plot_every", e.plot_every, integer=True, allow_null=True)
    _positive("eval.knn_k", e.knn_k, integer=True)
    _positive("eval.bins", e.bins, integer=True)
    _require(0 < e.floor_fraction <= 1, "eval.floor_fraction", e.floor_fraction, "must be in (0, 1]")
    n_inception = e.get("inception_samples", 1000)  # older runs' configs lack it
    _positive("eval.inception_samples", n_inception, integer=True, at_most=MAX_EVAL_SAMPLES)
    _require(n_inception >= 2, "eval.inception_samples", n_inception,
             "must be at least 2 (FID fits a covariance to the features)")
    check_rejection(cfg, e.rejection_quantile, "eval.rejection_quantile")
    mode = cfg.logger.get("mode")  # logger=wandb's
    _require(mode is None or mode in WANDB_MODES, "logger.mode", mode,
             "allowed: null (WANDB_MODE, else online when logged in), " + ", ".join(WANDB_MODES))


def _check_optim(optim: DictConfig) -> None:
    """The ranges torch's optimizers and schedulers accept, checked before they are built
    (build.py names the node for anything else they refuse)."""
    for who in ("generator", "discriminator"):
        node, key = optim[who], f"optim.{who}"
        _positive(f"{key}.lr", node.lr, at_most=FLOAT32_MAX)
        _within(f"{key}.weight_decay", node.get("weight_decay", 0.0), 0, FLOAT32_MAX)
        betas = node.get("betas")
        _require(betas is None or (len(betas) == 2 and all(
            _is_number(b) and 0 <= b < 1 for b in betas)), f"{key}.betas",
            betas if betas is None else list(betas), "must be two numbers in [0, 1): "
            "[beta1, beta2], the decays of Adam's moment averages")
        _within(f"{key}.momentum", node.get("momentum", 0.0), 0, 1, high_open=True)
        _within(f"{key}.alpha", node.get("alpha", 0.99), 0, 1)
    s = optim.get("schedule")
    if s is None:
        return
    if "final_fraction" in s:
        _within("optim.schedule.final_fraction", s.final_fraction, 0, 1, low_open=True)
        _positive("optim.schedule.total_steps", s.total_steps, integer=True)
    if "gamma" in s:
        _within("optim.schedule.gamma", s.gamma, 0, 1, low_open=True,
                note=" (the factor applied every step_size steps)")
        _positive("optim.schedule.step_size", s.step_size, integer=True)
    if "factor" in s:
        _within("optim.schedule.factor", s.factor, 0, 1, low_open=True)
        _require(s.total_iters >= 0, "optim.schedule.total_iters", s.total_iters,
                 "must be >= 0")


def _check_model(cfg: DictConfig) -> None:
    m = cfg.model
    for who in ("generator", "discriminator"):
        node = m[who]
        if "hidden" in node:  # an MLP
            _require(node.activation in ACTIVATIONS, f"model.{who}.activation", node.activation,
                     "allowed: " + ", ".join(ACTIVATIONS))
            _within(f"model.{who}.dropout", node.dropout, 0, 1, high_open=True)
            _require(all(isinstance(w, int) and 0 < w <= MAX_WIDTH for w in node.hidden),
                     f"model.{who}.hidden", list(node.hidden),
                     f"must be a list of positive integers of at most {MAX_WIDTH}")
            _positive(f"model.{who}.init_std", node.init_std, allow_null=True,
                      at_most=FLOAT32_MAX)
        if "width" in node:  # a convolutional network
            _positive(f"model.{who}.width", node.width, integer=True, at_most=MAX_CONV_WIDTH)
    g = m.generator
    if "upsample" in g:
        _require(g.upsample in UPSAMPLING, "model.generator.upsample", g.upsample,
                 "allowed: " + ", ".join(UPSAMPLING))
        _require(g.norm in NORMS, "model.generator.norm", g.norm, "allowed: " + ", ".join(NORMS))
        _positive("model.generator.reference_batch", g.reference_batch, integer=True,
                  at_most=MAX_BATCH)
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
    batch = cfg.train.batch_size
    _positive("model.discriminator.pack", d.pack, integer=True)
    _require(batch % d.pack == 0, "model.discriminator.pack", d.pack,
             f"must divide train.batch_size={batch} (D judges packs of that many samples)")
    n = m.noise
    _require(n.dist in NOISE_DISTS, "model.noise.dist", n.dist, "allowed: " + ", ".join(NOISE_DISTS))
    _positive("model.noise.dim", n.dim, integer=True, allow_null=True, at_most=MAX_WIDTH)
    _within("model.noise.categories", n.categories, 0, MAX_WIDTH,
            note=" (0 = no discrete latent)")
    for end in ("low", "high"):
        _within(f"model.noise.{end}", n[end], -MAX_MAGNITUDE, MAX_MAGNITUDE)
    _require(n.low < n.high, "model.noise.low", n.low, f"must be below model.noise.high={n.high}")


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
        ("path" in cfg.data, "your own data (data=points, data=image_folder)"),
    ]
    for found, what in unsupported:
        _require(not found, "train.replicas", cfg.train.replicas,
                 f"{what} cannot run batched: use train.replicas=1 and sweep the seeds "
                 f"instead (gan-train -m seed=0,1,2,...)")


def _check_labels(cfg: DictConfig) -> None:
    """model.conditional and AC-GAN's loss.aux_weight (gan_cli/labels.py)."""
    aux = cfg.loss.get("aux_weight", 0.0)
    _within("loss.aux_weight", aux, 0, FLOAT32_MAX, note=" (0 = no auxiliary classifier)")
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


def _check_r1(cfg: DictConfig) -> None:
    gamma = cfg.loss.get("r1_gamma", 0.0)
    _within("loss.r1_gamma", gamma, 0, FLOAT32_MAX, note=" (0 = off)")
    # the penalty's own D pass runs inside a gradient transform (torch.func.grad), which
    # cannot update batch norm's running statistics in place
    _require(not (gamma and cfg.model.discriminator.get("batch_norm", False)),
             "model.discriminator.batch_norm", True, "loss.r1_gamma > 0 needs a D without "
             "batch norm: set it to false (StyleGAN's D, which R1 is used with, has none)")


def _check_loss_combinations(cfg: DictConfig) -> None:
    """Objectives that rule out an optimizer or a discriminator layer (WGAN papers)."""
    loss = cfg.loss
    if "clip" in loss:
        _positive("loss.clip", loss.clip, at_most=FLOAT32_MAX)
        opt = cfg.optim.discriminator
        momentum = opt.betas[0] if "betas" in opt else opt.get("momentum", 0.0)
        _require(momentum == 0, "optim.discriminator", opt._target_.rsplit(".", 1)[-1] +
                 f" with momentum {momentum}", "loss=wgan clips the critic's weights, which "
                 "momentum makes unstable (Arjovsky et al.); use optim=rmsprop (the loss's own "
                 "preset), momentum 0, or loss=wgan_gp")
    if "gp_weight" in loss:
        _positive("loss.gp_weight", loss.gp_weight, at_most=FLOAT32_MAX)
        # the penalty constrains D's gradient per sample: a D that mixes the samples of a
        # batch (batch norm, minibatch layers) has no per-sample gradient (Gulrajani et al.)
        d = cfg.model.discriminator
        minibatch = d.get("minibatch", "none")
        _require(minibatch == "none", "model.discriminator.minibatch", minibatch,
                 "loss=wgan_gp needs a D that judges each sample alone: use minibatch=none")
        _require(not d.get("batch_norm", False), "model.discriminator.batch_norm", True,
                 "loss=wgan_gp needs a D that judges each sample alone: set it to false "
                 "(Gulrajani et al. drop batch norm from the critic)")
