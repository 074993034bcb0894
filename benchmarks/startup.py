"""Start-up costs (issue: speed, item 1): `gan-train --help` and `gan-train experiment=smoke`.

    python benchmarks/startup.py [--repeats 5]
    python benchmarks/startup.py --fast       # CI: 1 repeat

Prints the median wall time and peak resident memory of each command, in its own
process, against the targets (--help under 1.5 s; the smoke run end to end under 10 s).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from common import timed

TARGETS = {"gan-train --help": 1.5, "gan-train experiment=smoke": 10.0}  # seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fast", action="store_true", help="1 repeat (CI)")
    args = parser.parse_args()
    repeats = 1 if args.fast else args.repeats
    gan_train = shutil.which("gan-train") or "gan-train"
    with tempfile.TemporaryDirectory(prefix="gan_bench_") as root:
        commands = {
            "gan-train --help": lambda i: [gan_train, "--help"],
            "gan-train experiment=smoke": lambda i: [
                gan_train, "experiment=smoke", "print_config=false",
                f"hydra.run.dir={Path(root) / f'smoke_{i}'}"],
        }
        results = {name: [timed(command(i)) for i in range(repeats)]
                   for name, command in commands.items()}
    print(f"start-up, median of {repeats}:")
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        peak = statistics.median(r[2] for r in runs)
        verdict = "within" if wall < TARGETS[name] else "over"
        print(f"  {name:28s} {wall:6.2f} s wall   {peak:6.0f} MB peak   "
              f"({verdict} the {TARGETS[name]:g} s target)")


if __name__ == "__main__":
    main()
