"""The reference for the MNIST benchmark: seed 004's vanilla GAN (or a DCGAN) as the
straightforward script users write — a torch Dataset that normalises each image as it
is fetched, a DataLoader, separate D passes on real and fake, nn.BCELoss on sigmoid
outputs, `.item()` every step, Adam (lr 2e-4, beta1 0.5) with its default implementation.

    python benchmarks/reference_mnist.py <folder with the IDX files> [--model mlp|dcgan]
        [--steps 300] [--batch 100]

Same networks as `gan-train experiment=mnist_mlp` (G 100 -> 256 -> 512 -> 1024 -> 784,
tanh; D 784 -> 1024 -> 512 -> 256 -> 1, dropout 0.3, LeakyReLU 0.2) or
`experiment=mnist_dcgan` (width 64). Prints one JSON line: images/s of the training
loop (one image = one real sample per step; start-up excluded).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class MNISTImages(Dataset):
    """Each image scaled to [0, 1] and normalised to [-1, 1] when fetched (ToTensor +
    Normalize((0.5,), (0.5,)), as the tutorials write it)."""

    def __init__(self, folder: Path):
        name = "train-images-idx3-ubyte"
        path = next(p for p in (folder / name, folder / (name + ".gz")) if p.is_file())
        self.images = read_idx(path)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = torch.from_numpy(self.images[i].astype(np.float32) / 255.0).unsqueeze(0)
        return (x - 0.5) / 0.5  # (1, 28, 28)


def mlp_gan() -> tuple[nn.Module, nn.Module]:
    G = nn.Sequential(nn.Linear(100, 256), nn.LeakyReLU(0.2), nn.Linear(256, 512),
                      nn.LeakyReLU(0.2), nn.Linear(512, 1024), nn.LeakyReLU(0.2),
                      nn.Linear(1024, 784), nn.Tanh(), nn.Unflatten(1, (1, 28, 28)))
    D = nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.LeakyReLU(0.2), nn.Dropout(0.3),
                      nn.Linear(1024, 512), nn.LeakyReLU(0.2), nn.Dropout(0.3),
                      nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Dropout(0.3),
                      nn.Linear(256, 1), nn.Sigmoid())
    return G, D


def dcgan(w: int = 64) -> tuple[nn.Module, nn.Module]:
    G = nn.Sequential(nn.Unflatten(1, (100, 1, 1)),
                      nn.ConvTranspose2d(100, 2 * w, 7, bias=False), nn.BatchNorm2d(2 * w),
                      nn.ReLU(), nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),
                      nn.BatchNorm2d(w), nn.ReLU(), nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Tanh())
    D = nn.Sequential(nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),
                      nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w),
                      nn.LeakyReLU(0.2), nn.Conv2d(2 * w, 1, 7), nn.Flatten(), nn.Sigmoid())
    return G, D


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", choices=("mlp", "dcgan"), default="mlp")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    G, D = mlp_gan() if args.model == "mlp" else dcgan()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    loader = DataLoader(MNISTImages(args.folder), batch_size=args.batch, shuffle=True,
                        drop_last=True)
    ones, zeros = torch.ones(args.batch, 1), torch.zeros(args.batch, 1)
    losses, step = [], 0
    start = time.perf_counter()
    while step < args.steps:
        for real in loader:
            fake = G(torch.randn(args.batch, 100))
            d_loss = bce(D(real), ones) + bce(D(fake.detach()), zeros)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = bce(D(G(torch.randn(args.batch, 100))), ones)  # fresh noise (seed 004)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            losses.append((d_loss.item(), g_loss.item()))
            step += 1
            if step == args.steps:
                break
    seconds = time.perf_counter() - start
    print(json.dumps({"steps": step, "train_time_s": round(seconds, 3),
                      "images_per_sec": round(step * args.batch / seconds, 1),
                      "final_losses": losses[-1]}))


if __name__ == "__main__":
    main()
