"""Metrics of generated points that need no known modes, each beside its real-vs-real floor.

G's n samples are compared with n held-out real points (n = min(eval.n_samples,
held-out points)), both standardised with the training split's mean and std so
that every column weighs the same. Definitions users can cite:
- `w1` — Wasserstein-1 distance: exact in 1-D, sliced (mean over eval.projections random
  directions) in more dimensions (gan_cli/evaluate.py's wasserstein1).
- `energy` — the energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (Székely & Rizzo), V-statistic:
  >= 0, and 0 only when the two samples are the same set.
- `precision`, `recall` — Kynkäänniemi et al. 2019, k-NN version (eval.knn_k, default 5):
  the share of G's samples inside the real manifold (the union of balls around each real
  point reaching its k-th nearest real neighbour), and the share of real points inside G's.
- `density`, `coverage` — Naeem et al. 2020: how many real balls contain each generated
  sample, divided by k (about 1 for a perfect G, above 1 where G crowds dense regions);
  the share of real balls that contain at least one generated sample.
- `bin_kl`, `bin_mass` — the training points split into eval.bins k-means cells; the share of
  G's samples in each cell (bin_mass.csv), and KL(G's shares || the training shares).
- the floor of each: the same metric for n training points in G's place (a training
  subsample is an independent draw from the data distribution, so it is what a perfect
  G reaches with n samples: w1 and energy are above 0, precision and recall below 1).
- `converged_at_step`: the first evaluation at which precision and recall both reach
  eval.floor_fraction (default 0.9) x their floors, and w1 <= eval.w1_tol when that is set.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from omegaconf import DictConfig

from gan_cli.errors import UserError
from gan_cli.evaluate import wasserstein1

CHUNK = 2048  # rows per distance block: bounds memory at CHUNK x n distances
KMEANS_ITERATIONS = 30
FLOOR_SEED = 7  # the floors' training subsample and sliced directions (fixed: comparable runs)


# ---------------------------------------------------------------- the metrics
def knn_radii(x: torch.Tensor, k: int, chunk: int = CHUNK) -> torch.Tensor:
    """(n,) distance of each point of x (n, d) to its k-th nearest other point."""
    radii = [torch.cdist(block, x).topk(k + 1, dim=1, largest=False).values[:, k]
             for block in x.split(chunk)]  # the nearest is the point itself, at 0
    return torch.cat(radii)


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5, chunk: int = CHUNK) -> dict:
    """k-NN precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al.
    2020) of fake (m, d) against real (n, d), in chunks of generated samples."""
    real_r, fake_r = knn_radii(real, k, chunk), knn_radii(fake, k, chunk)  # (n,), (m,)
    inside_real = torch.zeros(len(fake), device=fake.device)  # real balls holding each fake
    recalled = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    nearest_fake = torch.full((len(real),), math.inf, device=real.device)
    for start in range(0, len(fake), chunk):
        block, radius = fake[start:start + chunk], fake_r[start:start + chunk]
        dist = torch.cdist(block, real)  # (c, n)
        inside_real[start:start + chunk] = (dist <= real_r).sum(1).float()
        recalled |= (dist <= radius[:, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, dist.min(0).values)
    return {"precision": (inside_real > 0).float().mean().item(),
            "recall": recalled.float().mean().item(),
            "density": (inside_real.sum() / (k * len(fake))).item(),
            "coverage": (nearest_fake <= real_r).float().mean().item()}


def mean_distance(x: torch.Tensor, y: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """E|X - Y| over all pairs of rows of x (n, d) and y (m, d), in float64."""
    total = sum(torch.cdist(block, y).double().sum() for block in x.split(chunk))
    return total / (len(x) * len(y))


def energy_distance(x: torch.Tensor, y: torch.Tensor, chunk: int = CHUNK) -> float:
    """2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic, so >= 0 up to rounding)."""
    e = 2 * mean_distance(x, y, chunk) - mean_distance(x, x, chunk) - mean_distance(y, y, chunk)
    return max(e.item(), 0.0)


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator,
           iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """(k, d) centres of x (n, d): k-means++ seeding, then Lloyd's iterations."""
    k = min(k, len(x))
    centres = x[torch.randint(len(x), (1,), generator=generator, device=x.device)]
    nearest = torch.cdist(x, centres).min(1).values  # (n,)
    for _ in range(k - 1):  # each new centre drawn with probability ~ distance^2
        weights = nearest.square()
        pick = torch.multinomial(weights / weights.sum(), 1, generator=generator) \
            if weights.sum() > 0 else torch.randint(len(x), (1,), device=x.device,
                                                    generator=generator)
        centres = torch.cat([centres, x[pick]])
        nearest = torch.minimum(nearest, torch.cdist(x, x[pick])[:, 0])
    for _ in range(iterations):
        cell = nearest_centre(x, centres)
        sums = torch.zeros_like(centres).index_add_(0, cell, x)
        counts = torch.bincount(cell, minlength=len(centres)).unsqueeze(1)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)  # empty: stays
    return centres


