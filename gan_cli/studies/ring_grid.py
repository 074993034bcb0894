"""The 2-D mode-collapse benchmarks against the published tables: `python -m gan_cli.studies.ring_grid`.

Trains ring8 (8 modes on a circle) and grid25 (a 5 x 5 grid), each with a plain GAN
(the runner's defaults) and with the best remedy measured (experiment=ring8_best,
grid25_best), over --seeds seeds as one batched run each (train.replicas; the best
remedies' wide networks gain nothing from batching, so their seeds run as separate
processes, --jobs at a time), then writes docs/ring_grid.md: per configuration the modes
covered and the high-quality share over the seeds, beside the numbers PacGAN's Table 1
reports (Lin et al. 2018). --reuse reads finished runs back instead of training them: the
report again, or a study stopped part-way continued (separate runs: seed by seed).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from gan_cli.studies import finished_summary, machine, run_replicas, run_seeds


@dataclass
class Setup:
    name: str  # shown in the table
    overrides: list[str]
    steps: int
    published: str  # what PacGAN's Table 1 reports for the comparable setting
    batched: bool = True  # the seeds as one batched run; False: separate runs side by side


SETUPS = [
    Setup("ring8, plain GAN", ["data=ring8"], 5000,
          "GAN: 6.3 / 8 modes, 98.2 % high quality"),
    Setup("ring8, best remedy (`experiment=ring8_best`)", ["experiment=ring8_best"], 5000,
          "PacGAN4: 7.8 / 8 modes", batched=False),
    Setup("grid25, plain GAN", ["data=grid25"], 5000,
          "GAN: 17.3 / 25 modes, 94.8 % high quality"),
    Setup("grid25, best remedy (`experiment=grid25_best`)", ["experiment=grid25_best"], 30000,
          "PacGAN4: 24.8 / 25 modes", batched=False),
]


@dataclass
class Result:
    setup: Setup
    steps: int
    modes: list[int]  # per seed, at the end
    n_modes: int
    hq: list[float]
    diverged: int
    seconds: float
    accepted: list[float]  # per seed, the share rejection sampling kept ([] when off)
    ended: datetime  # when the last of its runs finished
    unfiltered: list[tuple[int, float]]  # per seed, (modes, hq) of all of G's samples
    # ([] unless rejection sampling filtered the ones above)
    threads: int  # torch threads per run
    run_seconds: float = 0.0  # the runs' own times (end - start) added up


def run(setup: Setup, seeds: int, steps_scale: float, runs: Path, jobs: int,
        reuse: bool = False) -> Result:
    """Train the setup's seeds, or with reuse read them from a finished earlier run."""
    steps = max(1, round(setup.steps * steps_scale))
    run_dir = runs / setup.overrides[0].split("=")[1]
    overrides = [*setup.overrides, "train.eval_every=null"]
    if setup.batched:
        summaries = earlier_summaries(seeds, steps, run_dir) if reuse else None
        summaries = summaries or [run_replicas(overrides, seeds, steps, run_dir)[0]]
    else:  # with reuse, only the seeds not finished yet are trained
        summaries = run_seeds(overrides, seeds, steps, run_dir, jobs, reuse)
    per = summaries[0]["per_replica"] if setup.batched else summaries
    metrics = [p["metrics"] for p in per]
    started = min(datetime.fromisoformat(s["manifest"]["started_at"]) for s in summaries)
    ended = max(datetime.fromisoformat(s["manifest"]["ended_at"]) for s in summaries)
    accepted = [m["accepted"] for m in metrics if "accepted" in m]
    unfiltered = [without_rejection(run_dir / f"seed_{k}") for k in range(seeds)] \
        if accepted and not setup.batched else []
    return Result(setup, steps, [int(m.get("modes_covered", 0)) for m in metrics],
                  max(int(m.get("n_modes", 0)) for m in metrics),
                  [m.get("hq_fraction", math.nan) for m in metrics],
                  sum(p["status"] == "diverged" for p in per), (ended - started).total_seconds(),
                  accepted, ended, unfiltered,
                  max(s["manifest"]["torch_threads"] for s in summaries),
                  sum(took(s) for s in summaries))


