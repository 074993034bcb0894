"""train(cfg, run_dir) -> summary: build everything, run the alternating D/G loop, write the run folder."""

from __future__ import annotations

import copy
import csv
import json
import math
import random
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from gan_cli import plots
from gan_cli.build import build_data, build_loss, build_models, build_optimizers, pick_device
from gan_cli.checkpoint import atomic_write, save_checkpoint
from gan_cli.config import UserError, validate_train_config
from gan_cli.console import RunConsole
from gan_cli.evaluate import default_w1_tol, evaluate_mixture, is_converged

CSV_COLUMNS = ["step", "d_loss", "g_loss", "d_real", "d_fake", "lr_g", "lr_d",
               "w1", "hq_fraction", "modes_covered", "mode_kl"]
SUMMARY_METRICS = ["w1", "hq_fraction", "modes_covered", "n_modes", "mode_kl"]


class StopRequest:
    """Set by SIGINT / SIGTERM; the loop stops at the next step boundary and saves.

    A second Ctrl-C raises KeyboardInterrupt at once.
    """

    def __init__(self) -> None:
        self.signal_name: Optional[str] = None

    def __call__(self, signum: int, frame) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name


@contextmanager
def catch_stop_signals() -> Iterator[StopRequest]:
    stop = StopRequest()
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop)
    except ValueError:  # not the main thread (e.g. some launchers): keep the defaults
        pass
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _json_safe(x):
    """JSON has no NaN or infinity: write null instead."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_json(path: Path, payload: dict) -> None:
    text = json.dumps(_json_safe(payload), indent=2, allow_nan=False)
    atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))


def finite_or_none(x: Optional[float]) -> Optional[float]:
    return x if x is not None and math.isfinite(x) else None


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train the GAN described by cfg; everything it writes goes into run_dir.

    Returns the summary that is also written to run_dir/summary.json. Raises
    UserError (before any training) for a bad config value.
    """
    start_time = time.perf_counter()
    run_dir = Path(run_dir)
    validate_train_config(cfg)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)

    data = build_data(cfg.data, device)
    models = build_models(cfg.model, data, device)
    loss = build_loss(cfg.loss)
    optims = build_optimizers(cfg.optim, models)
    G, D, noise = models.generator, models.discriminator, models.noise
    opt_g, opt_d = optims.generator, optims.discriminator
    # G's exponential moving average, used for evaluation and sampling when train.ema is set
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.train.ema is not None else None
    G_eval = G_ema if G_ema is not None else G

    t = cfg.train
    steps, batch = t.steps, t.batch_size
    w1_tol = cfg.eval.w1_tol or default_w1_tol(data)
    # evaluation draws from its own generator so it never shifts the training random stream
    eval_rng = torch.Generator(device=device).manual_seed(cfg.seed + 1_000_003)
    eval_z = noise(cfg.eval.n_samples, generator=eval_rng)  # fixed: frames are comparable

    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "plots").mkdir(exist_ok=True)
    console = RunConsole(run_dir / "train.log", steps)
    csv_file = open(run_dir / "metrics.csv", "w", newline="")
    metrics_csv = csv.DictWriter(csv_file, fieldnames=CSV_COLUMNS, restval="")
    metrics_csv.writeheader()

    rows: list[dict] = []
    frames: list[Path] = []
    final_metrics: dict = {}
    converged_at: Optional[int] = None
    status, error, step = "failed", None, 0
    eval_seconds = 0.0  # time spent off the training path (evaluation, plots, checkpoints)
    saved_step: Optional[int] = None  # step of checkpoints/last.pt

    def checkpoint_state() -> dict:
        return {
            "step": step,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "generator": G.state_dict(),
            "discriminator": D.state_dict(),
            "generator_ema": G_ema.state_dict() if G_ema is not None else None,
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "schedulers": [s.state_dict() for s in optims.schedulers],
            "eval_z": eval_z,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        }

    def save_last(periodic: bool) -> None:
        nonlocal saved_step
        state = checkpoint_state()
        if periodic:
            save_checkpoint(state, run_dir / "checkpoints" / f"step_{step:07d}.pt")
        save_checkpoint(state, run_dir / "checkpoints" / "last.pt")
        saved_step = step

    def evaluate() -> dict:
        nonlocal converged_at
        with torch.no_grad():
            fake = G_eval(eval_z)  # (N, d)
            real = data.sample(cfg.eval.n_samples, generator=eval_rng, exact_weights=True)
        metrics = evaluate_mixture(fake, real, data, cfg.eval.projections, cfg.eval.hq_sigmas)
        if converged_at is None and is_converged(metrics, w1_tol):
            converged_at = step
        if cfg.eval.plots:
            D.eval()
            frame = run_dir / "plots" / f"samples_{step:07d}.png"
            plots.plot_mixture(fake, real, data, frame, title=f"step {step}", discriminator=D)
            D.train()
            frames.append(frame)
        console.line(f"eval  step {step}: w1 {metrics['w1']:.4f}  modes "
                     f"{metrics['modes_covered']}/{metrics['n_modes']}  "
                     f"hq {metrics['hq_fraction']:.3f}  mode_kl {metrics['mode_kl']:.4f}")
        return metrics

    console.line(f"run folder: {run_dir.resolve()}")
    console.line(f"device: {device} | data: {data.describe()} | seed {cfg.seed} | {steps} steps")
    # running sums on the device, read once per log interval (no per-step host sync)
    sums = torch.zeros(4, device=device)  # d_loss, g_loss, mean D(x), mean D(G(z))
    interval_start, interval_steps = time.perf_counter(), 0
    train_start = time.perf_counter()
    G.train()
    D.train()
    try:
        with catch_stop_signals() as stop:
            while step < steps:
                # (1) D step(s): real samples up, fresh fakes (no G gradient) down
                for _ in range(t.d_steps):
                    real = data.sample(batch)  # (B, d)
                    with torch.no_grad():
                        fake = G(noise(batch))  # (B, d)
                    real_logits, fake_logits = D(real), D(fake)  # (B, 1) each
                    d_loss = loss.d_loss(real_logits, fake_logits)
                    opt_d.zero_grad(set_to_none=True)
                    d_loss.backward()
                    opt_d.step()

                # (2) G step(s): make D call fresh fakes real
                for _ in range(t.g_steps):
                    g_loss = loss.g_loss(D(G(noise(batch))))
                    opt_g.zero_grad(set_to_none=True)
                    g_loss.backward()
                    opt_g.step()

                # (3) schedules, G's moving average, running sums
                for sched in optims.schedulers:
                    sched.step()
                step += 1
                if G_ema is not None:
                    # warm-up: early on the average must not remember the random init
                    decay = min(t.ema, (1 + step) / (10 + step))
                    with torch.no_grad():
                        for e, p in zip(G_ema.parameters(), G.parameters()):
                            e.lerp_(p, 1.0 - decay)
                with torch.no_grad():
                    sums += torch.stack([d_loss.detach(), g_loss.detach(),
                                         torch.sigmoid(real_logits).mean(),
                                         torch.sigmoid(fake_logits).mean()])
                interval_steps += 1
                console.step(step)

                # (4) log / evaluate / checkpoint at their intervals
                last = step == steps or stop.signal_name is not None
                do_eval = last or (t.eval_every and step % t.eval_every == 0)
                if step % t.log_every == 0 or do_eval:
                    means = (sums / interval_steps).tolist()  # the one host sync per interval
                    now = time.perf_counter()
                    row = {"step": step, "d_loss": means[0], "g_loss": means[1],
                           "d_real": means[2], "d_fake": means[3],
                           "lr_g": opt_g.param_groups[0]["lr"], "lr_d": opt_d.param_groups[0]["lr"]}
                    if not all(math.isfinite(v) for v in means[:2]):
                        bad = "d_loss" if not math.isfinite(means[0]) else "g_loss"
                        raise FloatingPointError(f"{bad} is {means[0 if bad == 'd_loss' else 1]}"
                                                 f" at step {step}")
                    console.interval(step, steps, row, interval_steps / max(now - interval_start,
                                                                            1e-9))
                    off_path_start = time.perf_counter()
                    if do_eval:
                        final_metrics = evaluate()
                        row.update({k: final_metrics[k] for k in CSV_COLUMNS if k in final_metrics})
                    rows.append(row)
                    metrics_csv.writerow(row)
                    csv_file.flush()
                    if t.ckpt_every and step % t.ckpt_every == 0:
                        save_last(periodic=True)
                    sums.zero_()
                    interval_steps = 0
                    eval_seconds += time.perf_counter() - off_path_start
                    interval_start = time.perf_counter()
                if stop.signal_name is not None:
                    break
        status = "completed" if step >= steps else "interrupted"
        if status == "interrupted":
            console.line(f"{stop.signal_name}: stopped at step {step}, checkpoint saved")
        save_last(periodic=False)
    except FloatingPointError as e:
        kept = f"checkpoints/last.pt (step {saved_step}) is the last good state" \
            if saved_step is not None else "no checkpoint had been saved yet"
        status, error = "diverged", f"training diverged: {e}; {kept}"
        console.line(error)
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted at once (second Ctrl-C); no checkpoint saved"
        console.line(error)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        raise
    finally:
        train_time = time.perf_counter() - train_start - eval_seconds
        csv_file.close()
        if rows:
            plots.plot_losses(rows, run_dir / "plots" / "losses.png")
            plots.write_gif(frames, run_dir / "plots" / "training.gif")
        summary = {
            "status": status,
            "step": step,
            "wall_time_s": round(time.perf_counter() - start_time, 3),
            "train_time_s": round(train_time, 3),
            "steps_per_sec": round(step / train_time, 1) if train_time > 0 else None,
            "device": str(device),
            "seed": cfg.seed,
            "metrics": {k: final_metrics[k] for k in SUMMARY_METRICS if k in final_metrics},
            "converged_at_step": converged_at,
            "w1_tol": w1_tol,
            # lower is better: what a sweeper (e.g. Optuna) minimises
            "objective": finite_or_none(final_metrics.get("w1")),
            "run_dir": str(run_dir.resolve()),
        }
        if error:
            summary["error"] = error
        write_json(run_dir / "summary.json", summary)
        if status == "completed":
            console.table(f"final metrics after {step} steps", {
                **summary["metrics"], "converged_at_step": converged_at,
                "steps/s": summary["steps_per_sec"]})
        console.line(f"{status}: {run_dir.resolve()}")
        console.close()
    return summary
