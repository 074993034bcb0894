"""Matplotlib figures of a run: loss curves, what G makes, and an animated timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from gan_cli.checkpoint import atomic_write  # noqa: E402
from gan_cli.data.gaussian import GaussianMixture  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def plot_losses(rows: Sequence[dict], path: Path) -> None:
    """D and G loss (top) and mean D output on real / fake samples (bottom) over steps."""
    step = [r["step"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(step, [r["d_loss"] for r in rows], label="D loss")
    top.plot(step, [r["g_loss"] for r in rows], label="G loss")
    top.set_ylabel("loss")
    top.legend()
    bottom.plot(step, [r["d_real"] for r in rows], label="D(x), real")
    bottom.plot(step, [r["d_fake"] for r in rows], label="D(G(z)), fake")
    bottom.axhline(0.5, color="grey", lw=0.8, ls="--")
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("step")
    bottom.set_ylabel("mean D output")
    bottom.legend()
    fig.tight_layout()
    _save(fig, path)


def plot_mixture(fake: torch.Tensor, real: torch.Tensor, mixture: GaussianMixture,
                 path: Path, title: str = "",
                 discriminator: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 d_is_probability: bool = True) -> None:
    """1-D: true density, real and generated histograms and D(x); 2-D: scatter over mode centres.

    discriminator maps x (n, 1) to what D says about it: P(real), or a critic's score.
    """
    fake_np, real_np = fake.detach().cpu().numpy(), real.detach().cpu().numpy()
    means = mixture.means.cpu().numpy()
    fig, ax = plt.subplots(figsize=(7, 5) if mixture.dim == 1 else (6, 6))
    if mixture.dim == 1:
        spread = 4 * mixture.stds.max().item()
        # the data's range, widened to where most generated samples are (a G far off target)
        fake_lo, fake_hi = np.quantile(fake_np[:, 0], [0.005, 0.995])
        lo, hi = min(means.min() - spread, fake_lo), max(means.max() + spread, fake_hi)
        grid = torch.linspace(lo, hi, 400, device=mixture.device).unsqueeze(1)  # (400, 1)
        bins = np.linspace(lo, hi, 120)
        ax.hist(real_np[:, 0], bins=bins, density=True, alpha=0.35, label="real samples")
        ax.hist(fake_np[:, 0], bins=bins, density=True, alpha=0.55, label="generated samples")
        ax.plot(grid.cpu().numpy(), mixture.density(grid).cpu().numpy(), "k", lw=1.2,
                label="true density")
        ax.set_xlim(lo, hi)
        ax.set_xlabel("x")
        ax.set_ylabel("density")
        if discriminator is not None:
            with torch.no_grad():
                d = discriminator(grid).cpu().numpy()
            twin = ax.twinx()
            twin.plot(grid.cpu().numpy(), d, color="tab:red", lw=1.2, label="D(x)")
            if d_is_probability:
                twin.set_ylim(0, 1)
            twin.set_ylabel("D(x)", color="tab:red")
        ax.legend(loc="upper left", fontsize=8)
    else:
        margin = 4 * mixture.stds.max().item() + 0.5
        ax.scatter(real_np[:, 0], real_np[:, 1], s=2, alpha=0.2, label="real")
        ax.scatter(fake_np[:, 0], fake_np[:, 1], s=2, alpha=0.4, label="generated")
        ax.scatter(means[:, 0], means[:, 1], marker="x", c="k", s=40, label="mode centres")
        ax.set_xlim(means[:, 0].min() - margin, means[:, 0].max() + margin)
        ax.set_ylim(means[:, 1].min() - margin, means[:, 1].max() + margin)
        ax.set_aspect("equal")
        legend = ax.legend(loc="upper right", fontsize=8)
        for handle in legend.legend_handles:  # legible legend markers, whatever the point size
            handle.set_sizes([30])
            handle.set_alpha(1.0)
        if mixture.dim > 2:
            title += " (first two dimensions)"
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def write_gif(frames: Sequence[Path], path: Path, ms_per_frame: int = 400) -> None:
    """Animate the per-evaluation pictures (the last frame stays up longer)."""
    from PIL import Image

    if not frames:
        return
    images = [Image.open(f).convert("RGB") for f in frames]
    durations = [ms_per_frame] * (len(images) - 1) + [ms_per_frame * 5]
    atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True,
                                                  append_images=images[1:], duration=durations,
                                                  loop=0))