def took(summary: dict) -> float:
    """Seconds from the run's start to its end."""
    m = summary["manifest"]
    return (datetime.fromisoformat(m["ended_at"]) -
            datetime.fromisoformat(m["started_at"])).total_seconds()


def without_rejection(run_dir: Path) -> tuple[int, float]:
    """Modes covered and hq of all the samples G draws from the run's fixed evaluation
    noise at its last checkpoint, as if rejection sampling were off."""
    import torch

    from gan_cli.build import build_conditioning, build_data, build_models
    from gan_cli.checkpoint import load_checkpoint, run_config
    from gan_cli.evaluate import mode_statistics

    cpu = torch.device("cpu")
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", cpu)
    cfg = run_config(state, run_dir)
    data = build_data(cfg.data, cpu)
    models = build_models(cfg.model, data, cpu, build_conditioning(cfg.model, cfg.loss, data))
    models.generator.load_state_dict(state["generator_ema"] or state["generator"])
    with torch.no_grad():
        fake = models.generator.eval()(state["eval_z"])
    stats = mode_statistics(fake, data, cfg.eval.hq_sigmas)
    return stats["modes_covered"], stats["hq_fraction"]


def earlier_summaries(seeds: int, steps: int, run_dir: Path) -> Optional[list[dict]]:
    """The summary of a finished batched run of this setup in run_dir, for these seeds and
    steps, as a list of one; None when there is none to reuse. The config itself is not
    compared: --reuse trusts that the runs are this setup's."""
    summary = finished_summary(run_dir, steps)
    if summary is None or len(summary.get("per_replica", [])) != seeds:
        return None
    return [summary]


