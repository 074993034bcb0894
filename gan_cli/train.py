"""train(cfg, run_dir) -> summary: build, start or restore the run state, loop, summarise.

The loop runs GAN steps (step.py) and, at interval boundaries only, logs,
evaluates and checkpoints (EDM's training_loop: the work, then an early `continue`
to the interval work). What a run is built from lives in build.py, what it holds in
state.py, what it writes in runfolder.py, how it is scored in evaluate.py.
"""

from __future__ import annotations

import copy
import functools
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from gan_cli import plots
from gan_cli.build import build_evaluation, build_logger, build_run, \
    discriminator_optimizer_factory
from gan_cli.compiled import choose_step
from gan_cli.config import validate_train_config
from gan_cli.console import RunConsole
from gan_cli.device import Workload, autocast_context, check_precision, describe_device, \
    deterministic_mode, grad_scaler, parallel_job_number, pick_device, tf32_mode
from gan_cli.evaluate import Evaluator
from gan_cli.files import json_safe
from gan_cli.health import STATS, HealthMonitor
from gan_cli.labels import Conditioning
from gan_cli.launchers import fit_threads_to_model
from gan_cli.loggers import flat_hparams
from gan_cli.manifest import now_iso, run_manifest
from gan_cli.pretrain import pretrain_discriminator, pretraining_line
from gan_cli.replicas import RandomDraws, SingleRun, median_row
from gan_cli.runfolder import RunFolder
from gan_cli.state import Evaluation, RunState
from gan_cli.step import GANStep, Players, StepSettings, schedule
from gan_cli.suggest import finished_run_hint

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


@dataclass
class Run:
    """A run's built parts: what the loop drives."""

    cfg: DictConfig
    device: torch.device
    data: Any
    cond: Conditioning
    axis: SingleRun  # the replica axis: a single run, or train.replicas=R
    loss: Any
    step: GANStep
    state: RunState
    evaluator: Optional[Evaluator] = None  # built last (an image classifier may train)


def start_run(cfg: DictConfig, device: torch.device) -> Run:
    """Data, networks, loss, optimizers (build.build_run: validated, every refusal named),
    the step and a fresh run state, from the config.

    Random draws happen in a fixed order (seed, data, networks; then the loop), so a
    seed gives the same run whatever else changed around it.
    """
    built = build_run(cfg, device)
    data, cond, models, axis = built.data, built.conditioning, built.models, built.axis
    loss, optims = built.loss, built.optimizers
    t = SimpleNamespace(**OmegaConf.to_container(cfg.train, resolve=True))
    G = models.generator
    # G's exponential moving average, used for evaluation and sampling when train.ema is set
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if t.ema is not None else None
    players = Players(G, models.discriminator, optims.generator, optims.discriminator,
                      optims.schedulers, G_ema, scaler_g=grad_scaler(t.precision, device),
                      scaler_d=grad_scaler(t.precision, device))
    settings = StepSettings(batch_size=t.batch_size, d_steps=t.d_steps or loss.n_critic,
                            g_steps=t.g_steps, unroll_steps=t.unroll_steps,
                            instance_noise=t.instance_noise, ema=t.ema,
                            image=len(data.shape) > 1, precision=t.precision,
                            autocast=functools.partial(autocast_context, t.precision, device),
                            balance_target=t.balance["target"], balance_rate=t.balance["rate"],
                            balance_max=t.balance["max_noise"])
    draws = RandomDraws(data, models.noise, axis, labelled=cond.conditional)
    step = GANStep(players, loss, cond, draws, axis, settings)
    # evaluation draws from its own generators so it never shifts the training stream
    eval_rngs = [torch.Generator(device=device).manual_seed(s + 1_000_003) for s in axis.seeds]
    n = cfg.eval.n_samples
    evaluation = Evaluation(z=axis.draw(lambda g: models.noise(n, generator=g), eval_rngs),
                            labels=data.balanced_labels(n) if cond.conditional else None,
                            rngs=eval_rngs)
    state = RunState(OmegaConf.to_container(cfg, resolve=True), players, axis, evaluation,
                     HealthMonitor(device, axis.leading), device, list(data.shape),
                     getattr(data, "n_classes", None), balance=step.balance)
    return Run(cfg, device, data, cond, axis, loss, step, state)


