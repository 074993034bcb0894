"""Our runner against the reference script on seed 000's toy (issue: speed, item 1).

    python benchmarks/toy.py [--repeats 5] [--steps 5000] [--optim sgd|adam] [--mode both]
    python benchmarks/toy.py --fast          # CI: 1 repeat of 200 steps (ratios only)

Runs, interleaved, `gan-train data=trimodal model=blog_onestop optim=gd_exp_decay
train.batch_size=64` (--optim adam: optim=adam) and benchmarks/reference_toy.py (the
same work written as the plain eager script users write, with the same optimizer)
`--repeats` times, each in its own process with the same torch thread count. Prints
the medians of the training loop's steps/s (start-up, compilation and our evaluations
excluded: summary.json's steps_per_sec; the reference's own timer) and of the full
command's wall time, and our/reference ratios. The runs land in a temporary folder
that is deleted afterwards.

--mode: which gan-train runs. eager: train.compile=false against the reference (target
2x). compiled: train.compile=true with a warm compile cache (one untimed run fills a
cache of the benchmark's own first) against the reference (target 4x with adam, 3x
with sgd). both (the default): compiled, the reference, eager, and compiled with a
cold cache (an empty one per repeat: its wall time is what a first run costs).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import MODES, compare, gan_train_runs, reference_script

TOY = ["data=trimodal", "model=blog_onestop", "optim=gd_exp_decay", "train.batch_size=64",
       "train.eval_every=null", "print_config=false", "device=cpu"]  # evaluated at the end only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--fast", action="store_true", help="1 repeat of 200 steps (CI)")
    parser.add_argument("--optim", choices=("sgd", "adam"), default="sgd",
                        help="sgd: optim=gd_exp_decay (the preset's); adam: optim=adam")
    parser.add_argument("--mode", choices=MODES, default="both",
                        help="train.compile of the gan-train runs (see above)")
    args = parser.parse_args()
    if args.fast:
        args.repeats, args.steps = 1, 200
    toy = [*TOY, f"train.steps={args.steps}"] + (["optim=adam"] if args.optim == "adam" else [])
    with tempfile.TemporaryDirectory(prefix="gan_bench_") as root:
        def reference(i: int) -> tuple[float, float, float]:
            wall, out, peak = reference_script(
                "reference_toy.py", ["--steps", str(args.steps), "--optim", args.optim],
                args.threads)
            return wall, out["steps_per_sec"], peak

        runs = gan_train_runs(toy, Path(root), args.threads, lambda s: s["steps_per_sec"],
                              args.mode)
        sides = {"gan-train": runs.pop("gan-train"), "reference": reference, **runs}
        target = 2 if args.mode == "eager" else (4 if args.optim == "adam" else 3)
        compare(f"toy, {args.steps} steps, batch 64, {args.optim}, {args.threads} thread(s)",
                "steps/s", sides, args.repeats, target=target)


if __name__ == "__main__":
    main()
