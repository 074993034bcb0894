"""Seed 000's convergence study, re-run: `python -m gan_cli.studies.blog`.

Runs every arm of the blog's experiment (experiment=blog_*) over many seeds at once
(train.replicas), then writes docs/seed_study.md — per arm the convergence steps,
the share of seeds that converged, final w1 and modes, and a verdict on each of the
blog's claims — and docs/seed_study.png, the convergence steps per arm and seed.

Three yardsticks, all read from each replica's metrics.csv rows:
- strict: the runner's converged_at_step (every mode covered, w1 <= 0.2 x std);
- loose: every mode covered and w1 <= std / 2, closer to the blog's judgement by eye
  of a generated histogram lying on the data;
- peaks, the blog's own: every mode has a peak of G's samples within half a std of its
  mean, the width ignored (the blog: narrow peaks "are not incorrect") — the
  peaks_on_modes column (gan_cli/evaluate.py, mode_peaks).

Each verdict also says what changed from the previous report (the --out folder's
seed_study.md before this run) and, for the three basic arms, whether D's pre-training
or the batch size and learning rate made the difference: those arms run a second time
without pre-training (batch 12, lr 0.03 kept).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Sequence

from gan_cli.studies import machine, run_replicas

LOOSE_TOL = 0.25  # w1 tolerance of the loose yardstick: half the modes' std (0.5)
YARDSTICKS = {  # the ArmResult field each reads, and how the report names it
    "strict": "strict (w1 <= 0.1, the runner's converged_at_step)",
    "loose": "loose (w1 <= 0.25)",
    "peaks": "peaks (the blog's: a peak within half a std of every mode)",
}
# what the setup changed from the presets before issue 24 (blog_nopre_common.yaml)
CHANGES = "D pre-trained 1,000 steps, batch 8 -> 12, lr 0.005 -> 0.03"
NO_PRETRAINING = ", no pre-training"  # the suffix of the three twin arms' names


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
    # the twins that tell D's pre-training apart from the batch size and lr
    *[Arm(f"{name}{NO_PRETRAINING}", [f"experiment=blog_{preset}", "train.d_pretrain_steps=0"],
          f"(the {name} arm without pre-training)", steps)
      for name, preset, steps in (("uni-modal", "unimodal", 30), ("bi-modal", "bimodal", 30),
                                  ("tri-modal", "trimodal", 300))],
]


@dataclass
class ArmResult:
    arm: Arm
    seeds: list[int]
    strict: list[Optional[int]]  # per seed: first converged step, None = never
    loose: list[Optional[int]]
    peaks: list[Optional[int]]
    final_w1: list[float]
    final_modes: list[int]
    n_modes: int
    seconds: float
    run_dir: Path
    diverged: int = 0
    threads: Optional[int] = None  # the run's torch threads (its manifest's)

    def share(self, steps: list[Optional[int]]) -> float:
        return sum(s is not None for s in steps) / len(steps)


# ---------------------------------------------------------------- running
def arm_folder(arm: Arm, out: Path) -> Path:
    return out / arm.name.replace(" ", "_").replace(",", "")


def run_arm(arm: Arm, seeds: int, steps: int, out: Path) -> ArmResult:
    """Train the arm's config for `seeds` seeds (0..seeds-1) as one batched run."""
    run_dir = arm_folder(arm, out)
    return arm_result(arm, *run_replicas(arm.overrides, seeds, steps, run_dir), run_dir)


def finished_arm(arm: Arm, out: Path) -> ArmResult:
    """The result of an arm's run that has finished in `out` (--from-runs)."""
    run_dir = arm_folder(arm, out)
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["w1"]]  # evaluation rows
    return arm_result(arm, summary, rows, summary["wall_time_s"], run_dir)


