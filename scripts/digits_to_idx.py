"""Write scikit-learn's 1,797 handwritten 8x8 digits as MNIST-format IDX files.

Real handwriting that works offline, for trying data=mnist without the network:

    python scripts/digits_to_idx.py /tmp/digits_idx
    gan-train data=mnist data.root=/tmp/digits_idx data.download=false

Each digit (values 0..16) is scaled to 0..255, upsampled bicubically to 20x20 and
padded by 4 pixels to 28x28, as MNIST centres a 20x20 digit in a 28x28 box.

A dev-only tool: it needs scikit-learn (`pip install scikit-learn`), which is not a
dependency of gan_cli.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gan_cli.data.mnist import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, write_idx


def upscale(digits: np.ndarray) -> np.ndarray:
    """(N, 8, 8) values 0..16 -> (N, 28, 28) uint8: a 20x20 digit in a 28x28 box."""
    x = torch.from_numpy(digits).float().unsqueeze(1) * (255 / 16)  # (N, 1, 8, 8)
    # bicubic overshoots a little at strokes' edges: clamp back into 0..255
    x = F.interpolate(x, size=(20, 20), mode="bicubic", align_corners=False).clamp(0, 255)
    x = F.pad(x, (4, 4, 4, 4))  # (N, 1, 28, 28)
    return x.round().to(torch.uint8).squeeze(1).numpy()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the four .gz files into")
    parser.add_argument("--test-fraction", type=float, default=0.15,
                        help="share of the digits in the t10k (test) files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    args = parser.parse_args(argv)
    if not 0 < args.test_fraction < 1:
        parser.error(f"--test-fraction={args.test_fraction}: must be between 0 and 1")

    from sklearn.datasets import load_digits  # dev-only dependency, bundled data: no network

    digits = load_digits()
    images = upscale(digits.images.astype(np.float32))
    labels = digits.target.astype(np.uint8)
    order = np.random.default_rng(args.seed).permutation(len(labels))
    n_test = max(1, round(len(labels) * args.test_fraction))
    test, train = order[:n_test], order[n_test:]

    for name, array in ((TRAIN_IMAGES, images[train]), (TRAIN_LABELS, labels[train]),
                        (TEST_IMAGES, images[test]), (TEST_LABELS, labels[test])):
        path = args.out_dir / (name + ".gz")
        write_idx(path, array)
        print(f"wrote {path}: {'x'.join(map(str, array.shape))} uint8")


if __name__ == "__main__":
    main()
