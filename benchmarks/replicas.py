"""Batched seed replicas against single runs, measured side by side (issue: sweeps, item 6).

    python benchmarks/replicas.py speed [--replicas 64] [--repeats 3]
    python benchmarks/replicas.py compiled [--replicas 64] [--repeats 5]
    python benchmarks/replicas.py agreement [--seeds 16]

speed: the toy of seed 000 (tri-modal 1-D mixture, its one-stop networks, batch 64,
5,000 steps, evaluation every 500 steps with pictures), as one single run and as one
`train.replicas=R` run, interleaved, `--repeats` times. Prints the medians of the
full command's wall time and of training steps/s, and the ratios: the R-replica
run's cost in single runs (target: at most 3) and its replica-steps/s against R
sequential single runs (whose wall time is R x one single run's: they are the same
command R times).

compiled: the same toy with Adam on both sides (optim=adam; the reference script
--optim adam), evaluated only at the end: `train.replicas=R train.compile=true` (warm
compile cache), the reference script (one run: its steps/s), and the eager replica run,
interleaved. Target: the compiled R-replica run's replica-steps/s >= 30x the
reference's steps/s (issue 20).

agreement: the default run (`gan-train`), 16 seeds as 16 separate runs (two at a
time, one thread each) and as one `train.replicas=16` run. Prints per side the
median final w1 with its interquartile range and the share of converged runs: the
two should agree within the seed-to-seed spread.

Every number comes from summary.json files the runs write; the run folders land
in a temporary folder that is deleted afterwards (--keep to keep it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import compare, gan_train_runs, reference_script

TOY = ["data=trimodal", "model=blog_onestop", "optim=gd_exp_decay", "train.batch_size=64",
       "train.steps=5000"]
QUIET = ["print_config=false"]


def gan_train(folder: Path, *overrides: str) -> tuple[float, dict]:
    """Run the installed gan-train; returns its wall time and summary.json."""
    command = [shutil.which("gan-train") or "gan-train", *QUIET, *overrides,
               f"hydra.run.dir={folder}"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return wall, json.loads((folder / "summary.json").read_text())


def speed(args: argparse.Namespace, root: Path) -> None:
    r = args.replicas
    single_wall, single_rate, batched_wall, batched_rate = [], [], [], []
    for i in range(args.repeats):  # interleaved: the machine's load hits both alike
        wall, summary = gan_train(root / f"single_{i}", *TOY)
        single_wall.append(wall)
        single_rate.append(summary["steps_per_sec"])
        wall, summary = gan_train(root / f"replicas_{i}", *TOY, f"train.replicas={r}")
        batched_wall.append(wall)
        batched_rate.append(summary["steps_per_sec"] * r)
        print(f"repeat {i + 1}/{args.repeats}: single {single_wall[-1]:.1f} s, "
              f"{r} replicas {batched_wall[-1]:.1f} s", flush=True)
    med = statistics.median
    print(f"\ntoy, 5000 steps, median of {args.repeats}:")
    print(f"  one single run:        {med(single_wall):7.1f} s wall, "
          f"{med(single_rate):8.0f} steps/s in training")
    print(f"  {r} sequential runs:    {r * med(single_wall):7.1f} s wall (= {r} x one), "
          f"{med(single_rate):8.0f} replica-steps/s")
    print(f"  train.replicas={r}:     {med(batched_wall):7.1f} s wall, "
          f"{med(batched_rate):8.0f} replica-steps/s in training")
    print(f"  cost of the {r}-replica run in single runs: "
          f"{med(batched_wall) / med(single_wall):.2f} (target <= 3)")
    print(f"  replica-steps/s against sequential runs: "
          f"{med(batched_rate) / med(single_rate):.1f}x (training loop), "
          f"{r * med(single_wall) / med(batched_wall):.1f}x (wall time)")


def compiled(args: argparse.Namespace, root: Path) -> None:
    r = args.replicas
    toy = [o for o in TOY if not o.startswith("optim=")] + [
        "optim=adam", "train.eval_every=null", "device=cpu", *QUIET, f"train.replicas={r}"]
    runs = gan_train_runs(toy, root, 1, lambda s: s["steps_per_sec"] * r, "both")
    runs.pop("cold cache")

    def reference(i: int) -> tuple[float, float, float]:
        wall, out, peak = reference_script("reference_toy.py", ["--optim", "adam"], 1)
        return wall, out["steps_per_sec"], peak

    compare(f"toy, 5000 steps, batch 64, adam, 1 thread: {r} replicas against one "
            "reference run", "replica-steps/s",
            {f"compiled {r}": runs["gan-train"], "reference": reference,
             f"eager {r}": runs["eager"]}, args.repeats, target=30)


def agreement(args: argparse.Namespace, root: Path) -> None:
    n = args.seeds
    common = ["eval.plots=false"]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:  # two runs at a time, a core each
        singles = list(pool.map(lambda s: gan_train(root / f"seed_{s}", *common, f"seed={s}",
                                                    "threads=1")[1], range(n)))
    separate_s = time.perf_counter() - start
    batched_s, summary = gan_train(root / "replicas", *common, f"train.replicas={n}")
    sides = {
        f"{n} separate runs": [(s["metrics"]["w1"], s["converged_at_step"]) for s in singles],
        f"train.replicas={n}": [(p["metrics"]["w1"], p["converged_at_step"])
                                for p in summary["per_replica"]],
    }
    print(f"\ndefault run (tri-modal, 5000 steps), seeds 0..{n - 1}:")
    print(f"  separate runs took {separate_s:.0f} s (2 at a time), the replica run "
          f"{batched_s:.0f} s")
    for name, results in sides.items():
        w1 = sorted(w for w, _ in results)
        q1, median, q3 = statistics.quantiles(w1, n=4, method="inclusive")
        converged = sum(c is not None for _, c in results)
        print(f"  {name:22s} median w1 {median:.4f} (IQR {q1:.4f} .. {q3:.4f}), "
              f"converged {converged}/{n}")
    pairs = zip(sides[f"{n} separate runs"], sides[f"train.replicas={n}"])
    print("  per seed (separate | replica) final w1: " +
          ", ".join(f"{a[0]:.3f}|{b[0]:.3f}" for a, b in pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["speed", "compiled", "agreement"])
    parser.add_argument("--replicas", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gan_bench_"))
    try:
        {"speed": speed, "compiled": compiled, "agreement": agreement}[args.what](args, root)
    finally:
        if args.keep:
            print(f"run folders: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
