"""gan-sample: draw samples from a trained generator (a run folder or a .pt file)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig

from gan_cli import plots
from gan_cli.build import build_conditioning, build_data, build_models, pick_device
from gan_cli.checkpoint import load_checkpoint, load_weights, run_config
from gan_cli.config import check_rejection, validate_sample_config
from gan_cli.errors import UserError
from gan_cli.evaluate import generate
from gan_cli.files import atomic_write
from gan_cli.rejection import judged_in_batches, sample_kept
from gan_cli.replicas import replica_weights

OUTPUT_KINDS = (".npy", ".png")
MAX_ROW = 32  # images per class row in a grid


def sample(cfg: DictConfig) -> Path:
    """Write cfg.n samples of the checkpoint's generator to cfg.out; returns the path."""
    validate_sample_config(cfg)  # before any checkpoint is read
    out = Path(cfg.out)
    if out.suffix not in OUTPUT_KINDS:
        raise UserError(f"out={cfg.out}: allowed endings are {', '.join(OUTPUT_KINDS)}")
    if cfg.n < 1:
        raise UserError(f"n={cfg.n}: must be a positive integer")
    device = pick_device(cfg.device)
    state = load_checkpoint(cfg.ckpt, device)
    run_cfg = run_config(state, cfg.ckpt)
    shape = state.get("data_shape")
    if shape is not None and len(shape) > 1:  # images: G needs their shape, not the files
        data = SimpleNamespace(shape=tuple(shape), dim=math.prod(shape),
                               n_classes=state.get("n_classes"))
    else:  # a mixture is cheap to build, and the picture draws its real samples
        data = build_data(run_cfg.data, device)
    cond = build_conditioning(run_cfg.model, run_cfg.loss, data)
    models = build_models(run_cfg.model, data, device, cond)
    replicas = run_cfg.train.get("replicas", 1)
    if replicas > 1 or cfg.replica is not None:
        if cfg.replica is None or replicas == 1 or not 0 <= cfg.replica < replicas:
            raise UserError(f"replica={cfg.replica}: {cfg.ckpt} holds " + (
                f"{replicas} replicas; choose one with replica=0..{replicas - 1} (replica k "
                f"is seed {run_cfg.seed}+k)" if replicas > 1 else
                "a single run; leave replica= out"))
    g_key = "generator_ema" if cfg.ema and state.get("generator_ema") else "generator"
    load_weights(models.generator, weights_of(state, g_key, cfg.replica), "generator", cfg.ckpt)
    y, classes = class_labels(cfg, cond.n_classes, data, state, device)
    if x_is_image_grid(shape, out) and len(classes) > 1 and (
            cfg.n % len(classes) or cfg.n // len(classes) > MAX_ROW):
        raise UserError(f"n={cfg.n}: a grid with a row per class needs a multiple of its "
                        f"{len(classes)} classes, at most {MAX_ROW * len(classes)} (e.g. "
                        f"n={8 * len(classes)}); or choose classes with labels=[...]")
    quantile = cfg.get("rejection_quantile")
    check_rejection(run_cfg, quantile, "rejection_quantile")
    torch.manual_seed(cfg.seed)
    if quantile is None:
        x = draw(models, cond, cfg.n, y)
    else:  # discriminator rejection sampling: D's weights join G's
        D = models.discriminator.eval()
        load_weights(D, weights_of(state, "discriminator", cfg.replica), "discriminator",
                     cfg.ckpt)
        batch = run_cfg.train.batch_size  # D judges batches of the size it trained on

        def logits_of(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return judged_in_batches(D, x, batch).reshape(-1)

        x, share = sample_kept(lambda m: draw(models, cond, m, None), logits_of, cfg.n,
                               quantile)
        print(f"rejection sampling kept {share:.1%} of G's samples")
    # x: (n, d), or (n, C, H, W) images in [-1, 1]
    if out.suffix == ".npy":
        atomic_write(out, lambda tmp: np.save(open(tmp, "wb"), x.cpu().numpy()))
    elif x.dim() == 4 and len(classes) > 1:  # the classes in equal blocks: a row each
        plots.plot_images(x, out, title=f"{cfg.n} samples from {cfg.ckpt}",
                          columns=cfg.n // len(classes), row_labels=[str(k) for k in classes])
    elif x.dim() == 4:
        plots.plot_images(x, out, title=f"{cfg.n} samples from {cfg.ckpt}",
                          columns=max(8, math.ceil(math.sqrt(cfg.n))))
    else:
        real = data.sample(cfg.n)
        plots.plot_mixture(x, real, data, out, title=f"{cfg.n} samples from {cfg.ckpt}")
    print(f"wrote {cfg.n} samples to {out}" +
          (f" (classes {', '.join(map(str, classes))})" if classes else ""))
    return out


def draw(models, cond, n: int, y: Optional[torch.Tensor]) -> torch.Tensor:
    """n of G's samples for classes y (None: unconditional), from torch's global stream."""
    return generate(models.generator.eval(), cond, models.noise(n), y)


def weights_of(state: dict, key: str, replica: Optional[int]) -> dict:
    """The checkpoint's weights of one network (key), of one replica when given."""
    return state[key] if replica is None else replica_weights(state[key], replica)


def x_is_image_grid(shape, out: Path) -> bool:
    return shape is not None and len(shape) > 1 and out.suffix == ".png"


def class_labels(cfg: DictConfig, n_classes: int, data, state: dict,
                 device: torch.device) -> tuple[Optional[torch.Tensor], list[int]]:
    """The (n,) classes a conditional G is asked for, and which classes those are, in order:
    label= or labels= in equal blocks; by default a mixture's components in the shares of
    their weights, or the classes an image run trained on in equal blocks. (None, []) for
    an unconditional G, which refuses label= and labels=."""
    label, labels = cfg.get("label"), cfg.get("labels")
    if label is not None and labels is not None:
        raise UserError(f"label={label} and labels={list(labels)}: give one of them")
    asked = [label] if label is not None else list(labels) if labels is not None else None
    if not n_classes:
        if asked is not None:
            raise UserError(f"label/labels={asked}: {cfg.ckpt} holds an unconditional G "
                            "(trained without model.conditional=true); leave them out")
        return None, []
    if asked is not None and (not asked or not all(0 <= k < n_classes for k in asked)):
        raise UserError(f"label/labels={asked}: this G draws classes 0..{n_classes - 1}")
    if asked is None and hasattr(data, "balanced_labels"):  # a mixture
        y = data.balanced_labels(cfg.n)
        return y, torch.unique(y).tolist()
    trained = state.get("eval_labels")
    classes = asked or (torch.unique(trained).tolist() if trained is not None
                        else list(range(n_classes)))
    blocks = torch.arange(cfg.n, device=device) * len(classes) // cfg.n  # equal, in order
    return torch.tensor(classes, device=device)[blocks], classes
