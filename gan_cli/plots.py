"""Matplotlib figures of a run: loss curves, what G makes, and an animated timeline."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable, Collection, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from gan_cli.files import atomic_write  # noqa: E402
from gan_cli.data.gaussian import GaussianMixture  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def plot_losses(rows: Sequence[dict], path: Path) -> None:
    """D and G loss (top) and mean D output on real / fake samples (bottom) over steps.

    Replicas' rows (several per step) show as the median with a 25-75 % band.
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for ax, key, label in [(top, "d_loss", "D loss"), (top, "g_loss", "G loss"),
                           (bottom, "d_real", "D(x), real"), (bottom, "d_fake", "D(G(z)), fake")]:
        step, (low, median, high) = _quartiles(rows, key)
        (line,) = ax.plot(step, median, label=label)
        if len(rows) > len(step):
            ax.fill_between(step, low, high, color=line.get_color(), alpha=0.2, lw=0)
    top.set_ylabel("loss")
    top.legend()
    bottom.axhline(0.5, color="grey", lw=0.8, ls="--")
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("step")
    bottom.set_ylabel("mean D output")
    bottom.legend()
    fig.tight_layout()
    _save(fig, path)


# the evaluation metrics metrics.png shows, each in a panel of its own (mixtures: the first
# three; images: the last three), with what its axis says
METRIC_PANELS = {"w1": "W1 distance to the data", "modes_covered": "modes covered",
                 "hq_fraction": "high-quality fraction", "fd": "Fréchet distance (classifier)",
                 "classes_covered": "classes covered", "classifier_score": "classifier score"}


def metric_series(rows: Sequence[dict]) -> dict[str, tuple[list[int], np.ndarray]]:
    """Per METRIC_PANELS metric the rows hold: its evaluation steps and, per step, the
    25th, 50th and 75th percentile over the step's rows (replicas; one row: all three
    equal). Rows are train()'s dicts or metrics.csv's (strings, "" off evaluation)."""
    found = {}
    for key in METRIC_PANELS:
        evaluated = [{"step": int(r["step"]), key: float(r[key])} for r in rows
                     if r.get(key) not in (None, "")]
        if evaluated:
            found[key] = _quartiles(evaluated, key)
    return found


def plot_metrics(rows: Sequence[dict], path: Path, converged_at: Optional[int] = None
                 ) -> dict[str, tuple[list[int], np.ndarray]]:
    """The evaluation metrics over steps (w1, modes covered, hq fraction for mixtures; fd,
    classes covered, classifier score for images), one panel each, the converged step
    marked. Returns what it drew (metric_series); writes nothing without evaluations."""
    found = metric_series(rows)
    if not found:
        return found
    fig, axes = plt.subplots(len(found), 1, figsize=(8, 2.2 * len(found) + 0.6),
                             sharex=True, squeeze=False)
    for ax, (key, (steps, (low, median, high))) in zip(axes[:, 0], found.items()):
        (line,) = ax.plot(steps, median, marker="o", ms=3)
        if not np.array_equal(low, high):  # replicas: the 25-75 % band
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
        if converged_at is not None:
            ax.axvline(converged_at, color="tab:green", ls="--", lw=1,
                       label=f"converged at step {converged_at}")
        ax.set_ylabel(METRIC_PANELS[key], fontsize=9)
        if key.endswith("_covered"):  # counts
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        elif key in ("w1", "fd") and np.all(median > 0) and median.max() > 10 * median.min():
            # a distance that fell by orders of magnitude
            ax.set_yscale("log")
    if converged_at is not None:
        axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    _save(fig, path)
    return found


def _quartiles(rows: Sequence[dict], key: str) -> tuple[list[int], np.ndarray]:
    """The steps, and per step the 25th, 50th and 75th percentile of key over its rows."""
    by_step: dict[int, list[float]] = {}
    for row in rows:
        by_step.setdefault(row["step"], []).append(row[key])
    steps = sorted(by_step)
    with warnings.catch_warnings():  # a step at which every replica had diverged: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return steps, np.array([np.nanpercentile(by_step[s], [25, 50, 75]) for s in steps]).T


