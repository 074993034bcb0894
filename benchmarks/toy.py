"""Our runner against the reference script on seed 000's toy (issue: speed, item 1).

    python benchmarks/toy.py [--repeats 5] [--steps 5000]
    python benchmarks/toy.py --fast          # CI: 1 repeat of 200 steps (ratios only)

Runs, interleaved, `gan-train data=trimodal model=blog_onestop optim=gd_exp_decay
train.batch_size=64` and benchmarks/reference_toy.py (the same work written as the
plain eager script users write) `--repeats` times, each in its own process with the
same torch thread count. Prints the medians of the training loop's steps/s (start-up
and our evaluations excluded: summary.json's steps_per_sec; the reference's own
timer) and of the full command's wall time, and our/reference ratios (target: 2x
steps/s). The runs land in a temporary folder that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import compare, gan_train, reference_script

TOY = ["data=trimodal", "model=blog_onestop", "optim=gd_exp_decay", "train.batch_size=64",
       "print_config=false", "device=cpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--fast", action="store_true", help="1 repeat of 200 steps (CI)")
    args = parser.parse_args()
    if args.fast:
        args.repeats, args.steps = 1, 200
    with tempfile.TemporaryDirectory(prefix="gan_bench_") as root:
        def ours(i: int) -> tuple[float, float]:
            wall, summary, peak = gan_train([*TOY, f"train.steps={args.steps}"],
                                      Path(root) / f"run_{i}", args.threads)
            return wall, summary["steps_per_sec"], peak

        def reference(i: int) -> tuple[float, float]:
            wall, out, peak = reference_script("reference_toy.py", ["--steps", str(args.steps)],
                                         args.threads)
            return wall, out["steps_per_sec"], peak

        compare(f"toy, {args.steps} steps, batch 64, {args.threads} thread(s)", "steps/s",
                {"gan-train": ours, "reference": reference}, args.repeats, target=2)


if __name__ == "__main__":
    main()
