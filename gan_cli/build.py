"""Turn the composed config into objects: the one place that calls hydra's instantiate.

Derived values (data dimension, number of modes) are injected here, so no
YAML file writes them twice.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from gan_cli.config import validate_train_config
from gan_cli.device import describe_device, pick_device  # noqa: F401 (moved; re-exported)
from gan_cli.errors import UserError
from gan_cli.labels import Conditioning
from gan_cli.models import Affine, NoisePrior, Pack, Shift, spectral_normalise
from gan_cli.pretrain import check_pretraining
from gan_cli.replicas import Replicas, ReplicaRuns, SingleRun, copy_of_global_generator


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# a config value shown in an error message is cut to this many characters (a 25-mode
# grid's means would fill the screen)
_SHOWN_CHARS = 60


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS - 3] + "..."


def _settings(node: Any) -> str:
    """A config node as ' (target: k=v, ...)', its values cut short; '' for no node."""
    if node is None:
        return ""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if not isinstance(node, dict):
        return f"={_shown(node)}"
    target = node.get("_target_")
    values = ", ".join(f"{k}={_shown(v)}" for k, v in node.items() if not k.startswith("_"))
    return f" ({target}: {values})" if target else f" ({values})"


def _root_cause(e: BaseException) -> BaseException:
    """What hydra's InstantiationException wraps: the error the class itself raised."""
    while isinstance(e, InstantiationException) and e.__cause__ is not None:
        e = e.__cause__
    return e


@contextmanager
def refusals_named(key: str, node: Any = None) -> Iterator[None]:
    """Any error raised while the config node at `key` is built or first used (by our code,
    torch, Hydra, numpy or Pillow) becomes a UserError naming the key and its values, so
    that a value a library refuses is reported like one our own checks refuse."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:  # KeyboardInterrupt is not an Exception: it goes through
        cause = _root_cause(e)
        if isinstance(cause, UserError):
            raise cause from None
        why = " ".join(str(cause).split()) or type(cause).__name__  # one line
        raise UserError(f"{key}{_settings(node)}: {why}") from e


def instantiate(node: Any, key: str, **kwargs: Any) -> Any:
    """hydra's instantiate, with a bad node reported as a UserError naming its config key."""
    with refusals_named(key, node):
        return hydra_instantiate(node, **kwargs)


def build_data(data_cfg: DictConfig, device: torch.device) -> Any:
    """The data source: a GaussianMixture, IDXImages, PointSet or ImageFolder (gan_cli/data/)."""
    if "_target_" in data_cfg and OmegaConf.is_missing(data_cfg, "path"):  # your own data
        raise UserError("data.path: missing; give the file (data=points) or folder "
                        "(data=image_folder) to train on, e.g. data.path=~/moons.csv")
    return instantiate(data_cfg, "data", device=device, _convert_="all")


@dataclass
class Models:
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    noise: NoisePrior


def build_conditioning(model_cfg: DictConfig, loss_cfg: DictConfig, data: Any) -> Conditioning:
    """How labels enter the game (see gan_cli/labels.py); Conditioning() = not at all."""
    if not model_cfg.get("conditional", False):
        return Conditioning()
    if not getattr(data, "n_classes", 0):  # your own data without labels
        raise UserError("model.conditional=true needs labelled data: give data.label_column "
                        "(data=points) or class subfolders (data=image_folder)")
    with refusals_named("model.conditional", True):
        return Conditioning(data.n_classes, aux_weight=loss_cfg.get("aux_weight", 0.0))


