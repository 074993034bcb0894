"""Our runner against the reference script on MNIST-shaped images (issue: speed, item 1).

    python benchmarks/mnist.py [--model mlp|dcgan] [--repeats 5] [--steps 300]
    python benchmarks/mnist.py --model dcgan --precision    # bf16 against fp32
    python benchmarks/mnist.py --fast        # CI: 1 repeat of 20 steps (ratios only)

Writes a synthetic MNIST-shaped set (random 28 x 28 digits-sized images, 10 labels;
its size, 60,000 training images by default, is what a DataLoader walks through),
then runs, interleaved, `gan-train experiment=mnist_mlp` (or `mnist_dcgan`) and
benchmarks/reference_mnist.py, the same networks written as the plain script with a
Dataset + DataLoader, `--repeats` times with the same torch thread count each. Prints
the medians of images/s in the training loop (our evaluation and the classifier's
one-off training excluded: summary.json's steps_per_sec x batch) and of the wall
time, and our/reference ratios (target for the MLP: 1.3x images/s). --mode as in
benchmarks/toy.py: eager, compiled or both (compiled against eager: the issue's 1.3x).

--precision compares train.precision=bf16 with fp32 instead (target 1.4x images/s for
the DCGAN): the speed as above, interleaved; then the quality, on real handwriting
(scikit-learn's 1,797 digits as MNIST files, scripts/digits_to_idx.py): fd and
classes_covered after --steps steps for --seeds seeds each, so that bf16's values
can be judged against fp32's seed-to-seed spread.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from common import MODES, compare, gan_train_runs, reference_script, gan_train
from gan_cli.data.mnist import write_idx

BATCH = {"mlp": 100, "dcgan": 64}  # the presets' batch sizes


def synthetic_set(folder: Path, n_train: int, n_test: int = 1000) -> None:
    """Four uncompressed IDX files of random images (the cost does not depend on them)."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))


def cache_quick_classifier(folder: Path) -> None:
    """Cache an evaluation classifier trained for a few steps in the data folder: its
    one-off training (minutes on 60,000 images, once per data set) is not what is
    measured, and random images hold nothing to learn."""
    import functools

    from gan_cli import image_metrics
    from gan_cli.data.mnist import IDXImages

    image_metrics.MIN_STEPS = 10
    image_metrics.train_classifier = functools.partial(image_metrics.train_classifier, epochs=0)
    image_metrics.load_or_train_classifier(IDXImages(root=str(folder), download=False), "cpu",
                                           log=lambda line: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("mlp", "dcgan"), default="mlp")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--images", type=int, default=60_000, help="training images")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--fast", action="store_true", help="1 repeat of 20 steps (CI)")
    parser.add_argument("--mode", choices=MODES, default="both",
                        help="train.compile of the gan-train runs: eager, compiled (warm "
                        "cache) or both (and a cold-cache run); see benchmarks/toy.py")
    parser.add_argument("--precision", action="store_true", help="bf16 against fp32")
    parser.add_argument("--seeds", type=int, default=3, help="--precision: quality seeds")
    args = parser.parse_args()
    if args.fast:
        args.repeats, args.steps, args.images = 1, 20, 2000
    batch = BATCH[args.model]
    with tempfile.TemporaryDirectory(prefix="gan_bench_") as root:
        data = Path(root) / "data"
        data.mkdir()
        synthetic_set(data, args.images)
        cache_quick_classifier(data)
        preset = [f"experiment=mnist_{args.model}", f"data.root={data}", "data.download=false",
                  f"train.steps={args.steps}", "train.eval_every=null", "train.ckpt_every=null",
                  "eval.n_samples=500", "eval.plots=false", "print_config=false", "device=cpu"]

        if args.precision:
            def ours(i: int, extra: tuple = ()) -> tuple[float, float, float]:
                wall, summary, peak = gan_train([*preset, *extra],
                                                Path(root) / f"run_{i}_{len(extra)}",
                                                args.threads)
                return wall, summary["steps_per_sec"] * batch, peak

            compare(f"MNIST {args.model}, {args.steps} steps, batch {batch}, {args.threads} "
                    "thread(s)", "images/s",
                    {"bf16": lambda i: ours(i, ("train.precision=bf16",)), "fp32": ours},
                    args.repeats, target=1.4)
            quality(args, Path(root))
            return

        def reference(i: int) -> tuple[float, float]:
            wall, out, peak = reference_script("reference_mnist.py", [
                str(data), "--model", args.model, "--steps", str(args.steps),
                "--batch", str(batch)], args.threads)
            return wall, out["images_per_sec"], peak

        runs = gan_train_runs(preset, Path(root), args.threads,
                              lambda s: s["steps_per_sec"] * batch, args.mode)
        sides = {"gan-train": runs.pop("gan-train"), "reference": reference, **runs}
        compare(f"MNIST {args.model}, {args.images} images, {args.steps} steps, batch {batch}, "
                f"{args.threads} thread(s)", "images/s", sides, args.repeats,
                target=1.3 if args.model == "mlp" else 1.0)


def quality(args: argparse.Namespace, root: Path) -> None:
    """fd and classes_covered of fp32 and bf16 runs on real digits, per seed."""
    import subprocess
    import sys

    digits = root / "digits"
    subprocess.run([sys.executable, str(Path(__file__).parents[1] / "scripts" /
                                        "digits_to_idx.py"), str(digits)], check=True,
                   capture_output=True)
    steps = 20 if args.fast else args.steps
    print(f"\nquality on the 1,797 real digits after {steps} steps (the classifier is "
          "trained once, then cached):")
    for seed in range(1 if args.fast else args.seeds):
        cells = []
        for precision in ("fp32", "bf16"):
            _, summary, _ = gan_train([
                f"experiment=mnist_{args.model}", f"data.root={digits}", "data.download=false",
                f"train.steps={steps}", "train.eval_every=null", "train.ckpt_every=null",
                "eval.plots=false", "print_config=false", "device=cpu", f"seed={seed}",
                f"train.precision={precision}"], root / f"q_{precision}_{seed}", args.threads)
            m = summary["metrics"]
            cells.append(f"{precision}: fd {m['fd']:.2f} classes {m['classes_covered']}/10")
        print(f"  seed {seed}:  " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
