"""train(cfg, run_dir) -> summary: build everything, run the alternating D/G loop, write the run folder."""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from gan_cli import plots
from gan_cli.build import build_conditioning, build_data, build_logger, build_loss, \
    build_models, build_optimizers, build_replicas, describe_device, pick_device, seed_everything
from gan_cli.checkpoint import atomic_write, load_checkpoint, load_for_resume, load_weights, \
    prune_checkpoints, rng_states, run_config, run_folder_of, save_checkpoint, set_rng_states
from gan_cli.config import UserError, validate_train_config
from gan_cli.console import RunConsole
from gan_cli.evaluate import build_evaluation
from gan_cli.health import STATS, HealthMonitor, first_non_finite_parameter, grad_norm_of
from gan_cli.loggers import flat_hparams
from gan_cli.manifest import now_iso, run_manifest
from gan_cli.models import ema_updater, frozen, judges_each_sample_alone
from gan_cli.rejection import judged_in_batches, keep_mask
from gan_cli.replicas import RandomDraws, median_row, replica_summary
from gan_cli.unroll import unrolled

TRAINING_COLUMNS = ["step", *STATS, "lr_g", "lr_d"]  # metrics.csv; evaluation metrics follow


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
        # SIGUSR2: submitit's (SLURM's) warning before a pre-emption or time-out
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
            previous[sig] = signal.signal(sig, stop)
    except ValueError:  # not the main thread (e.g. some launchers): keep the defaults
        pass
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


def one_or_all(per_replica_values: list, replicas: int):
    """A per-replica value as a checkpoint holds it: a single run's bare, as before
    replicas existed (as_list undoes it)."""
    return per_replica_values if replicas > 1 else per_replica_values[0]


def as_list(x) -> list:
    """A checkpoint's per-replica entry as a list (one entry for a single run)."""
    return x if isinstance(x, list) else [x]


def finite_or_none(x: Optional[float]) -> Optional[float]:
    return x if x is not None and math.isfinite(x) else None


def record_failure(run_dir: str | Path, message: str, in_sweep: bool) -> None:
    """After a UserError: a sweep job's folder keeps a summary saying why it failed; a
    single run leaves no folder behind that holds nothing but Hydra's record."""
    run_dir = Path(run_dir)
    if not (run_dir / ".hydra").is_dir() or any(p.name != ".hydra" for p in run_dir.iterdir()):
        return  # a run that got going wrote its own summary; a resumed run's folder is its own
    if in_sweep:
        write_json(run_dir / "summary.json", {"status": "failed", "step": 0, "error": message})
    else:
        shutil.rmtree(run_dir)
        if run_dir.resolve().parent.parent.name == "outputs":  # outputs/<day>/<time>: the
            with contextlib.suppress(OSError):  # day's folder goes if that run was its only one
                run_dir.parent.rmdir()  # (never a folder the user chose, like the current one)


def same_run(cfg: DictConfig, saved: DictConfig) -> bool:
    """Whether cfg is the config a checkpoint was written with (resume= aside)."""
    ours, theirs = (OmegaConf.to_container(c, resolve=True) for c in (cfg, saved))
    return {**ours, "resume": None} == {**theirs, "resume": None}


