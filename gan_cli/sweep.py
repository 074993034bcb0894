"""Sweep summaries: the Hydra callback that ends every `gan-train -m`, and `gan-report`.

Both read the job folders (`summary.json`, `.hydra/overrides.yaml`), so a sweep
that was interrupted or ran on a cluster is summarised the same way afterwards:
`sweep_summary.csv` (one row per job), a table grouped by the swept parameters
except `seed` (mean ± std over the seeds) and `sweep_summary.png`.

Heavy imports (rich, matplotlib) happen inside the functions: Hydra instantiates
the callback for every run, and `gan-train --help` must stay quick.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from gan_cli.exit_codes import set_exit_code

# the final metrics a job reports: the objective first; n_* is "of how many" for *_covered
MIXTURE_METRICS = ["w1", "hq_fraction", "mode_spread", "modes_covered", "n_modes", "mode_kl"]
IMAGE_METRICS = ["fd", "classifier_score", "classes_covered", "n_classes", "class_kl"]
# data=points (point_metrics.py), and image folders without labels (image_features.py)
POINT_METRICS = ["w1", "energy", "precision", "recall", "density", "coverage", "bin_kl"]
FEATURE_METRICS = ["fd", "precision", "recall", "density", "coverage", "bin_kl"]
INCEPTION_METRICS = ["fid", "kid"]  # after the image ones, with eval.inception_weights
# the table's short headings (the CSV keeps the full names)
HEADINGS = {"hq_fraction": "hq", "mode_spread": "spread", "modes_covered": "modes",
            "classifier_score": "score", "classes_covered": "classes", "precision": "prec",
            "density": "dens", "coverage": "cover"}
ALL_METRICS = list(dict.fromkeys(MIXTURE_METRICS + IMAGE_METRICS + POINT_METRICS +
                                 FEATURE_METRICS + INCEPTION_METRICS))
# a job folder without summary.json: killed (SIGKILL, out of memory, a node failure), or
# still running or waiting in a cluster's queue
MISSING = "missing"
WHY = {MISSING: "no summary.json (killed, or still running)",
       "interrupted": "stopped by a signal; gan-train resume=<its folder> continues it"}
SEED = "seed"  # never a grouping key: its spread is what mean ± std measure
CSV_NAME, PLOT_NAME = "sweep_summary.csv", "sweep_summary.png"


@dataclass
class Group:
    """The jobs that share the values of the swept parameters other than seed."""

    params: dict[str, str]
    jobs: list[dict]
    # metric -> (mean, std, n) over the completed jobs; std is None for a single job
    stats: dict[str, tuple[float, Optional[float], int]] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(j["status"] == status for j in self.jobs)

    @property
    def converged(self) -> int:
        return sum(j["converged_at_step"] is not None for j in self.jobs)


@dataclass
class SweepReport:
    sweep_dir: Path
    jobs: list[dict]  # one per job folder (or replica), in job order (see read_job)
    swept: list[str]  # override keys whose value differs between jobs
    groups: list[Group]

    @property
    def metrics(self) -> list[str]:
        """The metrics the jobs report: images (a classifier's, else random features', then
        FID and KID when some job has them), point sets, or mixtures."""
        if self._reported("fd"):
            images = IMAGE_METRICS if self._reported("classifier_score") else FEATURE_METRICS
            return images + INCEPTION_METRICS * self._reported("fid")
        return POINT_METRICS if self._reported("precision") else MIXTURE_METRICS

    def _reported(self, metric: str) -> bool:
        return any(j[metric] is not None for j in self.jobs)

    @property
    def objective(self) -> str:  # w1 or fd: the metric a job's objective is
        return self.metrics[0]

    @property
    def group_by(self) -> list[str]:
        return [k for k in self.swept if k != SEED]

    def best(self) -> Optional[dict]:
        """The completed job with the lowest objective (final w1, or fd for images)."""
        done = [j for j in self.jobs if j["status"] == "completed" and _finite(j["objective"])]
        return min(done, key=lambda j: j["objective"]) if done else None

    def exit_code(self) -> int:
        """gan-train -m's exit code: 2 if a job failed, 130 if one was interrupted, else 0
        (a diverged job is a legitimate result)."""
        statuses = {j["status"] for j in self.jobs}
        return 2 if "failed" in statuses else 130 if "interrupted" in statuses else 0


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _job_number(folder: Path) -> tuple:
    return (0, int(folder.name), "") if folder.name.isdigit() else (1, 0, folder.name)


def parse_override(override: str) -> tuple[str, str]:
    """`key=value` (also `+key=value`, `++key=value`, `~key`) -> (key, value)."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _read_overrides(folder: Path) -> tuple[list[str], Optional[str]]:
    """A job's command-line overrides, and what is wrong with its overrides.yaml (or None)."""
    path = folder / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return [], None
    from omegaconf import ListConfig, OmegaConf

    try:
        overrides = OmegaConf.load(path)
    except Exception as e:  # yaml's and OmegaConf's parse errors share no base class
        return [], f"unreadable .hydra/overrides.yaml ({' '.join(str(e).split())})"
    if not isinstance(overrides, ListConfig):
        return [], ".hydra/overrides.yaml does not hold a list of overrides"
    return [str(o) for o in overrides], None