def build_models(model_cfg: DictConfig, data: Any, device: torch.device,
                 conditioning: Conditioning = Conditioning()) -> Models:
    g_cfg = OmegaConf.to_container(model_cfg.generator)
    if model_cfg.get("widths_per_mode", False):
        if not hasattr(data, "n_modes"):
            raise UserError("model.widths_per_mode=true needs mixture data (it scales G's "
                            "widths by the number of modes); set it to false")
        g_cfg["hidden"] = [w * data.n_modes for w in g_cfg["hidden"]]
    noise_cfg = OmegaConf.to_container(model_cfg.noise)
    noise_cfg["dim"] = noise_cfg["dim"] or data.dim
    shape = list(data.shape)  # one sample's: [d], or [C, H, W] for images
    labels = conditioning  # a conditional G's input is z and a label's one-hot code
    with refusals_named("model.noise", noise_cfg):
        noise = NoisePrior(**noise_cfg, device=device)
    generator = instantiate(g_cfg, "model.generator", out_dim=shape, _convert_="all",
                            in_dim=noise.width + labels.generator_extra_inputs)
    d_cfg = OmegaConf.to_container(model_cfg.discriminator)
    # PacGAN and spectral norm wrap any discriminator, so they are applied here
    pack, spectral_norm = d_cfg.pop("pack", 1), d_cfg.pop("spectral_norm", False)
    # a sample with its label's code (more features, or more channels of an image), m
    # of them side by side (or stacked as channels) when packed
    packed = [pack * (shape[0] + labels.discriminator_extra_inputs), *shape[1:]]
    discriminator = instantiate(d_cfg, "model.discriminator", in_dim=packed, _convert_="all",
                                out_dim=1 + labels.discriminator_extra_outputs)
    with refusals_named("model.discriminator", d_cfg):
        if spectral_norm:
            discriminator = spectral_normalise(discriminator)
        if pack > 1:
            discriminator = torch.nn.Sequential(Pack(pack), discriminator)
    if model_cfg.get("center", False) and len(shape) == 1:  # (images are already in [-1, 1])
        # the networks see the data centred on 0, where their layers' initial kinks lie:
        # without it, D is nearly linear around N(4, 0.5) and cannot tell G's too-narrow
        # output from the real spread (w1 0.24 instead of 0.03 on data=unimodal)
        mean = data.mean.cpu()  # (d,)
        label_code = torch.zeros(labels.discriminator_extra_inputs)  # (K,) or (0,): unshifted
        scale = getattr(data, "scale", None)  # your own points: (d,) std; a mixture: centred only
        if scale is None:
            generator = torch.nn.Sequential(generator, Shift(mean))
            discriminator = torch.nn.Sequential(Shift(torch.cat([-mean, label_code])),
                                                discriminator)
        else:  # standardised: G's output is mapped back to the data's units inside G
            scale = scale.cpu()
            generator = torch.nn.Sequential(generator, Affine(scale, mean))
            discriminator = torch.nn.Sequential(Affine(
                torch.cat([1 / scale, torch.ones_like(label_code)]),
                torch.cat([-mean / scale, label_code])), discriminator)
    with refusals_named("model"):  # e.g. no memory left on the device for the weights
        return Models(generator.to(device), discriminator.to(device), noise)


def build_replicas(model_cfg: DictConfig, data: Any, device: torch.device,
                   seeds: Sequence[int], conditioning: Conditioning = Conditioning()
                   ) -> tuple[Models, list[torch.Generator]]:
    """Networks stacked from one build per seed (train.replicas), each replica's weights
    those a single run with its seed starts from; and per replica a generator in the
    state that run's global generator is in when its loop begins."""
    copies, generators = [], []
    for seed in seeds:
        seed_everything(seed)
        copies.append(build_models(model_cfg, data, device, conditioning))
        generators.append(copy_of_global_generator(device))
    with refusals_named("train.replicas", len(seeds)):  # e.g. no memory for the stack
        stacked = Models(Replicas([m.generator for m in copies]),
                         Replicas([m.discriminator for m in copies]), copies[0].noise)
    return stacked, generators


def build_networks(model_cfg: DictConfig, data: Any, device: torch.device, seed: int,
                   replicas: int, conditioning: Conditioning = Conditioning()
                   ) -> tuple[Models, SingleRun]:
    """The networks and the replica axis the loop runs them on: a single run, or
    train.replicas=R runs stacked (seeds seed..seed+R-1, each built as its own seed's
    run is, with its own generator)."""
    if replicas == 1:
        return build_models(model_cfg, data, device, conditioning), SingleRun(seed)
    seeds = [seed + k for k in range(replicas)]
    models, generators = build_replicas(model_cfg, data, device, seeds, conditioning)
    return models, ReplicaRuns(seeds, generators)


def build_loss(loss_cfg: DictConfig) -> Any:
    """The objective; loss.aux_weight is AC-GAN's, applied by the Conditioning."""
    node = OmegaConf.to_container(loss_cfg)
    node.pop("aux_weight", None)
    return instantiate(node, "loss")


def build_logger(logger_cfg: DictConfig, run_dir: Path, start_step: int) -> Optional[Any]:
    """The live logger (see gan_cli/loggers.py), or None for logger=none."""
    if logger_cfg.get("_target_") is None:
        return None
    return instantiate(logger_cfg, "logger", run_dir=run_dir, start_step=start_step)


@dataclass
class Optimizers:
    generator: torch.optim.Optimizer
    discriminator: torch.optim.Optimizer
    schedulers: list  # stepped once per training step; may be empty