def arm_result(arm: Arm, summary: dict, rows: list[dict], seconds: float,
               run_dir: Path) -> ArmResult:
    """Each seed's convergence steps by the three yardsticks, from the run's summary and
    its metrics.csv evaluation rows."""
    per = summary["per_replica"]
    seeds = len(per)
    n_modes = int(summary["metrics"].get("n_modes") or 0)

    def first_step(k: int, met: Callable[[dict], bool]) -> Optional[int]:
        return next((int(r["step"]) for r in rows if int(r["replica"]) == k and met(r)), None)

    def loose(r: dict) -> bool:
        return float(r["modes_covered"]) == n_modes and float(r["w1"]) <= LOOSE_TOL

    def peaks(r: dict) -> bool:
        return float(r["peaks_on_modes"]) == n_modes

    return ArmResult(
        arm, [p["seed"] for p in per],
        strict=[p["converged_at_step"] for p in per],
        loose=[first_step(k, loose) for k in range(seeds)],
        peaks=[first_step(k, peaks) for k in range(seeds)],
        final_w1=[p["metrics"].get("w1", math.nan) for p in per],
        final_modes=[int(p["metrics"].get("modes_covered", 0)) for p in per],
        n_modes=n_modes, seconds=seconds, run_dir=run_dir,
        diverged=summary["diverged"], threads=summary.get("manifest", {}).get("torch_threads"))


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


def verdict_on_steps(r: ArmResult, about: bool, key: str) -> tuple[str, str]:
    """A claimed step count, judged by the yardstick `key` (strict, loose or peaks)."""
    t = r.arm.claimed_steps
    median = median_all(getattr(r, key))
    numbers = f"median over {len(r.seeds)} seeds: {_steps(median)}"
    verdict = steps_verdict(median, t, about)
    return verdict, numbers + {
        "reproduced": "", "partly": f"; G gets there, but not in about {t} steps",
        "not reproduced": "; most seeds never get there in the run"}[verdict]


def steps_verdict(median: float, target: int, about: bool) -> str:
    if within(median, target, about):
        return "reproduced"
    return "partly" if math.isfinite(median) else "not reproduced"


def _steps(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:g} steps"


def ratio_verdict(slow: ArmResult, fast: ArmResult, claimed: float, key: str
                  ) -> tuple[str, str]:
    """A claim that one arm takes `claimed` times longer than another."""
    a, b = median_all(getattr(slow, key)), median_all(getattr(fast, key))
    if not (math.isfinite(a) and math.isfinite(b) and b > 0):
        return "not reproduced", (f"medians {_steps(a)} vs {_steps(b)}: the ratio needs both "
                                  "finite")
    ratio = a / b
    text = f"medians {a:g} vs {b:g} steps: {ratio:.1f}x (the blog: {claimed:g}x)"
    if claimed / 3 <= ratio <= claimed * 3:
        return "reproduced", text
    return ("partly" if ratio > 1.5 else "not reproduced"), text


def constant_verdict(results: list[ArmResult], key: str) -> tuple[str, str]:
    """Steps to converge roughly constant (within 2x) across mode counts."""
    medians = [(r.n_modes, median_all(getattr(r, key))) for r in results]
    text = "medians " + ", ".join(f"{k} modes: {_steps(m)}" for k, m in medians)
    finite = [m for _, m in medians if math.isfinite(m)]
    if len(finite) == len(medians) and max(finite) <= 2 * min(finite):
        return "reproduced", text
    if len(finite) >= 2:
        return "partly", text + "; not within a factor 2 of each other"
    return "not reproduced", text + "; most mode counts never converge"


def seed_verdict(results: list[ArmResult], key: str) -> tuple[str, str]:
    mixed = [r.arm.name for r in results if 0 < r.share(getattr(r, key)) < 1]
    if mixed:
        return "reproduced", (f"{len(mixed)} of {len(results)} arms have seeds that converge "
                              f"and seeds that do not ({', '.join(mixed[:3])}"
                              f"{', ...' if len(mixed) > 3 else ''})")
    return "not reproduced", "within each arm every seed behaves alike"


@dataclass
class Claim:
    text: str  # the claim, as the reports name it
    judge: Callable[[str], tuple[str, str]]  # yardstick -> (verdict, measured)
    twin: Optional[Callable[[str], tuple[str, str]]] = None  # the same without pre-training
    target: Optional[int] = None  # a claimed step count ("within T"), if that is the claim


