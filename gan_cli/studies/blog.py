"""Seed 000's convergence study, re-run: `python -m gan_cli.studies.blog`.

Runs every arm of the blog's experiment (experiment=blog_*) over many seeds at once
(train.replicas), then writes docs/seed_study.md — per arm the convergence steps,
the share of seeds that converged, final w1 and modes, and a verdict on each of the
blog's claims — and docs/seed_study.png, the convergence steps per arm and seed.

Two yardsticks, both read from each replica's metrics.csv rows:
- strict: the runner's converged_at_step (every mode covered, w1 <= 0.2 x std);
- loose: every mode covered and w1 <= std / 2, closer to the blog's judgement by eye
  of a generated histogram lying on the data.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from gan_cli.studies import machine, run_replicas

LOOSE_TOL = 0.25  # w1 tolerance of the loose yardstick: half the modes' std (0.5)


@dataclass
class Arm:
    name: str  # shown in the tables
    overrides: list[str]
    claim: str  # the blog's words, in short
    claimed_steps: Optional[int] = None  # the step count it claims, if any


ARMS = [
    Arm("uni-modal", ["experiment=blog_unimodal"], "converges within 20-30 steps", 30),
    Arm("bi-modal", ["experiment=blog_bimodal"], "converges within 20-30 steps", 30),
    Arm("tri-modal", ["experiment=blog_trimodal"], "converges within about 300 steps", 300),
    Arm("uni-modal, one G layer fewer", ["experiment=blog_unimodal_shallow"],
        "about 150 steps instead of 20", 150),
    Arm("tri-modal, two G layers h_dim x 2", ["experiment=blog_trimodal_narrow"],
        "convergence pushed to about step 3,050", 3050),
    *[Arm(f"{k} modes", ["experiment=blog_modes_k", f"data.k={k}"],
          "steps to converge stay roughly constant as widths grow with the modes")
      for k in (5, 10, 15)],
]


@dataclass
class ArmResult:
    arm: Arm
    seeds: list[int]
    strict: list[Optional[int]]  # per seed: first converged step, None = never
    loose: list[Optional[int]]
    final_w1: list[float]
    final_modes: list[int]
    n_modes: int
    seconds: float
    run_dir: Path
    diverged: int = 0

    def share(self, steps: list[Optional[int]]) -> float:
        return sum(s is not None for s in steps) / len(steps)


# ---------------------------------------------------------------- running
def run_arm(arm: Arm, seeds: int, steps: int, out: Path) -> ArmResult:
    """Train the arm's config for `seeds` seeds (0..seeds-1) as one batched run."""
    run_dir = out / arm.name.replace(" ", "_").replace(",", "")
    summary, rows, seconds = run_replicas(arm.overrides, seeds, steps, run_dir)
    per = summary["per_replica"]
    n_modes = int(summary["metrics"].get("n_modes") or 0)

    def first_step(k: int, tol: float) -> Optional[int]:
        for r in rows:
            if int(r["replica"]) == k and float(r["modes_covered"]) == n_modes and \
                    float(r["w1"]) <= tol:
                return int(r["step"])
        return None

    return ArmResult(
        arm, [p["seed"] for p in per],
        strict=[p["converged_at_step"] for p in per],
        loose=[first_step(k, LOOSE_TOL) for k in range(seeds)],
        final_w1=[p["metrics"].get("w1", math.nan) for p in per],
        final_modes=[int(p["metrics"].get("modes_covered", 0)) for p in per],
        n_modes=n_modes, seconds=seconds, run_dir=run_dir,
        diverged=summary["diverged"])


# ---------------------------------------------------------------- numbers and verdicts
def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """25th, 50th and 75th percentiles (inclusive method); one value repeats."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]


def steps_cell(steps: list[Optional[int]]) -> str:
    """'median (IQR) over the n that converged', or 'never'."""
    done = sorted(s for s in steps if s is not None)
    if not done:
        return "never"
    lo, mid, hi = quartiles(done)
    return f"{mid:g} ({lo:g}-{hi:g})"


def median_all(steps: list[Optional[int]]) -> float:
    """Median over every seed, one that never converged counting as infinitely late."""
    return statistics.median(math.inf if s is None else s for s in steps)


def within(median: float, target: int, about: bool) -> bool:
    """'within T' (at most 2T) or 'about T' (T/2 to 2T): loose reading of a blog's figure."""
    return median <= 2 * target and (not about or median >= target / 2)


