"""The reference for the toy benchmark: seed 000's GAN as the straightforward eager
PyTorch script users write — separate D passes on real and fake batches, nn.BCELoss on
sigmoid outputs, `.item()` every step, plain SGD with the blog's step decay (or, with
--optim adam, Adam at lr 1e-3, betas (0.5, 0.999), decaying smoothly to 3 %).

    python benchmarks/reference_toy.py [--steps 5000] [--batch 64] [--seed 0] [--optim sgd]

Same work as `gan-train data=trimodal model=blog_onestop optim=gd_exp_decay
train.batch_size=64` (--optim adam: `optim=adam`): three modes at -4, 0, 4 (std 0.5), G 1 -> 12 -> 12 -> 12 -> 1
(softplus), D 1 -> 8 -> 8 -> 8 -> 1 (tanh, sigmoid out), N(0, 1) weights, stratified
noise on [-8, 8]. Prints one JSON line: steps/s of the training loop (start-up
excluded) and the losses it logged.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn


def mlp(widths: list[int], activation: type[nn.Module], out: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), activation()]
    layers = layers[:-1] + ([out] if out is not None else [])
    net = nn.Sequential(*layers)
    for m in net:
        if isinstance(m, nn.Linear):  # the aylien code's initialiser
            nn.init.normal_(m.weight, 0.0, 1.0)
            nn.init.zeros_(m.bias)
    return net


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optim", choices=("sgd", "adam"), default="sgd",
                        help="sgd: optim=gd_exp_decay's; adam: optim=adam's")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    means = torch.tensor([-4.0, 0.0, 4.0])
    G = mlp([1, 12, 12, 12, 1], nn.Softplus, None)
    D = mlp([1, 8, 8, 8, 1], nn.Tanh, nn.Sigmoid())
    if args.optim == "sgd":
        opt_g = torch.optim.SGD(G.parameters(), lr=0.005)
        opt_d = torch.optim.SGD(D.parameters(), lr=0.005)
        sched = [torch.optim.lr_scheduler.StepLR(o, 150, 0.95) for o in (opt_g, opt_d)]
    else:
        opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
        gamma = 0.03 ** (1 / args.steps)
        sched = [torch.optim.lr_scheduler.ExponentialLR(o, gamma) for o in (opt_g, opt_d)]
    bce = nn.BCELoss()
    ones, zeros = torch.ones(args.batch, 1), torch.zeros(args.batch, 1)

    def noise() -> torch.Tensor:  # one draw per stratum of [-8, 8], shuffled
        strata = torch.randperm(args.batch).float().unsqueeze(1)
        return -8 + 16 * (strata + torch.rand(args.batch, 1)) / args.batch

    losses = []
    start = time.perf_counter()
    for step in range(args.steps):
        real = means[torch.randint(3, (args.batch,))].unsqueeze(1) + 0.5 * torch.randn(args.batch, 1)
        fake = G(noise()).detach()
        d_loss = bce(D(real), ones) + bce(D(fake), zeros)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = bce(D(G(noise())), ones)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        for s in sched:
            s.step()
        losses.append((d_loss.item(), g_loss.item()))
    seconds = time.perf_counter() - start
    print(json.dumps({"steps": args.steps, "train_time_s": round(seconds, 3),
                      "steps_per_sec": round(args.steps / seconds, 1),
                      "final_losses": losses[-1]}))


if __name__ == "__main__":
    main()