def train(cfg: DictConfig, run_dir: str, overrides: Sequence[str] = ()) -> dict:
    """Train the GAN described by cfg; everything it writes goes into run_dir.

    With cfg.resume set, continue that run in its own folder with its own config
    (`overrides` are the command line's, of which only train.steps, device and threads
    may change it). Returns the summary also written to run_dir/summary.json. Raises
    UserError, before anything is written, for a bad config value or checkpoint.
    """
    warnings: list[str] = []  # shown once the console is up
    folder, cfg, resumed = RunFolder.open(cfg, run_dir, overrides, warnings.append)
    validate_train_config(cfg)
    job, workload = parallel_job_number(), Workload.of(cfg)
    device = pick_device(cfg.device, workload, job)
    description = describe_device(device, cfg.device, workload, job)
    check_precision(cfg.train.precision, device)  # fp16 needs a GPU
    # backend switches for this run only (a later sweep job in this process starts clean);
    # entered before anything touches CUDA
    with deterministic_mode(cfg.deterministic, device, warn=warnings.append), \
            tf32_mode(cfg.tf32, device):
        return train_on(device, description, cfg, folder, resumed, warnings)


def train_on(device: torch.device, device_description: str, cfg: DictConfig,
             folder: RunFolder, resumed: Optional[dict], warnings: list[str]) -> dict:
    """train() once the folder, the config and the device are settled."""
    started_at = now_iso()
    run = start_run(cfg, device)
    # threads=null: 1 thread for small networks (more only add contention), before training
    players = run.state.players
    threads_line = fit_threads_to_model(cfg.get("threads"), sum(
        p.numel() for net in (players.generator, players.discriminator)
        for p in net.parameters()))  # replicas: their stacked weights, all R of them
    if resumed is not None:
        run.state.load_state_dict(resumed, cfg.resume, warnings.append)
        if run.state.step >= cfg.train.steps:
            warnings.append(finished_run_hint(cfg.resume, cfg.train.steps))
    # images: the classifier is loaded, or trained once (a minute or two), before anything
    # is written, so that a Ctrl-C meanwhile leaves no half-made run folder
    early_lines = ShownEarly()  # its lines go to train.log once that exists
    if resumed is None:  # a resumed run's D was pre-trained before its first checkpoint
        pretrain(run, early_lines)
    scorer = build_evaluation(run.data, cfg.eval, device, log=early_lines,
                              conditional=run.cond.conditional)
    run.evaluator = Evaluator(scorer, run.cond, run.axis, cfg.eval.rejection_quantile,
                              cfg.train.batch_size)
    logger = build_logger(cfg.logger, folder.path, start_step=run.state.step)  # None: none
    folder.create()
    console = open_console(run, folder, [*warnings, *(
        [f"resumed at step {run.state.step} from {cfg.resume}"] if resumed is not None else []),
        f"device: {device_description}", threads_line], early_lines)
    run.step = choose_step(run.step, cfg.train.compile, cfg.train.steps - run.state.step, device,
                           console.line, run.state.clock, cfg)
    evaluation_info = scorer.start(folder.plots if cfg.eval.plots else None)
    # replicas: one row per replica and log step, named by the replica's index and seed
    balance_column = ["balance_noise"] if run.step.balance.on else []  # train.balance's std
    folder.start_metrics(["step", *run.axis.row_keys, *TRAINING_COLUMNS[1:], *balance_column,
                          *scorer.columns], run.state.rows)
    out = Outputs(folder, console, logger)
    outcome = Outcome()
    try:
        loop(run, out, outcome)
    except Exception as e:  # a bug or a full disk: recorded in summary.json, then raised
        outcome.error = f"{type(e).__name__}: {e}"
        raise
    finally:
        folder.close_metrics()
        summary = summarise(run, outcome, evaluation_info, folder, logger)  # (times: now)
        summary["manifest"] = json_safe({**run_manifest(device, device_description, started_at),
                                         "ended_at": now_iso()})
        finish(run, summary, out)
    return summary


