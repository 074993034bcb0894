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
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOY = ["data=trimodal", "model=blog_onestop", "optim=gd_exp_decay", "train.batch_size=64",
       "print_config=false", "device=cpu"]


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return wall, done.stdout


def ours(folder: Path, steps: int, threads: int) -> tuple[float, float]:
    """(wall s, training steps/s) of one gan-train run."""
    wall, _ = timed([shutil.which("gan-train") or "gan-train", *TOY, f"train.steps={steps}",
                     f"threads={threads}", f"hydra.run.dir={folder}"])
    return wall, json.loads((folder / "summary.json").read_text())["steps_per_sec"]


def reference(steps: int, threads: int) -> tuple[float, float]:
    wall, out = timed([sys.executable, "-c", f"import torch; torch.set_num_threads({threads}); "
                       f"import runpy, sys; sys.argv = ['reference_toy', '--steps', '{steps}']; "
                       f"runpy.run_path({str(HERE / 'reference_toy.py')!r}, "
                       "run_name='__main__')"])
    return wall, json.loads(out.strip().splitlines()[-1])["steps_per_sec"]


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
    rows = {"gan-train": ([], []), "reference": ([], [])}
    with tempfile.TemporaryDirectory(prefix="gan_bench_") as root:
        for i in range(args.repeats):  # interleaved: the machine's load hits both alike
            for name, run in (("gan-train", lambda: ours(Path(root) / f"run_{i}", args.steps,
                                                          args.threads)),
                              ("reference", lambda: reference(args.steps, args.threads))):
                wall, rate = run()
                rows[name][0].append(wall)
                rows[name][1].append(rate)
            print(f"repeat {i + 1}/{args.repeats}: gan-train {rows['gan-train'][1][-1]:.0f} "
                  f"steps/s, reference {rows['reference'][1][-1]:.0f} steps/s", flush=True)
    med = statistics.median
    print(f"\ntoy, {args.steps} steps, batch 64, {args.threads} thread(s), "
          f"median of {args.repeats}:")
    for name, (walls, rates) in rows.items():
        print(f"  {name:10s} {med(rates):8.0f} steps/s in training   {med(walls):7.1f} s wall")
    (our_wall, our_rate), (ref_wall, ref_rate) = ((med(w), med(r)) for w, r in rows.values())
    print(f"  ratio (gan-train / reference): steps/s {our_rate / ref_rate:.2f}x (target >= 2), "
          f"wall time {ref_wall / our_wall:.2f}x")


if __name__ == "__main__":
    main()