def _read_summary(folder: Path) -> tuple[dict, Optional[str]]:
    """A job's summary.json ({} when there is none), and what is wrong with it (or None)."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as e:
        return {}, f"unreadable summary.json ({e})"
    if not isinstance(summary, dict) or not isinstance(summary.get("status", MISSING), str):
        return {}, "summary.json is not a gan-train summary (no object with a status text)"
    if not isinstance(summary.get("metrics") or {}, dict):
        summary = {**summary, "metrics": {}}
    return summary, None


def read_job(folder: Path) -> list[dict]:
    """One job folder as a row (a row per replica for train.replicas): its overrides,
    status, final metrics and times."""
    overrides, overrides_error = _read_overrides(folder)
    summary, error = _read_summary(folder)
    error = error or overrides_error
    metrics = summary.get("metrics") or {}
    row = {
        "job": folder.name,
        "folder": folder,
        "overrides": overrides,
        "params": dict(parse_override(o) for o in overrides),
        "status": summary.get("status", MISSING),
        "step": summary.get("step"),
        **{m: metrics.get(m) for m in ALL_METRICS},
        "converged_at_step": summary.get("converged_at_step"),
        "objective": summary.get("objective"),
        "wall_time_s": summary.get("wall_time_s"),
        "error": summary.get("error", error),
    }
    return [row] if "per_replica" not in summary else replica_rows(row, summary)


def replica_rows(row: dict, summary: dict) -> list[dict]:
    """A train.replicas job as one row per replica, each with its own seed (so it groups
    like separate seed jobs) and its share of the job's wall time."""
    wall = summary.get("wall_time_s")
    return [{**row, "job": f"{row['job']}.{p['replica']}",
             "params": {**row["params"], SEED: str(p["seed"])},
             "status": p["status"], **{m: p["metrics"].get(m) for m in ALL_METRICS},
             "converged_at_step": p["converged_at_step"],
             "objective": p["objective"] if "objective" in p else  # (older summaries: w1/fd)
             p["metrics"].get("fd" if "fd" in p["metrics"] else "w1"),
             "wall_time_s": wall / len(summary["per_replica"]) if wall is not None else None,
             "error": p.get("error")}
            for p in summary["per_replica"]]


def read_jobs(sweep_dir: Path) -> list[dict]:
    """Every job folder of a sweep: a subfolder holding .hydra/overrides.yaml or summary.json."""
    folders = [d for d in sweep_dir.iterdir() if d.is_dir() and (
        (d / ".hydra" / "overrides.yaml").is_file() or (d / "summary.json").is_file())]
    return [row for d in sorted(folders, key=_job_number) for row in read_job(d)]