def pretrain(run: Run, log: Callable[[str], None]) -> None:
    """train.d_pretrain_steps > 0: fit D to the data's density before the game (pretrain.py),
    with a fresh copy of the game's D optimizer and schedule, as aylien's code does."""
    steps, batch = run.cfg.train.d_pretrain_steps, run.cfg.train.batch_size
    if not steps:
        return
    make_optimizer, make_schedule = discriminator_optimizer_factory(run.cfg.optim)
    first, last = pretrain_discriminator(run.state.players.discriminator, run.loss, run.data,
                                         run.axis, make_optimizer, make_schedule, steps, batch,
                                         run.device)
    log(pretraining_line(steps, first, last, run.axis.count))


class ShownEarly(list):
    """Lines shown before the console exists: printed now, kept for train.log."""

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.append(line)


def open_console(run: Run, folder: RunFolder, lines: list[str],
                 shown_earlier: list[str]) -> RunConsole:
    """The console (and train.log), with the run's opening lines and its config tree."""
    console = RunConsole(folder.path / "train.log", run.cfg.train.steps,
                         start_step=run.state.step)
    console.line(f"run folder: {folder.path.resolve()}")
    for line in lines:
        console.line(line)
    if run.cfg.print_config:
        console.config_tree(run.state.config)
    for line in shown_earlier:  # already on screen
        console.record(line)
    return console


@dataclass
class Outputs:
    """Where a run reports: its folder, the console (and train.log), the live logger."""

    folder: RunFolder
    console: RunConsole
    logger: Optional[Any]  # None for logger=none

    def warn(self, message: Optional[str]) -> None:
        if message is not None:
            self.console.line(message)


@dataclass
class Outcome:
    status: str = "failed"  # summary.json's: completed | diverged | interrupted | failed
    error: Optional[str] = None
    stop_signal: Optional[str] = None  # the signal that stopped the run, if one did


def loop(run: Run, out: Outputs, outcome: Outcome) -> None:
    """Steps until train.steps (or a stop signal); the interval work at its boundaries."""
    state, t = run.state, SimpleNamespace(**OmegaConf.to_container(run.cfg.train, resolve=True))
    out.console.line(f"data: {run.data.describe()} | {run.axis.describe()} | {t.steps} steps")
    state.clock.start_training()
    # the step, the time and the clock's off-path seconds the interval began at (a compiled
    # step's compile time lands in off_path: it is start-up, not training speed)
    interval = (state.step, time.perf_counter(), state.clock.off_path)
    try:
        with catch_stop_signals() as stop:
            # a stop request breaks out between steps, after the last one's row: the
            # checkpoint below holds the interval's sums as they are, so a resumed run
            # repeats the rest exactly
            while state.step < t.steps and stop.signal_name is None:
                stats = run.step(*schedule(run.step.settings, state.step, t.steps))
                state.step += 1
                state.health.add(state.step, stats)
                out.console.step(state.step)

                # log / evaluate / checkpoint at their intervals: the only host syncs
                last = state.step == t.steps
                do_eval = last or bool(t.eval_every and state.step % t.eval_every == 0)
                do_log = do_eval or state.step % t.log_every == 0
                do_ckpt = bool(t.ckpt_every and state.step % t.ckpt_every == 0)
                if not (do_log or do_ckpt):
                    continue
                check_finite(run, out)
                off_path_start = time.perf_counter()
                if do_log:
                    speed = (state.step - interval[0]) / max(
                        off_path_start - interval[1] - (state.clock.off_path - interval[2]), 1e-9)
                    log_interval(run, out, speed, do_eval)
                if do_ckpt:
                    save(run, out, periodic=True)
                state.clock.off_path += time.perf_counter() - off_path_start
                interval = (state.step, time.perf_counter(), state.clock.off_path)
            check_finite(run, out)  # never save a NaN (but a diverged replica's, marked)
            save(run, out, periodic=False)
        outcome.status = "completed" if state.step >= t.steps else "interrupted"
        if outcome.status == "interrupted":
            outcome.stop_signal = stop.signal_name  # cli.py hands SIGUSR2 on (requeue)
            out.console.line(f"{stop.signal_name}: stopped at step {state.step}, "
                             "checkpoint saved")
    except FloatingPointError as e:
        kept = f"checkpoints/last.pt (step {state.saved_step}) is the last good state" \
            if state.saved_step is not None else "no checkpoint had been saved yet"
        outcome.status, outcome.error = "diverged", f"training diverged: {e}; {kept}"
        out.console.line(outcome.error)
    except KeyboardInterrupt:
        outcome.status = "interrupted"
        outcome.error = "interrupted at once (second Ctrl-C); no new checkpoint"
        out.console.line(outcome.error)