def nearest_centre(x: torch.Tensor, centres: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    return torch.cat([torch.cdist(block, centres).argmin(1) for block in x.split(chunk)])


def bin_shares(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(K,) share of the rows of x in each k-means cell, float64."""
    return torch.bincount(nearest_centre(x, centres), minlength=len(centres)).double() / len(x)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """KL(p || q), 0 log 0 = 0; q's empty cells count as a tiny share, not as 0."""
    q = q.clamp(min=1e-12)
    return torch.where(p > 0, p * (p / q).log(), 0.0).sum().item()


class PointMetrics:
    """All the metrics of the module docstring, for points already in the space they are
    compared in (standardised): train (N, d) and held_out (M, d) real points."""

    def __init__(self, train: torch.Tensor, held_out: torch.Tensor, k: int = 5,
                 bins: int = 20, projections: int = 256):
        self.train, self.held_out, self.k, self.projections = train, held_out, k, projections
        rng = torch.Generator(device=train.device).manual_seed(FLOOR_SEED)
        self.centres = kmeans(train, bins, rng)  # (K, d)
        self.train_shares = bin_shares(train, self.centres)  # (K,)
        self._floors: dict[int, dict] = {}
        # more metrics of (fake, real) beside these, e.g. image_features' fd; None = none
        self.extra: Optional[Callable[[torch.Tensor, torch.Tensor], dict]] = None

    def size(self, n_fake: int) -> int:
        """How many generated and held-out points are compared."""
        return min(n_fake, len(self.held_out))

    def __call__(self, fake: torch.Tensor, rng: torch.Generator) -> dict:
        """The metrics of fake (N, d); rng draws the subsample and the sliced directions."""
        n = self.size(len(fake))
        subset = fake if len(fake) == n else \
            fake[torch.randperm(len(fake), generator=rng, device=rng.device)[:n].to(fake.device)]
        return self._compare(subset, self.held_out[:n], rng)

    def floor(self, n: int) -> dict:
        """The metrics of n training points in G's place (cached per n)."""
        n = self.size(n)
        if n not in self._floors:
            rng = torch.Generator(device=self.train.device).manual_seed(FLOOR_SEED)
            pick = torch.randperm(len(self.train), generator=rng, device=self.train.device)[:n]
            stand_in = self.train[pick]
            self._floors[n] = self._compare(stand_in, self.held_out[:n], rng)
        return self._floors[n]

    def _compare(self, fake: torch.Tensor, real: torch.Tensor, rng: torch.Generator) -> dict:
        """fake's metrics against real, both (n, d); the bins' shares are of the same n
        samples, so that the floor's bin_kl has the same small-sample bias."""
        if not torch.isfinite(fake).all() or len(fake) <= self.k:
            # a diverged G (or too few samples left for k neighbours): nothing to measure
            nan = math.nan
            return {"w1": nan, "energy": nan, "precision": nan, "recall": nan,
                    "density": nan, "coverage": nan, "bin_kl": nan, "fd": nan,
                    "bin_mass": [nan] * len(self.centres), "n_compared": len(fake)}
        shares = bin_shares(fake, self.centres)
        metrics = {"w1": wasserstein1(fake, real, self.projections, generator=rng),
                   "energy": energy_distance(fake, real), **prdc(real, fake, self.k),
                   "bin_kl": kl_divergence(shares, self.train_shares),
                   "bin_mass": shares.tolist(), "n_compared": len(fake)}
        if self.extra is not None:
            metrics.update(self.extra(fake, real))
        return metrics


# ---------------------------------------------------------------- per class
def per_class_fit(fake: torch.Tensor, labels: torch.Tensor, held_out: torch.Tensor,
                  held_out_labels: torch.Tensor, n_classes: int, projections: int,
                  generator: torch.Generator) -> dict:
    """A conditional G's samples fake (N, d) drawn for classes labels (N,):

    class_fidelity: share whose nearest held-out point has the class asked for (a 1-NN
    classifier; its floor is that classifier's accuracy on training points);
    class_w1: per class, the w1 between G's samples for it and its held-out points.
    """
    nearest = torch.cat([torch.cdist(block, held_out).argmin(1) for block in fake.split(CHUNK)])
    class_w1 = []
    for k in range(n_classes):
        mine, theirs = fake[labels == k], held_out[held_out_labels == k]
        n = min(len(mine), len(theirs))
        class_w1.append(wasserstein1(mine[:n], theirs[:n], projections, generator=generator)
                        if n > 0 else math.nan)
    finite = [w for w in class_w1 if math.isfinite(w)]
    return {"class_fidelity": (held_out_labels[nearest] == labels).float().mean().item(),
            "class_w1": class_w1, "class_w1_max": max(finite) if finite else math.nan}


# ---------------------------------------------------------------- the Evaluation
KNN_KEYS = ("precision", "recall", "density", "coverage")


class PointsEvaluation:
    """Your own point set (data=points): the metrics above against the held-out points,
    with their floors; for a conditional G also how well it draws each class."""

    histogram = "bin"  # each evaluation's k-means cell shares go to bin_mass.csv
    objective = "w1"  # the metric a sweeper minimises (sweep.py reads w1 for vector data)
    metric_keys = ("w1", "energy", *KNN_KEYS, "bin_kl")

    def __init__(self, data: Any, eval_cfg: DictConfig, conditional: bool = False):
        self.data, self.cfg = data, eval_cfg
        train, held_out = self.reference_points()
        self.scorer = self._scorer(self.embed(train), self.embed(held_out))
        self.n = self.scorer.size(eval_cfg.n_samples)
        per_class = ("class_fidelity", "class_w1_max") if conditional else ()
        self.columns = (*self.metric_keys, *per_class)  # metrics.csv
        self.summary_keys = (*self.metric_keys, *per_class, *("class_w1",) * conditional)
        self.conditional = conditional

    def _scorer(self, train: torch.Tensor, held_out: torch.Tensor) -> PointMetrics:
        k = self.cfg.knn_k
        if len(held_out) <= k or len(train) <= k:
            raise UserError(f"eval.knn_k={k}: needs more than {k} held-out and training points; "
                            f"the data has {len(held_out)} held out and {len(train)} for "
                            "training (raise data.holdout, give more data or lower eval.knn_k)")
        return PointMetrics(train, held_out, k, self.cfg.bins, self.cfg.projections)

    def reference_points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The real (training, held-out) samples, in data units."""
        return self.data.train, self.data.held_out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Data units -> the space metrics are computed in: standardised by the training
        split's mean and std, so every column weighs the same whatever its unit."""
        return (x - self.data.mean) / self.data.scale

    def metrics(self, fake: torch.Tensor, rng: torch.Generator,
                labels: Optional[torch.Tensor] = None) -> dict:
        """fake (N, d) in data units; labels (N,): the classes a conditional G was asked for."""
        x = self.embed(fake)
        metrics = self.scorer(x, rng)
        if labels is not None and torch.isfinite(x).all():
            metrics.update(per_class_fit(x, labels, self.scorer.held_out,
                                         self.data.held_out_labels, self.data.n_classes,
                                         self.cfg.projections, rng))
        return metrics

    def floor(self, metrics: Optional[dict] = None) -> dict:
        """The floors at the size `metrics` were computed at (default: eval.n_samples)."""
        return self.scorer.floor(metrics["n_compared"] if metrics else self.n)

    def converged(self, metrics: dict) -> bool:
        floor, share = self.floor(metrics), self.cfg.floor_fraction
        close = all(metrics[k] >= share * floor[k] for k in ("precision", "recall"))
        w1_tol = self.cfg.get("w1_tol")
        return close and (w1_tol is None or metrics["w1"] <= w1_tol)

    def line(self, m: dict) -> str:
        f = self.floor(m)
        line = "  ".join(f"{k} {m[k]:.3f}/{f[k]:.3f}" for k in ("w1", "precision", "recall")) + \
            f"  density {m['density']:.2f}  coverage {m['coverage']:.3f}  (value/floor)"
        if "class_fidelity" in m:
            line += f"  fidelity {m['class_fidelity']:.3f}  worst class w1 {m['class_w1_max']:.3f}"
        return line

    def start(self, plots_dir: Optional[Path]) -> dict:
        """For summary.json: the floors, and the rule converged_at_step follows."""
        floor = {k: v for k, v in self.floor().items() if k in self.metric_keys}
        if self.conditional:  # a 1-NN classifier's accuracy on training points
            rng = torch.Generator(device=self.data.train.device).manual_seed(FLOOR_SEED)
            pick = torch.randperm(len(self.data.train), generator=rng,
                                  device=rng.device)[:self.n]
            floor["class_fidelity"] = per_class_fit(
                self.embed(self.data.train[pick]), self.data.train_labels[pick],
                self.scorer.held_out, self.data.held_out_labels, self.data.n_classes,
                self.cfg.projections, rng)["class_fidelity"]
        rule = f"precision and recall >= {self.cfg.floor_fraction} x floor" + (
            f" and w1 <= {self.cfg.w1_tol}" if self.cfg.get("w1_tol") is not None else "")
        return {"floor_metrics": floor, "n_compared": self.n, "converged_rule": rule}

    def picture(self, fakes: Sequence[torch.Tensor], path: Path, title: str,
                seeds: Sequence[int], discriminator: Optional[Callable] = None,
                d_is_probability: bool = True, **_: Any) -> None:
        from gan_cli import plots

        plots.plot_points(fakes[0], self.data.held_out, path, title=title,
                          names=self.data.column_names, discriminator=discriminator,
                          d_is_probability=d_is_probability)
