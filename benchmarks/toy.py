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

from typing import Callable, Optional

from common import Run, compare, gan_train, reference_script

TOY = ["data=trimodal", "model=blog_onestop", "optim=gd_exp_decay", "train.batch_size=64",
       "print_config=false", "device=cpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--fast", action="store_true", help="1 repeat of 200 steps (CI)")
    parser.add_argument("--optim", choices=("sgd", "adam"), default="sgd",
                        help="sgd: optim=gd_exp_decay (the preset's); adam: optim=adam")
    parser.add_argument("--mode", choices=("eager", "compiled", "both"), default="both",
                        help="train.compile of the gan-train runs (see above)")
    args = parser.parse_args()
    if args.fast:
        args.repeats, args.steps = 1, 200
    toy = [*TOY, f"train.steps={args.steps}"] + (["optim=adam"] if args.optim == "adam" else [])
    with tempfile.TemporaryDirectory(prefix="gan_bench_") as root:
        warm_cache = Path(root) / "compile_cache"

        def ours(compile_setting: str, cache: Callable[[int], Optional[Path]]) -> Run:
            def one(i: int) -> tuple[float, float, float]:
                wall, summary, peak = gan_train([*toy, f"train.compile={compile_setting}"],
                                                Path(root) / f"run_{compile_setting}_{i}",
                                                args.threads, cache(i))
                return wall, summary["steps_per_sec"], peak
            return one

        def reference(i: int) -> tuple[float, float, float]:
            wall, out, peak = reference_script(
                "reference_toy.py", ["--steps", str(args.steps), "--optim", args.optim],
                args.threads)
            return wall, out["steps_per_sec"], peak

        compiled = ours("true", lambda i: warm_cache)
        sides: dict[str, Run] = {"gan-train": compiled if args.mode != "eager" else
                                 ours("false", lambda i: None), "reference": reference}
        if args.mode == "both":
            sides["eager"] = ours("false", lambda i: None)
            sides["cold cache"] = ours("true", lambda i: Path(root) / f"cold_cache_{i}")
        if args.mode != "eager":  # fill the warm cache (untimed)
            gan_train([*TOY, "train.steps=3", "train.compile=true"] +
                      (["optim=adam"] if args.optim == "adam" else []),
                      Path(root) / "warm_up", args.threads, warm_cache)
        target = 2 if args.mode == "eager" else (4 if args.optim == "adam" else 3)
        compare(f"toy, {args.steps} steps, batch 64, {args.optim}, {args.threads} thread(s)",
                "steps/s", sides, args.repeats, target=target)


if __name__ == "__main__":
    main()