def _built_and_called(node: DictConfig, key: str, argument: Any) -> Any:
    """A `_partial_: true` node (an optimizer or schedule) called with its argument: torch
    checks the values (lr, betas, gamma...) only in that call, so it is named too."""
    with refusals_named(key, node):
        return hydra_instantiate(node, _convert_="all")(argument)


def discriminator_optimizer_factory(optim_cfg: DictConfig) -> tuple[Callable, Optional[Callable]]:
    """optim.discriminator's optimizer and optim.schedule, as functions of the parameters
    (of the optimizer): a fresh copy of the game's D optimizer, e.g. for pre-training."""
    schedule: Optional[DictConfig] = optim_cfg.get("schedule")
    return (lambda params: _built_and_called(optim_cfg.discriminator, "optim.discriminator", params),
            None if schedule is None else
            (lambda opt: _built_and_called(schedule, "optim.schedule", opt)))


def build_optimizers(optim_cfg: DictConfig, models: Models) -> Optimizers:
    opt_g = _built_and_called(optim_cfg.generator, "optim.generator",
                              models.generator.parameters())
    opt_d = _built_and_called(optim_cfg.discriminator, "optim.discriminator",
                              models.discriminator.parameters())
    schedule: Optional[DictConfig] = optim_cfg.get("schedule")
    schedulers = []
    if schedule is not None:
        schedulers = [_built_and_called(schedule, "optim.schedule", opt) for opt in (opt_g, opt_d)]
    return Optimizers(opt_g, opt_d, schedulers)


def build_evaluation(data: Any, eval_cfg: DictConfig, device: torch.device,
                     log: Callable[[str], None], conditional: bool = False):
    """The Evaluation that suits the data: images (a classifier's view when they have labels,
    else a fixed random network's features; with eval.inception_weights also FID and KID),
    a mixture, or your own points (conditional: also per class)."""
    from gan_cli.evaluate import ImageEvaluation, MixtureEvaluation
    from gan_cli.data.gaussian import GaussianMixture

    if len(data.shape) > 1 and data.n_classes:
        evaluation = ImageEvaluation(data, eval_cfg, device, log, conditional)
    elif len(data.shape) > 1:
        from gan_cli.image_features import FeatureEvaluation

        evaluation = FeatureEvaluation(data, eval_cfg)
    elif isinstance(data, GaussianMixture):
        evaluation = MixtureEvaluation(data, eval_cfg, conditional)
    else:
        from gan_cli.point_metrics import PointsEvaluation

        evaluation = PointsEvaluation(data, eval_cfg, conditional)
    if eval_cfg.get("inception_weights") is not None:  # FID and KID beside the rest
        from gan_cli.inception import InceptionMetrics

        if len(data.shape) == 1:
            raise UserError(f"eval.inception_weights={eval_cfg.inception_weights}: FID and KID "
                            "are for images (data=mnist, fashion_mnist, image_folder); "
                            "set it to null for point data")
        evaluation = InceptionMetrics(evaluation, data, eval_cfg, device)
    if eval_cfg.get("rejection_quantile") is not None:  # the share of samples D let through
        evaluation.columns += ("accepted",)
        evaluation.summary_keys += ("accepted",)
    return evaluation


@dataclass
class Built:
    """Every object the config describes that a run needs before its loop (the
    evaluation and the live logger aside, which write into the run folder)."""

    data: Any
    conditioning: Conditioning
    models: Models  # a single run's networks, or the stacked Replicas
    axis: SingleRun  # the replica axis the loop runs them on (replicas.py)
    loss: Any
    optimizers: Optimizers


def build_run(cfg: DictConfig, device: torch.device) -> Built:
    """Validate cfg and build data, networks, loss, optimizers and schedules from it,
    seeded with cfg.seed. Raises UserError naming the config key for any value that our
    checks or the libraries refuse, before the caller writes anything."""
    validate_train_config(cfg)
    seed_everything(cfg.seed)
    data = build_data(cfg.data, device)
    check_pretraining(cfg, data)  # train.d_pretrain_steps needs a known density
    # class labels (conditional GAN, AC-GAN) join G's and D's inputs, or D's outputs
    cond = build_conditioning(cfg.model, cfg.loss, data)
    models, axis = build_networks(cfg.model, data, device, cfg.seed, cfg.train.replicas, cond)
    loss = build_loss(cfg.loss)
    optimizers = build_optimizers(cfg.optim, models)
    target = cfg.logger.get("_target_")
    if target is not None:  # the logger itself writes into the run folder: only its class here
        with refusals_named("logger", cfg.logger):
            get_class(target)
    return Built(data, cond, models, axis, loss, optimizers)