def plot_replicas(fakes: Sequence[torch.Tensor], mixture: GaussianMixture, path: Path,
                  seeds: Sequence[int], title: str = "") -> None:
    """What each replica's G makes, as one image (cheap for hundreds of replicas).

    1-D: one row per replica, its histogram as colour, under the true density.
    2-D: one tile per replica, its 2-D histogram, mode centres marked.
    """
    means = mixture.means.cpu().numpy()
    margin = 4 * mixture.stds.max().item()
    lo, hi = means[:, :2].min(0) - margin, means[:, :2].max(0) + margin
    xs = [f.detach().cpu().numpy() for f in fakes]
    xs = [x[np.isfinite(x).all(1)] for x in xs]  # a diverged replica's row stays empty
    if mixture.dim == 1:
        bins = np.linspace(lo[0], hi[0], 200)
        width = bins[1] - bins[0]
        rows = np.stack([np.histogram(x[:, 0], bins=bins)[0] / max(len(x), 1) / width
                         for x in xs])  # (R, bins): densities
        fig, (top, ax) = plt.subplots(2, 1, figsize=(8, 2 + 0.12 * len(xs)), sharex=True,
                                      gridspec_kw={"height_ratios": [1, max(2, len(xs) / 8)]})
        grid = torch.linspace(lo[0], hi[0], 400, device=mixture.device).unsqueeze(1)
        top.plot(grid.cpu().numpy()[:, 0], mixture.density(grid).cpu().numpy(), "k", lw=1)
        top.set_ylabel("true\ndensity", fontsize=8)
        # colour saturates at twice the highest true density: a collapsed G's spike
        # would otherwise wash every other row out
        vmax = 2 * mixture.density(mixture.means).max().item()
        ax.imshow(rows, aspect="auto", origin="lower", cmap="viridis",
                  extent=(lo[0], hi[0], -0.5, len(xs) - 0.5), vmin=0, vmax=vmax,
                  interpolation="nearest")
        ticks = range(0, len(xs), max(1, len(xs) // 16))
        ax.set_yticks(list(ticks), [str(seeds[k]) for k in ticks], fontsize=7)
        ax.set_ylabel("replica's seed")
        ax.set_xlabel("x")
        top.set_title(title, fontsize=10)
    else:
        n_bins, cols = 48, math.ceil(math.sqrt(len(xs)))
        rows_of_tiles = math.ceil(len(xs) / cols)
        image = np.full((rows_of_tiles * (n_bins + 2), cols * (n_bins + 2)), np.nan)
        fig, ax = plt.subplots(figsize=(min(12, 1.2 * cols + 1), min(12, 1.2 * rows_of_tiles + 1)))
        for k, x in enumerate(xs):
            h, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=n_bins,
                                     range=[[lo[0], hi[0]], [lo[1], hi[1]]])
            r, c = divmod(k, cols)
            top_left = (r * (n_bins + 2) + 1, c * (n_bins + 2) + 1)
            image[top_left[0]:top_left[0] + n_bins, top_left[1]:top_left[1] + n_bins] = \
                np.log1p(h.T[::-1])  # rows from the top: y grows upwards
            ax.text(top_left[1], top_left[0], str(seeds[k]), fontsize=6, color="w", va="top")
        ax.imshow(image, cmap="viridis", interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{title}: one tile per replica (labelled with its seed), "
                     "log sample counts" + (" (first two dimensions)" if mixture.dim > 2 else ""),
                     fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_mixture(fake: torch.Tensor, real: torch.Tensor, mixture: GaussianMixture,
                 path: Path, title: str = "",
                 discriminator: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 d_is_probability: bool = True) -> None:
    """1-D: true density, real and generated histograms and D(x); 2-D: scatter over mode centres.

    discriminator maps x (n, 1) to what D says about it: P(real), or a critic's score.
    Data with no known modes (data=points) gets plot_points instead.
    """
    if not isinstance(mixture, GaussianMixture):
        return plot_points(fake, real, path, title=title, discriminator=discriminator,
                           d_is_probability=d_is_probability, real_label="real",
                           names=getattr(mixture, "column_names", None))
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
            _plot_d_curve(ax, grid, discriminator, d_is_probability)
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


def _plot_d_curve(ax: plt.Axes, grid: torch.Tensor, discriminator: Callable,
                  d_is_probability: bool) -> None:
    """D's verdict on the points grid (n, 1), on a second y axis."""
    with torch.no_grad():
        d = discriminator(grid).cpu().numpy()
    twin = ax.twinx()
    twin.plot(grid.cpu().numpy(), d, color="tab:red", lw=1.2, label="D(x)")
    if d_is_probability:
        twin.set_ylim(0, 1)
    twin.set_ylabel("D(x)", color="tab:red")


MAX_PAIRWISE = 5  # columns shown in the pairwise picture of points in more than 2-D


def plot_points(fake: torch.Tensor, real: torch.Tensor, path: Path, title: str = "",
                names: Optional[Sequence[str]] = None,
                discriminator: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                d_is_probability: bool = True, real_label: str = "held-out real") -> None:
    """Your own points (n, d), real and generated: 1-D histograms (and D(x)); 2-D scatter;
    more dimensions: pairwise scatter plots of the first MAX_PAIRWISE columns, histograms
    on the diagonal."""
    fake_np, real_np = fake.detach().cpu().numpy(), real.detach().cpu().numpy()
    fake_np = fake_np[np.isfinite(fake_np).all(1)]
    d = real_np.shape[1]
    names = list(names) if names is not None else [str(k) for k in range(d)]
    shown = min(d, MAX_PAIRWISE)
    lo, hi = _shown_range(real_np[:, :shown], fake_np[:, :shown])
    if d == 1:
        fig, ax = plt.subplots(figsize=(7, 5))
        bins = np.linspace(lo[0], hi[0], 120)
        ax.hist(real_np[:, 0], bins=bins, density=True, alpha=0.35, label=real_label)
        ax.hist(fake_np[:, 0], bins=bins, density=True, alpha=0.55, label="generated")
        ax.set_xlim(lo[0], hi[0])
        ax.set_xlabel(names[0])
        ax.set_ylabel("density")
        if discriminator is not None:
            grid = torch.linspace(lo[0], hi[0], 400, device=real.device).unsqueeze(1)
            _plot_d_curve(ax, grid, discriminator, d_is_probability)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title(title)
    else:
        pairs = 1 if d == 2 else shown
        fig, axes = plt.subplots(pairs, pairs, figsize=(6, 6) if d == 2 else (2.2 * pairs,) * 2,
                                 squeeze=False)
        for i in range(pairs):
            for j in range(pairs):
                ax = axes[i, j]
                row, col = (1, 0) if d == 2 else (i, j)
                if d > 2 and i == j:
                    bins = np.linspace(lo[i], hi[i], 40)
                    ax.hist(real_np[:, i], bins=bins, density=True, alpha=0.35)
                    ax.hist(fake_np[:, i], bins=bins, density=True, alpha=0.55)
                elif d > 2 and j > i:
                    ax.axis("off")
                    continue
                else:
                    ax.scatter(real_np[:, col], real_np[:, row], s=2, alpha=0.2, label=real_label)
                    ax.scatter(fake_np[:, col], fake_np[:, row], s=2, alpha=0.4, label="generated")
                    ax.set_ylim(lo[row], hi[row])
                ax.set_xlim(lo[col], hi[col])
                if i == pairs - 1:
                    ax.set_xlabel(names[col])
                if j == 0 and not (d > 2 and i == 0):
                    ax.set_ylabel(names[row])
        if d == 2:
            legend = axes[0, 0].legend(loc="upper right", fontsize=8)
            for handle in legend.legend_handles:
                handle.set_sizes([30])
                handle.set_alpha(1.0)
        elif d > shown:
            title += f" (first {shown} of {d} columns)"
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def _shown_range(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the real points' 0.5-99.5 % range widened to most generated points."""
    lo, hi = np.quantile(real, [0.005, 0.995], axis=0)
    if len(fake):
        f_lo, f_hi = np.quantile(fake, [0.005, 0.995], axis=0)
        lo, hi = np.minimum(lo, f_lo), np.maximum(hi, f_hi)
    pad = 0.05 * np.maximum(hi - lo, 1e-6)
    return lo - pad, hi + pad


def image_grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] -> one (rows*(H+1)+1, columns*(W+1)+1, C) array in
    [0, 1], tiled row by row with a 1-pixel border (a non-finite pixel shows as 0)."""
    x = images.detach().float().cpu().nan_to_num(-1.0).clamp(-1, 1).add(1).div(2).numpy()
    n, c, h, w = x.shape
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, c), dtype=np.float32)
    for k in range(n):
        r, col = divmod(k, columns)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = \
            x[k].transpose(1, 2, 0)
    return grid


def plot_images(images: torch.Tensor, path: Path, title: str = "", columns: int = 8,
                row_labels: Optional[Sequence[str]] = None) -> None:
    """A grid of images in [-1, 1] (N, C, H, W), `columns` per row; grey for one channel."""
    grid = image_grid(images, columns)
    rows = math.ceil(images.shape[0] / columns)
    fig, ax = plt.subplots(figsize=(0.6 * columns + 0.8, 0.6 * rows + 0.6))
    ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([])
    if row_labels is None:
        ax.set_yticks([])
    else:  # e.g. each row's replica seed
        h = images.shape[2] + 1
        ax.set_yticks([1 + h * r + h / 2 for r in range(len(row_labels))], row_labels, fontsize=7)
    ax.set_title(title, fontsize=9)
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