def claims(results: list[ArmResult]) -> list[Claim]:
    """The blog's claims that the arms in `results` can judge."""
    by = {r.arm.name: r for r in results}
    main = [r for r in results if not r.arm.name.endswith(NO_PRETRAINING)]
    rows = []
    for name in ("uni-modal", "bi-modal", "tri-modal"):
        if name in by:
            twin = by.get(name + NO_PRETRAINING)
            rows.append(Claim(
                f"{name} {by[name].arm.claim}",
                lambda key, r=by[name]: verdict_on_steps(r, False, key),
                twin and (lambda key, r=twin: verdict_on_steps(r, False, key)),
                by[name].arm.claimed_steps))
    if "uni-modal, one G layer fewer" in by and "uni-modal" in by:
        rows.append(Claim("one G layer fewer (uni-modal): about 150 steps instead of 20",
                          lambda key: ratio_verdict(by["uni-modal, one G layer fewer"],
                                                    by["uni-modal"], 150 / 20, key)))
    if "tri-modal, two G layers h_dim x 2" in by and "tri-modal" in by:
        rows.append(Claim("two G layers shrunk to h_dim x 2 (tri-modal): about step 3,050 "
                          "instead of 300",
                          lambda key: ratio_verdict(by["tri-modal, two G layers h_dim x 2"],
                                                    by["tri-modal"], 3050 / 300, key)))
    scaling = [by[n] for n in ("tri-modal", "5 modes", "10 modes", "15 modes") if n in by]
    if len(scaling) >= 2:
        rows.append(Claim("with widths growing linearly in the modes, the steps to converge "
                          "stay roughly constant", lambda key: constant_verdict(scaling, key)))
    rows.append(Claim("results depend on the random seed", lambda key: seed_verdict(main, key)))
    return rows


@dataclass
class Before:
    """A claim's verdict in the previous report, by one yardstick (or its single verdict)."""

    verdict: str
    median: Optional[float] = None  # the claimed-steps median by this yardstick, if known


MEDIAN = r"(never|[\d.]+ steps)"


def _median(text: str) -> float:
    return math.inf if text == "never" else float(text.split()[0])


