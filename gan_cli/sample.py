"""gan-sample: draw samples from a trained generator (a run folder or a .pt file)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from omegaconf import DictConfig

from gan_cli import plots
from gan_cli.build import build_conditioning, build_data, build_models, pick_device
from gan_cli.checkpoint import atomic_write, load_checkpoint, load_weights, run_config
from gan_cli.config import UserError
from gan_cli.replicas import replica_weights

OUTPUT_KINDS = (".npy", ".png")


def sample(cfg: DictConfig) -> Path:
    """Write cfg.n samples of the checkpoint's generator to cfg.out; returns the path."""
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
    classes = chosen_classes(cfg, cond.n_classes)
    models = build_models(run_cfg.model, data, device, cond)
    weights = state["generator_ema"] if cfg.ema and state.get("generator_ema") else \
        state["generator"]
    replicas = run_cfg.train.get("replicas", 1)
    if replicas > 1 or cfg.replica is not None:
        if cfg.replica is None or not 0 <= cfg.replica < replicas:
            raise UserError(f"replica={cfg.replica}: {cfg.ckpt} holds " + (
                f"{replicas} replicas; choose one with replica=0..{replicas - 1} (replica k "
                f"is seed {run_cfg.seed}+k)" if replicas > 1 else
                "a single run; leave replica= out"))
        weights = replica_weights(weights, cfg.replica)
    load_weights(models.generator, weights, "generator", cfg.ckpt)
    torch.manual_seed(cfg.seed)
    z = models.noise(cfg.n)
    # a conditional G: the classes in equal blocks, in the order given (a grid row per class)
    y = torch.tensor(classes, device=device)[torch.arange(cfg.n, device=device) *
                                              len(classes) // cfg.n] if classes else None
    z_chunks = z.split(1000)  # in chunks: a big n of images would need GBs of activations
    y_chunks = y.split(1000) if y is not None else [None] * len(z_chunks)
    with torch.no_grad():
        x = torch.cat([models.generator.eval()(cond.generator_input(zk, yk))
                       for zk, yk in zip(z_chunks, y_chunks)])
    # x: (n, d), or (n, C, H, W) images in [-1, 1]
    if out.suffix == ".npy":
        atomic_write(out, lambda tmp: np.save(open(tmp, "wb"), x.cpu().numpy()))
    elif x.dim() == 4 and classes and len(classes) > 1:
        plots.plot_images(x, out, title=f"{cfg.n} samples from {cfg.ckpt}",
                          columns=math.ceil(cfg.n / len(classes)),
                          row_labels=[str(k) for k in classes])
    elif x.dim() == 4:
        plots.plot_images(x, out, title=f"{cfg.n} samples from {cfg.ckpt}",
                          columns=max(8, math.ceil(math.sqrt(cfg.n))))
    else:
        real = data.sample(cfg.n)
        plots.plot_mixture(x, real, data, out, title=f"{cfg.n} samples from {cfg.ckpt}")
    print(f"wrote {cfg.n} samples to {out}" +
          (f" (classes {', '.join(map(str, classes))})" if classes else ""))
    return out


def chosen_classes(cfg: DictConfig, n_classes: int) -> list[int]:
    """The classes a conditional G is asked for (label= or labels=; default every class);
    [] for an unconditional G, which refuses label= and labels=."""
    label, labels = cfg.get("label"), cfg.get("labels")
    if label is not None and labels is not None:
        raise UserError(f"label={label} and labels={list(labels)}: give one of them")
    asked = [label] if label is not None else list(labels) if labels is not None else None
    if not n_classes:
        if asked is not None:
            raise UserError(f"label/labels={asked}: {cfg.ckpt} holds an unconditional G "
                            "(trained without model.conditional=true); leave them out")
        return []
    if asked is None:
        return list(range(n_classes))
    if not asked or not all(0 <= k < n_classes for k in asked):
        raise UserError(f"label/labels={asked}: this G draws classes 0..{n_classes - 1}")
    return asked