def spread(values: Sequence[float], digits: int) -> str:
    """'mean ± std (min-max)'."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def write_report(results: list[Result], path: Path, command: str,
                 left_out: Sequence[Setup] = ()) -> None:
    seeds = len(results[0].modes)
    lines = [
        "# ring8 and grid25 against the published tables",
        "",
        f"Generated by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"({machine(threads=False)}; torch threads per run: {max(r.threads for r in results)}"
        "); every number below is from the runs it trained (with `--reuse`, "
        "read back from an earlier invocation's runs: each setup's line says when they "
        "finished and how long they took).",
        "",
        f"Each setup is trained on seeds 0..{seeds - 1}, as one batched run (`train.replicas`) "
        "or, for wide networks, as separate runs, "
        "and evaluated at its last step on 10,000 samples: a mode is covered when it holds "
        "at least 10 % of its weight in high-quality samples (within 3 standard deviations "
        "of it), and `hq` is the share of high-quality samples (the definitions of VEEGAN "
        "and PacGAN).",
        "",
        "| setup | steps | modes covered (mean ± std, min–max) | all modes | hq (mean ± std, "
        "min–max) | PacGAN, Table 1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        every = sum(m == r.n_modes for m in r.modes)
        lines.append(f"| {r.setup.name} | {r.steps} | {spread(r.modes, 1)} / {r.n_modes} | "
                     f"{every}/{len(r.modes)} seeds | {spread(r.hq, 3)} | {r.setup.published} |")
    lines += [
        "",
        "Per seed (modes / hq):",
        "",
    ]
    for r in results:
        cells = ", ".join(f"{m}/{h:.2f}" for m, h in zip(r.modes, r.hq))
        extra = f"; {r.diverged} diverged" if r.diverged else ""
        if r.accepted:
            extra += (f"; hq over the samples D's rejection sampling kept, "
                      f"{statistics.fmean(r.accepted):.0%} of G's on average")
        if r.unfiltered:
            extra += ("; all of G's samples, without rejection: " +
                      ", ".join(f"{m}/{h:.2f}" for m, h in r.unfiltered))
        own = ""  # runs side by side (--jobs), or trained by several invocations (--reuse)
        if abs(r.run_seconds - r.seconds) > 0.05 * r.seconds:
            own = f"; its runs' own times add up to {r.run_seconds / 60:.1f} min"
        lines.append(f"- {r.setup.name}: {cells}{extra} ({r.seconds / 60:.1f} min from the "
                     f"first start to the last end{own}, finished "
                     f"{r.ended.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC)")
    if left_out:
        lines += ["", "Not run for this report (left out with `--only`): " +
                  "; ".join(s.name for s in left_out) + "."]
    lines += [
        "",
        "## Where our setup differs from the papers'",
        "",
        "- The networks, batch size, optimizer and training length are ours (the presets "
        "named in each row; the plain GAN is the runner's default: 128 × 128 LeakyReLU "
        "MLPs, batch 512, Adam 1e-3 with β1 0.5 decaying to 3 %, 5,000 steps, 2-D "
        "stratified uniform noise); the published numbers come from the papers' own "
        "architectures and training schedules, and are averages over their own seeds.",
        "- The best remedies are not PacGAN: `ring8_best` is wider, deeper networks with a "
        "higher learning rate, annealed instance noise, D's minibatch standard deviation "
        "and the R1 penalty (γ 0.001); `grid25_best` the same networks at the default "
        "learning rate (1e-3) with a 100-category discrete latent (four per mode), D's "
        "minibatch standard deviation, R1 (γ 0.01) and the adaptive balance (instance "
        "noise of at most 0.1 while D's accuracy exceeds 0.9), noise on [−10, 10] and "
        "30,000 steps. Both are evaluated on the samples that discriminator "
        "rejection sampling keeps (Azadi et al. 2019), a remedy neither paper used; each "
        "line above also gives the numbers of all of G's samples. "
        "`model.discriminator.pack=4` alone, on the default networks, covers far fewer modes "
        "here (see docs/toolbox.md's table).",
        "- The high-quality share is ours to the same definition; PacGAN's plain GAN reaches "
        "a high share on the modes it keeps, while ours spreads mass along the lines "
        "between modes on grid25 unless trained longer (see docs/toolbox.md).",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m gan_cli.studies.ring_grid",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds per setup (default 10)")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="fraction of each setup's steps (default 1; the CI test's is tiny)")
    parser.add_argument("--only", type=int, nargs="*", default=None,
                        help="run only these setups (0..3, in the table's order)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="runs side by side for setups not batched (default: the cores)")
    parser.add_argument("--reuse", action="store_true",
                        help="read runs already finished in --runs instead of training them "
                        "(separate runs: seed by seed, training only the others)")
    parser.add_argument("--out", type=Path, default=Path("docs"),
                        help="folder for ring_grid.md (default docs)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="folder for the runs (default outputs/studies/ring_grid/<time>)")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (most setups run them as one batched run)")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.reuse and args.runs is None:
        parser.error("--reuse needs --runs: the folder of the runs to read back")
    runs = args.runs or Path("outputs/studies/ring_grid") / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    chosen = [SETUPS[i] for i in args.only] if args.only is not None else SETUPS
    results = []
    for setup in chosen:
        results.append(run(setup, args.seeds, args.steps_scale, runs, args.jobs, args.reuse))
        r = results[-1]
        print(f"{setup.name}: modes {spread(r.modes, 1)}, hq {spread(r.hq, 3)} "
              f"({r.seconds / 60:.1f} min)", flush=True)
    given = list(argv) if argv is not None else sys.argv[1:]
    command = " ".join(["python -m gan_cli.studies.ring_grid", *given])
    report = args.out / "ring_grid.md"
    write_report(results, report, command, left_out=[s for s in SETUPS if s not in chosen])
    print(f"wrote {report}")
    return report


if __name__ == "__main__":
    main()