def previous_verdicts(report: Optional[str], targets: dict[str, int] = {}
                      ) -> dict[tuple[str, Optional[str]], Before]:
    """(claim, yardstick or None) -> Before, from an earlier seed_study.md's claims table.

    Before issue 24 the table had one verdict per claim (strict if it met the claim, else
    loose) and no yardstick column; for a claimed step count (targets: claim -> T) its
    "measured" cell gives both medians, from which each yardstick's verdict is rebuilt."""
    found: dict[tuple[str, Optional[str]], Before] = {}
    header: Optional[list[str]] = None
    for line in (report or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == "claim":
            header = cells
            continue
        if header is None or not line.startswith("|") or set(line) <= set("|-"):
            continue
        row = dict(zip(header, cells))
        claim, verdict = row["claim"], row.get("verdict", "").strip("*")
        stick = next((k for k in YARDSTICKS if row.get("yardstick", "").startswith(k)), None)
        measured = row.get("measured", "")
        one = re.search(rf"median over \d+ seeds: {MEDIAN}(;|$)", measured)
        found[(claim, stick)] = Before(verdict, _median(one.group(1)) if one else None)
        both = re.search(rf"{MEDIAN} \(strict\), {MEDIAN} \(loose\)", measured)
        if stick is None and both and claim in targets:
            for key, text in zip(("strict", "loose"), both.groups()):
                median = _median(text)
                found[(claim, key)] = Before(steps_verdict(median, targets[claim], False),
                                             median)
    return found


def what_changed(claim: Claim, key: str, verdict: str, median: Optional[float],
                 before: dict[tuple[str, Optional[str]], Before]) -> str:
    """The previous report's verdict on the claim by this yardstick and, where a twin
    without pre-training ran, how far the batch and lr and how far the pre-training moved
    the median."""
    was = before.get((claim.text, key))
    single = before.get((claim.text, None))
    if was is None and single is None:
        return "not in the previous report"
    if was is None and claim.target is not None:  # its strict and loose medians were known
        text = (f"before: not measured by this yardstick (the report's one verdict: "
                f"{single.verdict})")
    else:
        was = was or single  # a report with one verdict per claim: it stands for each
        text = f"before: {was.verdict}" + (f" at {_steps(was.median)}" if was.median is not
                                          None else "") + (" (unchanged)" if was.verdict ==
                                                           verdict else "")
    if claim.twin is None:
        changed = was is not None and was.verdict != verdict
        return text + (f"; {CHANGES}, not told apart here" if changed else "")
    twin_verdict, twin_numbers = claim.twin(key)
    twin_median = re.search(rf"seeds: {MEDIAN}", twin_numbers)
    twin_at = _steps(_median(twin_median.group(1))) if twin_median else "?"
    text += f"; without pre-training (batch 12, lr 0.03): {twin_verdict} at {twin_at}"
    if median is not None and math.isinf(median) and twin_at == "never" and (
            was is None or was.median is None or math.isinf(was.median)):
        return text  # never, then and now, with or without pre-training
    if was is not None and was.median is not None and median is not None:
        text += (f" -> batch and lr moved the median {_steps(was.median)} to {twin_at}, "
                 f"the pre-training {twin_at} to {_steps(median)}")
    elif median is not None:
        text += f" -> the pre-training moved the median {twin_at} to {_steps(median)}"
    return text


def verdict_rows(results: list[ArmResult], previous: Optional[str]) -> list[tuple[str, ...]]:
    """(claim, yardstick, verdict, measured, what changed) per claim and yardstick."""
    found = claims(results)
    before = previous_verdicts(previous, {c.text: c.target for c in found if c.target})
    rows = []
    for claim in found:
        for key in YARDSTICKS:
            verdict, measured = claim.judge(key)
            median = re.search(rf"seeds: {MEDIAN}", measured) if claim.target else None
            rows.append((claim.text, key, verdict, measured, what_changed(
                claim, key, verdict, _median(median.group(1)) if median else None, before)))
    return rows


def blog_summary(rows: list[tuple[str, ...]]) -> str:
    """Which claims hold under the blog's own yardstick (peaks on the modes)."""
    peaks = [(claim, verdict) for claim, key, verdict, *_ in rows if key == "peaks"]
    held = [c for c, v in peaks if v == "reproduced"]
    partly = [c for c, v in peaks if v == "partly"]
    text = (f"Under the blog's own notion of convergence (peaks on the modes), {len(held)} of "
            f"{len(peaks)} claims hold" + (f": {'; '.join(held)}" if held else ""))
    return text + (f". Partly: {'; '.join(partly)}." if partly else ".")


# ---------------------------------------------------------------- the report
def write_report(results: list[ArmResult], out_md: Path, figure: Path, command: str,
                 seconds: float, steps: int, previous: Optional[str] = None,
                 rebuilt: bool = False) -> None:
    """docs/seed_study.md; previous: the report this one replaces (its verdicts are cited);
    rebuilt: from finished runs (--from-runs), `seconds` being theirs."""
    rows = verdict_rows(results, previous)
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    lines = [
        "# Seed 000's convergence study, re-run",
        "",
        (f"Trained by `{command}` ({machine(threads=False)}, {results[0].threads} torch "
         f"thread(s) per run) in {seconds / 60:.1f} minutes (the arms' runs "
         f"together); this report was rebuilt from those runs on {when} with `--from-runs`, "
         "and every number below is from them." if rebuilt else
         f"Generated by `{command}` on {when} ({machine()}) in {seconds / 60:.1f} minutes; "
         "every number below is from that run."),
        "",
        "Each arm is one `experiment=blog_*` preset, rebuilt from the January 2017 aylien code "
        "the blog names (batch 12, gradient descent at lr 0.03 decayed x0.95 every 150 steps, "
        "D pre-trained 1,000 steps on the true density, N(0, 1) weights; every choice and its "
        "source in `gan_cli/conf/experiment/blog_common.yaml`), trained for "
        f"{steps} steps on seeds 0..{len(results[0].seeds) - 1} as one batched run "
        "(`train.replicas`), evaluated every 10 steps. The three arms marked \"no "
        "pre-training\" are the same presets with `train.d_pretrain_steps=0`; the previous "
        "report's presets (batch 8, lr 0.005, no pre-training) are `experiment=blog_nopre_*`.",
        "",
        "Converged, three ways: **strict**, the runner's `converged_at_step` (every mode covered, "
        "w1 <= 0.1 = 0.2 x the std, every mode at least 0.8 as wide as the data's); **loose**, "
        "every mode covered and w1 <= 0.25 (half the std); **peaks**, the blog's own: every "
        "mode has a peak of G's samples within half a std of its mean, however narrow "
        "(`peaks_on_modes`: a local maximum of a kernel density estimate of G's samples, "
        "bandwidth a quarter std, at least half as high as the true density there). Steps: "
        "median (interquartile range) over the seeds that converged.",
        "",
        "| arm | seeds | strict: converged · step | loose: converged · step "
        "| peaks: converged · step | final w1 median (IQR) | modes covered (median of) "
        "| the blog |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        finite_w1 = sorted(w for w in r.final_w1 if math.isfinite(w))
        lo, mid, hi = quartiles(finite_w1) if finite_w1 else (math.nan,) * 3
        lines.append(
            f"| {r.arm.name} | {len(r.seeds)} | {r.share(r.strict):.0%} · {steps_cell(r.strict)} "
            f"| {r.share(r.loose):.0%} · {steps_cell(r.loose)} "
            f"| {r.share(r.peaks):.0%} · {steps_cell(r.peaks)} | {mid:.3f} ({lo:.3f}-{hi:.3f}) "
            f"| {statistics.median(r.final_modes):g} of {r.n_modes} | {r.arm.claim} |")
    lines += ["", "## The blog's claims", "", blog_summary(rows), "",
              f"Each claim is judged by each yardstick; \"before\" is the previous report's "
              f"verdict (one per claim, strict or loose), from presets without the changes "
              f"({CHANGES}).", "",
              "| claim | yardstick | verdict | measured | what changed from the previous report |",
              "|---|---|---|---|---|"]
    lines += [f"| {claim} | {key} | **{verdict}** | {measured} | {changed} |"
              for claim, key, verdict, measured, changed in rows]
    lines += ["", f"![convergence steps per arm]({figure.name})", "", "## Reading it", "",
              "- The blog judged convergence by eye, from histograms of G's samples over the "
              "data, and says outright that narrow peaks \"are not incorrect\": the peaks "
              "yardstick is that judgement made measurable; loose adds that the whole "
              "distribution be near the data (w1), strict is this runner's own.",
              "- A step count \"within T\" counts as reproduced when the median over all seeds "
              "(one that never converged counting as never) is at most 2T, \"about T\" when it "
              "lies between T/2 and 2T; a claimed slow-down (one G layer fewer, narrower "
              "layers) when the ratio of the two arms' medians is within a factor 3 of the "
              "blog's.",
              "- Where the blog is silent (mode positions, the loss, the pre-training box) the "
              "presets follow the aylien code it extends; "
              "`gan_cli/conf/experiment/blog_common.yaml`, `conf/model/blog_onestop.yaml` and "
              "`gan_cli/pretrain.py` list each choice.", ""]
    out_md.write_text("\n".join(lines))


def plot(results: list[ArmResult], path: Path, steps: int) -> None:
    """Each seed's convergence step per arm (strict, loose, peaks); never = the top row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.8))
    never = steps * 1.6
    for i, r in enumerate(results):
        for key, dx, marker, colour in (("strict", -0.2, "o", "C0"), ("loose", 0.0, "s", "C1"),
                                        ("peaks", 0.2, "^", "C2")):
            ys = [never if s is None else max(s, 5) for s in getattr(r, key)]
            jitter = [dx + 0.04 * ((k * 7919) % 11 - 5) / 5 for k in range(len(ys))]
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
    parser.add_argument("--from-runs", action="store_true",
                        help="train nothing: rebuild the report from the finished runs in "
                             "--runs (its time: the runs' own)")
    args = parser.parse_args(argv)
    if args.seeds < 2 or args.steps < 10:
        parser.error("--seeds must be at least 2 and --steps at least 10")
    runs = args.runs or Path("outputs/studies/blog") / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / "seed_study.md"
    previous = report.read_text() if report.exists() else None  # its verdicts are cited
    if args.from_runs and args.runs is None:
        parser.error("--from-runs needs --runs, the folder of the finished runs")
    start, results = time.perf_counter(), []
    for arm in ARMS:
        results.append(finished_arm(arm, runs) if args.from_runs else
                       run_arm(arm, args.seeds, args.steps, runs))
        r = results[-1]
        print(f"{arm.name}: strict {r.share(r.strict):.0%} converged, loose "
              f"{r.share(r.loose):.0%}, peaks {r.share(r.peaks):.0%} ({r.seconds:.0f} s)",
              flush=True)
    figure = args.out / "seed_study.png"
    plot(results, figure, args.steps)
    command = "python -m gan_cli.studies.blog" + (
        f" --seeds {args.seeds}" if args.seeds != 20 else "") + (
        f" --steps {args.steps}" if args.steps != 5000 else "")
    seconds = sum(r.seconds for r in results) if args.from_runs else \
        time.perf_counter() - start
    write_report(results, report, figure, command, seconds, args.steps, previous,
                 rebuilt=args.from_runs)
    print(f"wrote {report} and {figure}; runs in {runs}")
    return report


if __name__ == "__main__":
    main()