def train(cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str] = ()) -> dict:
    """Train the GAN described by cfg; everything it writes goes into run_dir.

    With cfg.resume set, continue that run in its own folder with its own config
    (`overrides` are the command line's, of which only train.steps and device may
    change it). Returns the summary also written to run_dir/summary.json. Raises
    UserError (before anything is written) for a bad config value or checkpoint.
    """
    start_time = time.perf_counter()
    warnings: list[str] = []  # shown once the console is up
    resumed: Optional[dict] = None  # the checkpoint this run continues from
    if not cfg.resume and (Path(run_dir) / "checkpoints" / "last.pt").is_file():
        # the folder already holds a run (a requeued cluster job, a reused hydra.run.dir):
        # the same config continues it, another is refused, and nothing is overwritten
        if not same_run(cfg, run_config(load_checkpoint(run_dir), run_dir)):
            raise UserError(f"{run_dir} already holds a run with another config; choose a new "
                            f"folder, or resume={run_dir} to continue that one")
        cfg.resume, overrides = str(run_dir), ()
        warnings.append(f"{run_dir} already holds this run: continuing it")
    if cfg.resume:
        run_dir = run_folder_of(cfg.resume)
        resumed, cfg = load_for_resume(cfg.resume, cfg, overrides, warn=warnings.append)
    run_dir = Path(run_dir)
    validate_train_config(cfg)
    device = pick_device(cfg.device)
    device_description = describe_device(device, cfg.device)
    started_at = now_iso()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
    seed_everything(cfg.seed)

    data = build_data(cfg.data, device)
    # train.replicas=R: R runs (seeds seed..seed+R-1) side by side, every tensor of the loop
    # with a leading replica dimension; each draws its random inputs from its own generator
    replicas = cfg.train.replicas
    seeds = [cfg.seed + k for k in range(replicas)]
    # class labels (conditional GAN, AC-GAN) join G's and D's inputs, or D's outputs
    cond = build_conditioning(cfg.model, cfg.loss, data)
    if replicas > 1:
        models, generators = build_replicas(cfg.model, data, device, seeds, cond)
    else:
        models, generators = build_models(cfg.model, data, device, cond), None
    draws = RandomDraws(data, models.noise, generators, labelled=cond.conditional)
    image = len(data.shape) > 1
    # the objectives map one replica's D outputs to a number: vmap gives one per replica
    per_replica = torch.func.vmap if replicas > 1 else (lambda f: f)
    loss = build_loss(cfg.loss)
    optims = build_optimizers(cfg.optim, models)
    G, D, noise = models.generator, models.discriminator, models.noise
    opt_g, opt_d = optims.generator, optims.discriminator
    # G's exponential moving average, used for evaluation and sampling when train.ema is set
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.train.ema is not None else None
    G_eval = G_ema if G_ema is not None else G

    # the loop's settings as plain values: each OmegaConf lookup costs microseconds, a
    # tenth of a toy step when the loop made a dozen of them per step
    t = SimpleNamespace(**OmegaConf.to_container(cfg.train, resolve=True))
    steps, batch = t.steps, t.batch_size
    d_steps = t.d_steps or loss.n_critic
    # evaluation draws from its own generators so it never shifts the training random stream
    eval_rngs = [torch.Generator(device=device).manual_seed(s + 1_000_003) for s in seeds]
    # fixed, so that frames are comparable: (N, z), or (R, N, z) for replicas
    eval_z = noise(cfg.eval.n_samples, generator=eval_rngs[0],
                   generators=eval_rngs if replicas > 1 else None)
    # a conditional G's fixed classes to draw: (N,), every class its share
    eval_labels = data.balanced_labels(cfg.eval.n_samples) if cond.conditional else None
    rejection_quantile = cfg.eval.rejection_quantile  # discriminator rejection sampling

    step, rows = 0, []  # rows: the metrics.csv rows so far
    converged_at: list[Optional[int]] = [None] * replicas  # per replica
    final_metrics: list[dict] = [{} for _ in seeds]  # of the latest evaluation, per replica
    # per-step statistics summed on the device, read once per log interval (no host sync)
    health = HealthMonitor(device, replicas=replicas)
    past_wall, past_train = 0.0, 0.0  # seconds spent in earlier sessions of a resumed run
    if resumed is not None:
        source = cfg.resume
        load_weights(G, resumed["generator"], "generator", source)
        load_weights(D, resumed["discriminator"], "discriminator", source)
        if G_ema is not None and resumed["generator_ema"] is not None:
            load_weights(G_ema, resumed["generator_ema"], "generator_ema", source)
        opt_g.load_state_dict(resumed["opt_g"])
        opt_d.load_state_dict(resumed["opt_d"])
        for sched, sched_state in zip(optims.schedulers, resumed["schedulers"]):
            sched.load_state_dict(sched_state)
        eval_z = resumed["eval_z"].to(device)
        if eval_labels is not None:
            eval_labels = resumed["eval_labels"].to(device)
        if resumed["device_type"] == device.type:
            for g, state in zip(eval_rngs, as_list(resumed["rng_eval"])):
                g.set_state(state.cpu())
            set_rng_states(resumed["rng"])
            for g, state in zip(generators or [], resumed.get("rng_replicas", [])):
                g.set_state(state.cpu())
        else:  # another kind of device draws other random numbers anyway
            warnings.append(f"warning: resuming a {resumed['device_type']} run on {device}: it "
                            "continues, but not bit-identically to an uninterrupted run")
        step, rows = resumed["step"], resumed["rows"]
        converged_at = as_list(resumed["converged_at"])
        final_metrics = as_list(resumed["final_metrics"])
        health = HealthMonitor(device, resumed["health"], replicas)
        past_wall, past_train = resumed["wall_time_s"], resumed["train_time_s"]

    # metrics and pictures that suit the data. Images: the classifier is loaded, or trained
    # once (a minute or two), before anything is written, so that a Ctrl-C meanwhile
    # leaves no half-made run folder; its lines go to train.log once that exists
    evaluation_lines: list[str] = []

    def show_now(line: str) -> None:
        print(line, flush=True)
        evaluation_lines.append(line)

    evaluation = build_evaluation(data, cfg.eval, device, log=show_now,
                                  conditional=cond.conditional)
    logger = build_logger(cfg.logger, run_dir, start_step=step)  # None for logger=none
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "plots").mkdir(exist_ok=True)
    console = RunConsole(run_dir / "train.log", steps, start_step=step)
    console.line(f"run folder: {run_dir.resolve()}")
    for warning in warnings:
        console.line(warning)
    if resumed is not None:
        console.line(f"resumed at step {step} from {cfg.resume}")
    console.line(f"device: {device_description}")
    if cfg.print_config:
        console.config_tree(OmegaConf.to_container(cfg, resolve=True))
    for line in evaluation_lines:  # already on screen
        console.record(line)
    evaluation_info = evaluation.start(run_dir / "plots" if cfg.eval.plots else None)
    csv_columns = TRAINING_COLUMNS + list(evaluation.columns)
    # metrics.csv holds exactly the checkpoint's rows, then grows: rows written after the
    # checkpoint by a run that was then killed are dropped, not duplicated
    csv_file = open(run_dir / "metrics.csv", "w", newline="")
    # replicas: one row per replica and log step, named by the replica's index and seed
    columns = csv_columns[:1] + ["replica", "seed"] * (replicas > 1) + csv_columns[1:]
    metrics_csv = csv.DictWriter(csv_file, fieldnames=columns, restval="",
                                 extrasaction="ignore")  # mode_mass goes to mode_mass.csv
    metrics_csv.writeheader()
    metrics_csv.writerows(rows)
    csv_file.flush()
    frames = [run_dir / "plots" / f"samples_{r['step']:07d}.png" for r in rows
              if evaluation.columns[0] in r]
    frames = [f for f in dict.fromkeys(frames) if f.is_file()]  # replicas: one frame per step
    status, error, stop_signal = "failed", None, None
    eval_seconds = 0.0  # time spent off the training path (evaluation, plots, checkpoints)
    saved_step: Optional[int] = step if resumed is not None else None  # step of last.pt

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
            "eval_labels": eval_labels,
            "data_shape": list(data.shape),  # one sample's: gan-sample builds G from it
            "n_classes": getattr(data, "n_classes", None),  # and a conditional G from this
            "rng": rng_states(device),
            "rng_eval": one_or_all([g.get_state() for g in eval_rngs], replicas),
            "rng_replicas": [g.get_state() for g in generators or []],
            "device_type": device.type,
            "rows": rows,
            "converged_at": one_or_all(converged_at, replicas),
            "final_metrics": one_or_all(final_metrics, replicas),
            "health": health.state_dict(),
            "wall_time_s": past_wall + time.perf_counter() - start_time,
            "train_time_s": past_train + time.perf_counter() - train_start - eval_seconds,
        }

    def save(periodic: bool) -> None:
        nonlocal saved_step
        state = checkpoint_state()
        folder = run_dir / "checkpoints"
        if periodic:
            save_checkpoint(state, folder / f"step_{step:07d}.pt")
            prune_checkpoints(folder, t.keep_checkpoints)
        save_checkpoint(state, folder / "last.pt")
        saved_step = step

    def check_finite() -> None:
        """The divergence check (a host sync): FloatingPointError on a non-finite loss,
        gradient or weight, so that a single run never saves anything non-finite.

        Replicas are independent: one that diverges is recorded and shown, and trains
        on harmlessly (its NaNs stay in its own slice); only when all have diverged
        does the run stop as diverged.
        """
        problems = health.problems()
        if replicas == 1:
            if problems[0] is not None:
                raise FloatingPointError(problems[0])
            bad = first_non_finite_parameter(G, D)
            if bad is not None:
                raise FloatingPointError(f"parameter {bad} is not finite at step {step}")
            return
        weights_finite = (G.finite() & D.finite()).tolist()
        for k, (problem, finite) in enumerate(zip(problems, weights_finite)):
            if k not in health.diverged and (problem or not finite):
                health.diverged[k] = problem or f"a weight is not finite at step {step}"
                console.line(f"replica {k} (seed {seeds[k]}) diverged: {health.diverged[k]}")
        if len(health.diverged) == replicas:
            raise FloatingPointError(f"every replica diverged (replica 0: {health.diverged[0]})")

    def warn(message: Optional[str]) -> None:
        if message is not None:
            console.line(message)

    # D's verdict on each point of a grid, for the 1-D pictures; not drawn when D judges
    # a sample only together with others (packing, minibatch layers) or with its label,
    # nor for replicas
    d_cfg = cfg.model.discriminator
    per_sample = d_cfg.get("pack", 1) == 1 and d_cfg.get("minibatch", "none") == "none"
    d_curve = (lambda x: loss.output(cond.split(D(x))[0])) \
        if per_sample and replicas == 1 and not cond.to_discriminator else None

    def judge(x: torch.Tensor, y: Optional[torch.Tensor], critic: Callable = D):
        """D's logits (B / pack, 1) on samples x of classes y (None: no labels) and, for
        AC-GAN, its class logits (B, K) (else None)."""
        return cond.split(critic(cond.discriminator_input(x, y, image)))

    # one D pass over real and fake together halves the D step's kernel launches; a D
    # with batch norm or minibatch layers must see pure real or pure fake batches (seed 003)
    joint_pass = judges_each_sample_alone(D)
    batch_dim = 1 if replicas > 1 else 0

    def judge_both(real: torch.Tensor, fake: torch.Tensor, labels: Optional[torch.Tensor]):
        """judge() of real and of fake samples of the same classes: (real's, fake's)."""
        if not joint_pass:
            return judge(real, labels), judge(fake, labels)
        both = None if labels is None else torch.cat([labels, labels], dim=batch_dim)
        logits, classes = judge(torch.cat([real, fake], dim=batch_dim), both)
        real_logits, fake_logits = logits.chunk(2, dim=batch_dim)
        if classes is None:
            return (real_logits, None), (fake_logits, None)
        real_classes, fake_classes = classes.chunk(2, dim=batch_dim)
        return (real_logits, real_classes), (fake_logits, fake_classes)

    mass_key = f"{evaluation.histogram}_mass"  # mode_mass (mixtures) or class_mass (images)

    def write_mass() -> None:
        """mode_mass.csv: per evaluation (and replica), each mode's share of high-quality
        samples; class_mass.csv: each class's share of the classified images."""
        keys = ["step", "replica", "seed"] if replicas > 1 else ["step"]
        mass = [([r[k] for k in keys], r[mass_key]) for r in rows if mass_key in r]
        header = ",".join(keys + [f"{evaluation.histogram}_{k}" for k in range(len(mass[0][1]))])
        lines = [header] + [",".join([*map(str, key), *(f"{m:.6g}" for m in ms)])
                            for key, ms in mass]
        atomic_write(run_dir / f"{mass_key}.csv",
                     lambda tmp: tmp.write_text("\n".join(lines) + "\n"))

    def evaluate() -> list[dict]:
        """Each replica's metrics (one entry for a single run); the frame; a console line."""
        G_eval.eval()  # no dropout: evaluation must not draw from the training stream
        z_chunks = eval_z.split(1000, dim=batch_dim)
        label_chunks = [None] * len(z_chunks) if eval_labels is None else \
            eval_labels.expand(eval_z.shape[:-1]).split(1000, dim=batch_dim)
        with torch.no_grad():  # in chunks: 10,000 images at once would be GBs of activations
            fake = torch.cat([G_eval(cond.generator_input(z, y))
                              for z, y in zip(z_chunks, label_chunks)],
                             dim=batch_dim)  # (N, ...), or (R, N, ...)
        G.train()
        fakes = list(fake) if replicas > 1 else [fake]
        kept = None
        if rejection_quantile is not None:  # evaluate only what D lets through
            D.eval()
            with torch.no_grad():
                logits = judged_in_batches(lambda x: judge(x, None)[0], fake, batch,
                                           dim=batch_dim).reshape(replicas, -1)  # (R, N)
            D.train()
            # a diverged replica's logits are not finite: keep_mask keeps all its samples
            kept = [keep_mask(lk, rejection_quantile, rng) for lk, rng in zip(logits, eval_rngs)]
            fakes = [f[keep] for f, keep in zip(fakes, kept)]
        all_metrics = []
        for k, (fake_k, rng) in enumerate(zip(fakes, eval_rngs)):
            metrics = evaluation.metrics(fake_k, rng, labels=eval_labels)
            if kept is not None:
                metrics["accepted"] = kept[k].float().mean().item()
            if converged_at[k] is None and evaluation.converged(metrics):
                converged_at[k] = step
            all_metrics.append(metrics)
        plot_every = cfg.eval.plot_every
        if cfg.eval.plots and (plot_every is None or step % plot_every == 0 or step == steps):
            D.eval()
            frame = run_dir / "plots" / f"samples_{step:07d}.png"
            evaluation.picture(fakes, frame, f"step {step}", seeds, discriminator=d_curve,
                               d_is_probability=loss.probabilistic, labels=eval_labels)
            D.train()
            if frame not in frames:
                frames.append(frame)
            if logger is not None:  # its histogram: the first replica that has not diverged
                shown = next(k for k in range(replicas) if k not in health.diverged)
                logger.picture("samples", frame, fakes[shown], step)
        shown = median_row(all_metrics, skip=health.diverged)
        median = "median " if replicas > 1 else ""
        line = f"eval  step {step}: {median}{evaluation.line(shown)}"
        if kept is not None:
            line += f"  accepted {shown['accepted']:.3f}"
        if replicas > 1:
            line += f"  | converged {sum(c is not None for c in converged_at)}/{replicas}"
        console.line(line)
        return all_metrics

    who = f"seeds {seeds[0]}..{seeds[-1]} ({replicas} replicas)" if replicas > 1 else \
        f"seed {cfg.seed}"
    console.line(f"data: {data.describe()} | {who} | {steps} steps")
    # the weight lists these walk, gathered once
    grad_norm_d_now, grad_norm_g_now = grad_norm_of(D), grad_norm_of(G)
    d_weights = list(D.parameters())
    update_ema = ema_updater(G_ema, G) if G_ema is not None else None
    interval_start = train_start = time.perf_counter()
    G.train()
    D.train()
    try:
        with catch_stop_signals() as stop:
            while step < steps:
                # a stop request breaks out between steps, after the last one's row: the
                # checkpoint below holds the interval's sums as they are, so a resumed run
                # repeats the rest exactly
                if stop.signal_name is not None:
                    break
                # instance noise: both players see D's inputs blurred, less so as training goes
                sigma = t.instance_noise * (1.0 - step / steps)

                def blur(x: torch.Tensor) -> torch.Tensor:
                    return x + sigma * draws.normal_like(x) if sigma > 0 else x

                # (1) D step(s): real samples up, fresh fakes (no G gradient) down.
                # Shapes are a single run's; replicas put (R, ...) in front of each.
                for _ in range(d_steps):
                    real, labels = draws.real(batch)  # (B, d); their (B,) labels or None
                    real = blur(real)
                    with torch.no_grad():  # fakes of the real batch's classes
                        fake = blur(G(cond.generator_input(draws.noise(batch), labels)))
                    (real_logits, real_class), (fake_logits, fake_class) = \
                        judge_both(real, fake, labels)
                    d_loss = per_replica(loss.d_loss)(real_logits, fake_logits) + \
                        loss.penalty(lambda x: judge(x, labels)[0], real, fake) + \
                        cond.aux_loss(real_class, labels) + cond.aux_loss(fake_class, labels)
                    opt_d.zero_grad(set_to_none=True)
                    # replicas: the sum's gradient for each replica's weights is its own loss's
                    d_loss.sum().backward()
                    grad_norm_d = grad_norm_d_now()
                    opt_d.step()
                    loss.after_d_step(D)  # e.g. WGAN's weight clipping

                # (2) G step(s): make D (or, unrolled, D after k look-ahead steps) call fakes real
                for _ in range(t.g_steps):
                    D_for_g = D
                    if t.unroll_steps:
                        D_for_g = unrolled(D, opt_d, loss, t.unroll_steps,  # (no labels)
                                           real_batch=lambda: blur(draws.real(batch)[0]),
                                           fake_batch=lambda: blur(G(draws.noise(batch))))
                    labels = draws.labels(batch)  # (B,) classes for G to draw, or None
                    with frozen(d_weights):  # D's input gradient only, not its weights'
                        fake_logits_g, fake_class_g = judge(
                            blur(G(cond.generator_input(draws.noise(batch), labels))), labels,
                            critic=D_for_g)
                    g_loss = per_replica(loss.g_loss)(fake_logits_g) + \
                        cond.aux_loss(fake_class_g, labels)
                    opt_g.zero_grad(set_to_none=True)
                    g_loss.sum().backward()
                    grad_norm_g = grad_norm_g_now()
                    opt_g.step()

                # (3) schedules, G's moving average, health statistics
                for sched in optims.schedulers:
                    sched.step()
                step += 1
                if G_ema is not None:
                    # warm-up: early on the average must not remember the random init
                    update_ema(decay=min(t.ema, (1 + step) / (10 + step)))
                with torch.no_grad():  # in STATS order
                    accuracy = per_replica(loss.accuracy)(real_logits, fake_logits)  # (2,)
                    health.add(step, torch.stack([
                        d_loss, g_loss, loss.output(real_logits).mean((-2, -1)),
                        loss.output(fake_logits).mean((-2, -1)), *accuracy.unbind(-1),
                        grad_norm_d, grad_norm_g], dim=-1))
                console.step(step)

                # (4) log / evaluate / checkpoint at their intervals: the only host syncs.
                last = step == steps
                do_eval = last or bool(t.eval_every and step % t.eval_every == 0)
                do_log = do_eval or step % t.log_every == 0
                do_ckpt = bool(t.ckpt_every and step % t.ckpt_every == 0)
                if not (do_log or do_ckpt):
                    continue
                check_finite()
                off_path_start = time.perf_counter()
                if do_log:
                    lrs = {"lr_g": opt_g.param_groups[0]["lr"], "lr_d": opt_d.param_groups[0]["lr"]}
                    new_rows = [{"step": step, **means, **lrs} for means in health.means()]
                    if replicas > 1:
                        for k, row in enumerate(new_rows):
                            row.update(replica=k, seed=seeds[k])
                    # the console and live logger show one row: for replicas, the median of
                    # those that have not diverged
                    console.interval(step, steps, median_row(new_rows, skip=health.diverged),
                                     health.steps / max(off_path_start - interval_start, 1e-9))
                    health.reset()
                    if replicas == 1:  # warnings about one run (per replica, they would flood)
                        warn(health.d_wins_warning(step, new_rows[0], loss.probabilistic))
                    if do_eval:
                        final_metrics = evaluate()
                        for row, metrics in zip(new_rows, final_metrics):
                            row.update({k: metrics[k] for k in csv_columns if k in metrics})
                            row[mass_key] = metrics[mass_key]
                        if replicas == 1:
                            warn(health.coverage_warning(step, final_metrics[0]))
                    rows.extend(new_rows)
                    if do_eval:
                        write_mass()
                    metrics_csv.writerows(new_rows)
                    if logger is not None:
                        logger.scalars(median_row(new_rows, skip=health.diverged))
                    csv_file.flush()
                if do_ckpt:
                    save(periodic=True)
                eval_seconds += time.perf_counter() - off_path_start
                interval_start = time.perf_counter()
            check_finite()  # never save a NaN (but a diverged replica's, marked as such)
            save(periodic=False)
        status = "completed" if step >= steps else "interrupted"
        if status == "interrupted":
            stop_signal = stop.signal_name  # cli.py hands SIGUSR2 on to submitit (requeue)
            console.line(f"{stop.signal_name}: stopped at step {step}, checkpoint saved")
    except FloatingPointError as e:
        kept = f"checkpoints/last.pt (step {saved_step}) is the last good state" \
            if saved_step is not None else "no checkpoint had been saved yet"
        status, error = "diverged", f"training diverged: {e}; {kept}"
        console.line(error)
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted at once (second Ctrl-C); no new checkpoint"
        console.line(error)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        raise
    finally:
        train_time = past_train + time.perf_counter() - train_start - eval_seconds
        csv_file.close()
        summary = {
            "status": status,
            "step": step,
            "wall_time_s": round(past_wall + time.perf_counter() - start_time, 3),
            "train_time_s": round(train_time, 3),
            "steps_per_sec": round(step / train_time, 1) if train_time > 0 else None,
            "device": str(device),
            "seed": cfg.seed,
            "metrics": {k: final_metrics[0][k] for k in evaluation.summary_keys
                        if k in final_metrics[0]},
            "converged_at_step": converged_at[0],
            **evaluation_info,  # w1_tol; for images the classifier and the real images' metrics
            # lower is better (w1, or fd for images): what a sweeper (e.g. Optuna) minimises
            "objective": finite_or_none(final_metrics[0].get(evaluation.objective)),
            "run_dir": str(run_dir.resolve()),
        }
        if replicas > 1:  # metrics, converged_at_step and objective: the replicas' medians
            summary.update(replica_summary(seeds, final_metrics, converged_at, health.diverged,
                                           evaluation.summary_keys, status,
                                           objective_key=evaluation.objective))
        if error:
            summary["error"] = error
        if health.warned:
            summary["warnings"] = list(health.warned.values())
        if stop_signal:
            summary["stop_signal"] = stop_signal
        if status == "interrupted" and saved_step is not None:
            summary["resume_command"] = f"gan-train resume={run_dir.resolve()}"
            console.line(f"to continue: {summary['resume_command']}")
        summary["manifest"] = {**run_manifest(device, device_description, started_at),
                               "ended_at": now_iso()}
        summary = _json_safe(summary)  # what the file holds: NaN and infinity as None
        write_json(run_dir / "summary.json", summary)
        try:  # pictures last: a full disk here must not cost the summary or the real error
            if rows:
                plots.plot_losses(rows, run_dir / "plots" / "losses.png")
                plots.write_gif(frames, run_dir / "plots" / "training.gif")
            if logger is not None:
                logger.finish(flat_hparams(OmegaConf.to_container(cfg, resolve=True)),
                              {k: v for k, v in summary["metrics"].items()  # numbers only
                               if isinstance(v, (int, float)) and not isinstance(v, bool)})
        except OSError as e:
            console.line(f"warning: could not write the final plots or logs ({e})")
        if status == "completed":
            counts = {"replicas converged": f"{summary['converged']}/{replicas}",
                      "replicas diverged": summary["diverged"]} if replicas > 1 else {}
            console.table(f"final metrics after {step} steps" + (
                f" (median of {replicas} replicas)" if replicas > 1 else ""), {
                **summary["metrics"], "converged_at_step": summary["converged_at_step"],
                **counts, "steps/s": summary["steps_per_sec"]})
        console.line(f"{status}: {run_dir.resolve()}")
        console.close()
    return summary