def check_finite(run: Run, out: Outputs) -> None:
    """The divergence check (a host sync): raises FloatingPointError when the run (or
    every replica) has a non-finite loss, gradient or weight; a replica that diverges
    alone is recorded and shown."""
    health, players = run.state.health, run.state.players
    for line in run.axis.check_finite(health.problems(), players.generator,
                                      players.discriminator, run.state.step, health.diverged):
        out.console.line(line)


def log_interval(run: Run, out: Outputs, speed: float, do_eval: bool) -> None:
    """A metrics.csv row (per replica) of the interval's means, and the console line; on
    evaluation steps, the evaluation's metrics join the rows."""
    state, health, players = run.state, run.state.health, run.state.players
    lrs = {"lr_g": players.opt_g.param_groups[0]["lr"],
           "lr_d": players.opt_d.param_groups[0]["lr"]}
    balance = run.step.balance  # train.balance: each replica's added noise std now
    noise = balance.noise.reshape(-1).tolist() if balance.on else [None] * run.axis.count
    rows = run.axis.label_rows([{"step": state.step, **means, **lrs,
                                 **({} if std is None else {"balance_noise": std})}
                                for means, std in zip(health.means(), noise)])
    # the console and live logger show one row: for replicas, the median of those that
    # have not diverged
    shown = median_row(rows, skip=health.diverged)
    out.console.interval(state.step, run.cfg.train.steps, shown, speed)
    health.reset()
    out.warn(health.d_wins_warning(state.step, shown, run.loss.probabilistic,
                                   run.loss.d_wins_remedies))
    scorer = run.evaluator.scorer
    mass_key = f"{scorer.histogram}_mass"  # mode_mass (mixtures) or class_mass (images)
    if do_eval:
        state.final_metrics = evaluate(run, out)
        for row, metrics in zip(rows, state.final_metrics):
            row.update({k: metrics[k] for k in scorer.columns if k in metrics})
            row[mass_key] = metrics[mass_key]
        out.warn(health.coverage_warning(state.step,
                                         median_row(state.final_metrics, skip=health.diverged)))
    state.rows.extend(rows)
    if do_eval:
        out.folder.write_mass(state.rows, mass_key, ["step", *run.axis.row_keys])
    out.folder.append_metrics(rows)
    if out.logger is not None:
        out.logger.scalars(shown)


def evaluate(run: Run, out: Outputs) -> list[dict]:
    """Each replica's metrics (one entry for a single run); the frame; a console line."""
    state, evaluator, players = run.state, run.evaluator, run.state.players
    ev, D = state.evaluation, players.discriminator
    fake = evaluator.samples(players.generator_for_eval, ev.z, ev.labels)  # (N, ...)
    players.generator.train()
    fakes = run.axis.unstack(fake)
    kept = evaluator.kept(fake, D, run.step.judge, ev.rngs)
    if kept is not None:  # evaluate only what D lets through
        fakes = [f[keep] for f, keep in zip(fakes, kept)]
    all_metrics = evaluator.metrics(fakes, kept, ev.rngs, ev.labels)
    for k, metrics in enumerate(all_metrics):
        if state.converged_at[k] is None and evaluator.scorer.converged(metrics):
            state.converged_at[k] = state.step
    eval_cfg, steps = run.cfg.eval, run.cfg.train.steps
    every = eval_cfg.plot_every
    if eval_cfg.plots and (every is None or state.step % every == 0 or state.step == steps):
        draw_frame(run, out, fakes)
    out.console.line(evaluator.line(state.step, all_metrics, state.health.diverged,
                                    state.converged_at))
    return all_metrics


def draw_frame(run: Run, out: Outputs, fakes: list[torch.Tensor]) -> None:
    """plots/samples_<step>.png: what G makes now (1-D: with D's verdict on a grid)."""
    state, D = run.state, run.state.players.discriminator
    frame = out.folder.frame(state.step)
    D.eval()
    run.evaluator.scorer.picture(fakes, frame, f"step {state.step}", run.axis.seeds,
                                 discriminator=d_curve(run), d_is_probability=run.loss.probabilistic,
                                 labels=state.evaluation.labels)
    D.train()
    if out.logger is not None:  # its histogram: the first replica that has not diverged
        shown = next(k for k in range(run.axis.count) if k not in state.health.diverged)
        out.logger.picture("samples", frame, fakes[shown], state.step)