def verdict_on_steps(r: ArmResult, about: bool) -> tuple[str, str]:
    t = r.arm.claimed_steps
    strict, loose = median_all(r.strict), median_all(r.loose)
    numbers = (f"median over {len(r.seeds)} seeds: {_steps(strict)} (strict), "
               f"{_steps(loose)} (loose)")
    if within(strict, t, about):
        return "reproduced", numbers
    if within(loose, t, about):
        return "partly", numbers + "; only the loose yardstick meets the claim"
    if math.isfinite(loose):
        return "partly", numbers + f"; G gets there, but not in about {t} steps"
    return "not reproduced", numbers + "; most seeds never get there in the run"


def _steps(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:g} steps"


def ratio_verdict(slow: ArmResult, fast: ArmResult, claimed: float) -> tuple[str, str]:
    """A claim that one arm takes `claimed` times longer than another."""
    for name, key in (("loose", "loose"), ("strict", "strict")):
        a, b = median_all(getattr(slow, key)), median_all(getattr(fast, key))
        if math.isfinite(a) and math.isfinite(b) and b > 0:
            ratio = a / b
            text = (f"{name} medians {a:g} vs {b:g} steps: {ratio:.1f}x (the blog: "
                    f"{claimed:g}x)")
            if claimed / 3 <= ratio <= claimed * 3:
                return "reproduced", text
            return ("partly" if ratio > 1.5 else "not reproduced"), text
    return "not reproduced", "the medians needed for the ratio are not both finite"


def constant_verdict(results: list[ArmResult]) -> tuple[str, str]:
    """Steps to converge roughly constant (within 2x) across mode counts."""
    medians = [(r.n_modes, median_all(r.loose)) for r in results]
    text = "loose medians " + ", ".join(f"{k} modes: {_steps(m)}" for k, m in medians)
    finite = [m for _, m in medians if math.isfinite(m)]
    if len(finite) == len(medians) and max(finite) <= 2 * min(finite):
        return "reproduced", text
    if len(finite) >= 2:
        return "partly", text + "; not within a factor 2 of each other"
    return "not reproduced", text + "; most mode counts never converge"


def seed_verdict(results: list[ArmResult]) -> tuple[str, str]:
    mixed = [r.arm.name for r in results
             if 0 < r.share(r.loose) < 1 or 0 < r.share(r.strict) < 1]
    if mixed:
        return "reproduced", (f"{len(mixed)} of {len(results)} arms have seeds that converge "
                              f"and seeds that do not ({', '.join(mixed[:3])}"
                              f"{', ...' if len(mixed) > 3 else ''})")
    return "not reproduced", "within each arm every seed behaves alike"


def claims(results: list[ArmResult]) -> list[tuple[str, str, str]]:
    """(claim, verdict, explanation) for each of the blog's claims."""
    by = {r.arm.name: r for r in results}
    rows = []
    for name in ("uni-modal", "bi-modal", "tri-modal"):
        if name in by:
            rows.append((f"{name} {by[name].arm.claim}", *verdict_on_steps(by[name], about=False)))
    if "uni-modal, one G layer fewer" in by and "uni-modal" in by:
        rows.append(("one G layer fewer (uni-modal): about 150 steps instead of 20",
                     *ratio_verdict(by["uni-modal, one G layer fewer"], by["uni-modal"], 150 / 20)))
    if "tri-modal, two G layers h_dim x 2" in by and "tri-modal" in by:
        rows.append(("two G layers shrunk to h_dim x 2 (tri-modal): about step 3,050 instead "
                     "of 300", *ratio_verdict(by["tri-modal, two G layers h_dim x 2"],
                                              by["tri-modal"], 3050 / 300)))
    scaling = [by[n] for n in ("tri-modal", "5 modes", "10 modes", "15 modes") if n in by]
    if len(scaling) >= 2:
        rows.append(("with widths growing linearly in the modes, the steps to converge stay "
                     "roughly constant", *constant_verdict(scaling)))
    rows.append(("results depend on the random seed", *seed_verdict(results)))
    return rows