def swept_keys(jobs: Sequence[dict]) -> list[str]:
    """Override keys whose value is not the same in every job, in command-line order."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job["params"] if k not in keys]
    return [k for k in keys if len({job["params"].get(k) for job in jobs}) > 1]


def _stats(values: list[float]) -> tuple[float, Optional[float], int]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None, len(values)


def summarise(sweep_dir: Path) -> SweepReport:
    """Read a sweep's job folders and group them by the swept parameters except seed.

    Metrics are averaged over the group's completed jobs only: a diverged, failed,
    interrupted or missing job has no final evaluation; it counts in the group's size.
    """
    jobs = read_jobs(sweep_dir)
    swept = swept_keys(jobs)
    by = [k for k in swept if k != SEED]
    groups: dict[tuple, Group] = {}
    for job in jobs:
        params = {k: job["params"].get(k, "") for k in by}
        groups.setdefault(tuple(params.values()), Group(params, [])).jobs.append(job)
    for group in groups.values():
        done = [j for j in group.jobs if j["status"] == "completed"]
        for key in [*ALL_METRICS, "wall_time_s"]:
            values = [j[key] for j in done if _finite(j[key])]
            if values:
                group.stats[key] = _stats(values)
    return SweepReport(sweep_dir, jobs, swept, list(groups.values()))


# ---------------------------------------------------------------- outputs
def _cell(x: Any) -> Any:
    if isinstance(x, float):
        return f"{x:.6g}"
    return "" if x is None else x


def write_csv(report: SweepReport, path: Path) -> None:
    from gan_cli.files import atomic_write

    columns = ["job", *report.swept, "status", "step", *report.metrics, "converged_at_step",
               "objective", "wall_time_s", "error", "overrides"]
    rows = [{**{k: job["params"].get(k, "") for k in report.swept},
             **{k: _cell(job[k]) for k in columns if k in job and k != "overrides"},
             "overrides": " ".join(job["overrides"])} for job in report.jobs]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def _mean_std(stats: Optional[tuple[float, Optional[float], int]]) -> str:
    if stats is None:
        return "-"
    mean, std, _ = stats
    return f"{mean:.3g}" if not std else f"{mean:.3g}±{std:.1g}"  # no spread: the mean alone


def _short(value: str) -> str:
    """A long number (an Optuna trial's learning rate) to 4 significant digits, for the table."""
    try:
        return f"{float(value):.4g}" if len(value) > 8 else value
    except ValueError:
        return value


def print_table(report: SweepReport, file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    file = file or sys.stdout
    # a log file or a pipe gets the whole table, not 80 columns of it
    console = Console(file=file, width=None if file.isatty() else 200)
    folders = len({j["folder"] for j in report.jobs})
    runs = f" ({len(report.jobs)} runs: train.replicas counted one by one)" \
        if folders < len(report.jobs) else ""
    title = f"sweep summary: {folders} jobs{runs} in {report.sweep_dir}"
    table = Table(title=title, header_style="bold", title_justify="left")
    for key in report.group_by or ["jobs"]:
        table.add_column(key)
    metrics = [m for m in report.metrics if not m.startswith("n_")]  # n_*: in *_covered's cell
    not_completed = {id(g): ", ".join(f"{c} {s}" for s, c in (
        (s, g.count(s)) for s in ("diverged", "failed", "interrupted", MISSING)) if c)
        for g in report.groups}
    # a column for the jobs without a final evaluation only when there are some
    extra = ["not completed"] if any(not_completed.values()) else []
    for name in ("done", "converged", *(HEADINGS.get(m, m) for m in metrics), "s/job", *extra):
        table.add_column(name, justify="left" if name in extra else "right")
    for g in report.groups:
        n = len(g.jobs)
        cells = []
        for m in metrics:
            cell = _mean_std(g.stats.get(m))
            of = "n_" + m.split("_")[0]
            if m.endswith("_covered") and of in g.stats and cell != "-":
                cell += f" of {g.stats[of][0]:.0f}"
            cells.append(cell)
        table.add_row(
            *([_short(v) for v in g.params.values()] or ["all"]), f"{g.count('completed')}/{n}",
            f"{g.converged}/{n}", *cells, _mean_std(g.stats.get("wall_time_s")),
            *([not_completed[id(g)]] if extra else []))
    console.print(table)
    best = report.best()
    if best is not None:
        chosen = " ".join(f"{k}={best['params'].get(k, '')}" for k in report.swept)
        console.print(f"best: job {best['job']} ({chosen or 'the only setting'}), "
                      f"objective (final {report.objective}) {best['objective']:.4g}", highlight=False)
    for job in report.jobs:  # why each job that did not complete did not
        if job["status"] != "completed":
            why = job["error"] or WHY.get(job["status"], "")
            console.print(f"job {job['job']} {job['status']}: {why}", highlight=False, markup=False)
    console.print(f"written: {report.sweep_dir / CSV_NAME}", highlight=False)


def _as_numbers(values: Sequence[str]) -> Optional[list[float]]:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def plot_report(report: SweepReport, path: Path) -> bool:
    """The final objective (w1, or fd for images) of each completed job against each
    swept parameter (one panel per parameter, seed only when nothing else varies), with
    the mean ± std per value. Returns False (and draws nothing) when no job has one."""
    metric = report.objective
    done = [j for j in report.jobs if j["status"] == "completed" and _finite(j[metric])]
    if not done:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from gan_cli.files import atomic_write

    keys = report.group_by or ([SEED] if SEED in report.swept else [])
    panels = keys or ["jobs"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 0.5, 4), squeeze=False,
                             sharey=True)
    for ax, key in zip(axes[0], panels):
        raw = [j["params"].get(key, "") if key != "jobs" else "all" for j in done]
        distinct = list(dict.fromkeys(raw))
        numbers = _as_numbers(distinct)
        if numbers is not None:
            order = sorted(range(len(distinct)), key=lambda i: numbers[i])
            distinct = [distinct[i] for i in order]
            positions = [numbers[i] for i in order]
            positive = all(p > 0 for p in positions)
            if positive and len(positions) > 1 and max(positions) / min(positions) >= 20:
                ax.set_xscale("log")
            if len(distinct) <= 8 and all(len(v) <= 8 for v in distinct):  # a grid's values
                ax.set_xticks(positions, distinct)
                ax.minorticks_off()
        else:  # categories (loss names, ...) in the order of the sweep
            positions = list(range(len(distinct)))
            ax.set_xticks(positions, distinct)
            ax.set_xlim(-0.5, len(distinct) - 0.5)
        where = dict(zip(distinct, positions))
        ax.scatter([where[r] for r in raw], [j[metric] for j in done], s=18, alpha=0.5,
                   label="one job")
        means = []
        for value in distinct:
            finals = [j[metric] for j, r in zip(done, raw) if r == value]
            means.append((where[value], statistics.fmean(finals),
                          statistics.stdev(finals) if len(finals) > 1 else 0.0))
        if any(len([r for r in raw if r == v]) > 1 for v in distinct):
            xs, ms, ss = zip(*means)
            ax.errorbar(xs, ms, yerr=ss, color="k", marker="o", ms=4, capsize=3, lw=1,
                        ls="-" if numbers is not None else "none", label="mean ± std")
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"final {metric} (lower is better)")
    axes[0][0].set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    axes[0][0].yaxis.set_major_formatter(plain)
    axes[0][0].yaxis.set_minor_formatter(plain)
    axes[0][0].legend(fontsize=8)
    left_out = len(report.jobs) - len(done)
    fig.suptitle(f"{report.sweep_dir.name}: {len(done)} completed job(s)"
                 + (f" ({left_out} without a final {metric} not shown)" if left_out else ""),
                 fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return True


def report_sweep(sweep_dir: Path, file: Any = None) -> SweepReport:
    """Summarise a sweep: write sweep_summary.csv and .png into it and print the table."""
    report = summarise(sweep_dir)
    if not report.jobs:
        return report
    write_csv(report, sweep_dir / CSV_NAME)
    print_table(report, file)
    if plot_report(report, sweep_dir / PLOT_NAME):
        print(f"written: {sweep_dir / PLOT_NAME}", file=file or sys.stdout)
    return report


class SweepSummary(Callback):
    """Registered in conf/train.yaml (hydra.callbacks): summarises every multirun at its end."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        try:
            report = report_sweep(sweep_dir)
        except OSError as e:  # e.g. a full disk: the jobs' own folders are complete anyway
            print(f"gan-train: warning: could not write the sweep summary ({e})",
                  file=sys.stderr)
            return
        set_exit_code(report.exit_code())  # jobs in other processes (joblib, submitit) too


class _OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad argument reported as one line (usage: gan-report --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def report_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="gan-report",
        description="Summarise a gan-train sweep from its job folders (summary.json and "
                    ".hydra/overrides.yaml): writes sweep_summary.csv and sweep_summary.png "
                    "into the sweep folder and prints the table, grouped by the swept "
                    "parameters except seed. Works on interrupted sweeps and on a cluster's "
                    "sweep folder; a job folder without summary.json counts as 'missing'.")
    parser.add_argument("sweep_dir", type=Path, help="e.g. outputs/multirun/2026-11-22/10-00-00-123456")
    return parser


def report_main(argv: Optional[Sequence[str]] = None) -> None:
    """`gan-report <sweep folder>`: the sweep summary from the job folders."""
    args = report_parser().parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"gan-report: error: {args.sweep_dir}: no such folder", file=sys.stderr)
        sys.exit(2)
    try:
        report = report_sweep(args.sweep_dir)
    except OSError as e:
        print(f"gan-report: error: {e.filename or args.sweep_dir}: {e.strerror or e}",
              file=sys.stderr)
        sys.exit(2)
    if not report.jobs:
        print(f"gan-report: error: {args.sweep_dir}: no job folders in it (subfolders with "
              ".hydra/overrides.yaml or summary.json)", file=sys.stderr)
        sys.exit(2)