def d_curve(run: Run):
    """D's verdict as a function of one sample, for the 1-D pictures; None when D judges
    a sample only together with others (packing, minibatch layers) or with its label."""
    d_cfg, D, cond = run.cfg.model.discriminator, run.state.players.discriminator, run.cond
    per_sample = d_cfg.get("pack", 1) == 1 and d_cfg.get("minibatch", "none") == "none"
    if not per_sample or cond.to_discriminator:
        return None
    return lambda x: run.loss.output(cond.split(D(x))[0])


def save(run: Run, out: Outputs, periodic: bool) -> None:
    out.folder.save(run.state.state_dict(), run.state.step, periodic,
                    run.cfg.train.keep_checkpoints)
    run.state.saved_step = run.state.step


def summarise(run: Run, outcome: Outcome, evaluation_info: dict, folder: RunFolder,
              logger: Optional[Any]) -> dict:
    """summary.json (design.md, "The run folder"), written at the end and on interruption."""
    state, scorer = run.state, run.evaluator.scorer
    train_time = state.clock.training()
    final = state.final_metrics[0]
    summary = {
        "status": outcome.status,
        "step": state.step,
        "wall_time_s": round(state.clock.wall(), 3),
        "train_time_s": round(train_time, 3),
        "steps_per_sec": round(state.step / train_time, 1) if train_time > 0 else None,
        "device": str(run.device),
        "seed": run.cfg.seed,
        "metrics": {k: final[k] for k in scorer.summary_keys if k in final},
        "converged_at_step": state.converged_at[0],
        **evaluation_info,  # w1_tol; for images the classifier and the real images' metrics
        # lower is better (w1, or fd for images): what a sweeper (e.g. Optuna) minimises
        "objective": final.get(scorer.objective),
        "run_dir": str(folder.path.resolve()),
        # for replicas: metrics, converged_at_step and objective are the replicas' medians
        **run.axis.summary(state.final_metrics, state.converged_at, state.health.diverged,
                           scorer.summary_keys, outcome.status, scorer.objective),
    }
    if outcome.error:
        summary["error"] = outcome.error
    if state.health.warned:
        summary["warnings"] = list(state.health.warned.values())
    if outcome.stop_signal:
        summary["stop_signal"] = outcome.stop_signal
    if outcome.status == "interrupted" and state.saved_step is not None:
        summary["resume_command"] = f"gan-train resume={folder.path.resolve()}"
    if logger is not None:
        summary["logger"] = logger.location  # where the live logger wrote
    return json_safe(summary)  # what the file holds: NaN and infinity as None


def finish(run: Run, summary: dict, out: Outputs) -> None:
    """summary.json, then the final pictures and logs, then the closing console lines."""
    console, state = out.console, run.state
    if "resume_command" in summary:
        console.line(f"to continue: {summary['resume_command']}")
    out.folder.write_summary(summary)
    try:  # pictures last: a full disk here must not cost the summary or the real error
        if state.rows:
            plots.plot_losses(state.rows, out.folder.plots / "losses.png")
            plots.plot_metrics(state.rows, out.folder.plots / "metrics.png",
                               converged_at=summary["converged_at_step"])
            plots.write_gif(out.folder.frames(), out.folder.plots / "training.gif")
        if out.logger is not None:
            out.logger.finish(flat_hparams(state.config),
                              {k: v for k, v in summary["metrics"].items()  # numbers only
                               if isinstance(v, (int, float)) and not isinstance(v, bool)},
                              out.folder.path)  # its files, to the logger's artifact store
    except OSError as e:
        console.line(f"warning: could not write the final plots or logs ({e})")
    if summary["status"] == "completed":
        console.table(run.axis.table_title(state.step), {
            **summary["metrics"], "converged_at_step": summary["converged_at_step"],
            **run.axis.table_counts(summary), "steps/s": summary["steps_per_sec"]})
    console.line(f"{summary['status']}: {out.folder.path.resolve()}")
    console.close()