# ---------------------------------------------------------------- the report
def write_report(results: list[ArmResult], out_md: Path, figure: Path, command: str,
                 seconds: float, steps: int) -> None:
    lines = [
        "# Seed 000's convergence study, re-run",
        "",
        f"Generated by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"({machine()}) in {seconds / 60:.1f} minutes; every number below is from that run.",
        "",
        "Each arm is one `experiment=blog_*` preset (the choices the blog leaves open are "
        "written in `gan_cli/conf/experiment/blog_common.yaml`), trained for "
        f"{steps} steps on seeds 0..{len(results[0].seeds) - 1} as one batched run "
        "(`train.replicas`), evaluated every 10 steps. Converged: every mode covered and "
        "w1 <= 0.1 (strict: the runner's `converged_at_step`, 0.2 x the std) or w1 <= 0.25 "
        "(loose: half the std). Steps: median (interquartile range) over the seeds that "
        "converged.",
        "",
        "| arm | seeds | strict: converged · step | loose: converged · step | final w1 median (IQR) "
        "| modes covered (median of) | the blog |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        finite_w1 = sorted(w for w in r.final_w1 if math.isfinite(w))
        lo, mid, hi = quartiles(finite_w1) if finite_w1 else (math.nan,) * 3
        lines.append(
            f"| {r.arm.name} | {len(r.seeds)} | {r.share(r.strict):.0%} · {steps_cell(r.strict)} "
            f"| {r.share(r.loose):.0%} · {steps_cell(r.loose)} | {mid:.3f} ({lo:.3f}-{hi:.3f}) "
            f"| {statistics.median(r.final_modes):g} of {r.n_modes} | {r.arm.claim} |")
    lines += ["", "## The blog's claims", "", "| claim | verdict | measured |", "|---|---|---|"]
    lines += [f"| {c} | **{v}** | {why} |" for c, v, why in claims(results)]
    lines += ["", f"![convergence steps per arm]({figure.name})", "", "## Reading it", "",
              "- The blog judged convergence by eye, from histograms of G's samples over the "
              "data; the loose yardstick (all modes covered, w1 at most half a mode's std) is "
              "the closest measurable reading of that, the strict one is this runner's own.",
              "- A step count \"within T\" counts as reproduced when the median over all seeds "
              "(one that never converged counting as never) is at most 2T, \"about T\" when it "
              "lies between T/2 and 2T; a claimed slow-down (one G layer fewer, narrower "
              "layers) when the ratio of the two arms' medians is within a factor 3 of the "
              "blog's.",
              "- Where the blog is silent (batch size, mode positions, initialisation, the "
              "loss) the presets follow the aylien code it extends; "
              "`gan_cli/conf/experiment/blog_common.yaml` and `conf/model/blog_onestop.yaml` "
              "list each choice.", ""]
    out_md.write_text("\n".join(lines))


def plot(results: list[ArmResult], path: Path, steps: int) -> None:
    """Each seed's convergence step per arm (strict and loose); never = the top row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    never = steps * 1.6
    for i, r in enumerate(results):
        for key, dx, marker, colour in (("strict", -0.12, "o", "C0"), ("loose", 0.12, "s", "C1")):
            ys = [never if s is None else max(s, 5) for s in getattr(r, key)]
            jitter = [dx + 0.06 * ((k * 7919) % 11 - 5) / 5 for k in range(len(ys))]
            ax.scatter([i + j for j in jitter], ys, s=14, marker=marker, color=colour, alpha=0.7,
                       label=key if i == 0 else None)
    claimed = [(i, r.arm.claimed_steps) for i, r in enumerate(results) if r.arm.claimed_steps]
    if claimed:
        ax.scatter(*zip(*claimed), marker="_", s=400, color="C3", lw=2, label="the blog's claim")
    ax.axhline(steps * 1.25, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xticks(range(len(results)), [r.arm.name for r in results], rotation=25, ha="right",
                  fontsize=8)
    ax.set_ylabel("step of convergence (log)")
    ax.text(len(results) - 0.5, never, f"never (in {steps})", ha="right", va="bottom", fontsize=8)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("seed 000's study: the step each seed converged at, per arm", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m gan_cli.studies.blog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20, help="seeds per arm (default 20)")
    parser.add_argument("--steps", type=int, default=5000, help="steps per run (default 5000)")
    parser.add_argument("--out", type=Path, default=Path("docs"),
                        help="folder for seed_study.md and .png (default docs/)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="folder for the runs (default outputs/studies/blog/<time>)")
    args = parser.parse_args(argv)
    if args.seeds < 2 or args.steps < 10:
        parser.error("--seeds must be at least 2 and --steps at least 10")
    runs = args.runs or Path("outputs/studies/blog") / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    args.out.mkdir(parents=True, exist_ok=True)
    start, results = time.perf_counter(), []
    for arm in ARMS:
        results.append(run_arm(arm, args.seeds, args.steps, runs))
        r = results[-1]
        print(f"{arm.name}: strict {r.share(r.strict):.0%} converged, loose "
              f"{r.share(r.loose):.0%} ({r.seconds:.0f} s)", flush=True)
    figure = args.out / "seed_study.png"
    plot(results, figure, args.steps)
    command = "python -m gan_cli.studies.blog" + (
        f" --seeds {args.seeds}" if args.seeds != 20 else "") + (
        f" --steps {args.steps}" if args.steps != 5000 else "")
    report = args.out / "seed_study.md"
    write_report(results, report, figure, command, time.perf_counter() - start, args.steps)
    print(f"wrote {report} and {figure}; runs in {runs}")
    return report


if __name__ == "__main__":
    main()
