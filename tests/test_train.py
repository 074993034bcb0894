"""The real train() on tiny configs: what lands in the run folder, and what it says."""

import csv
import json

import pytest
import torch

from gan_cli.checkpoint import load_checkpoint


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_folder_is_complete(run_tiny):
    summary, run_dir = run_tiny()
    assert summary["status"] == "completed" and summary["step"] == 60
    assert summary["device"] == "cpu" and summary["seed"] == 0
    assert set(summary["metrics"]) == {"w1", "hq_fraction", "mode_spread", "modes_covered",
                                       "n_modes", "mode_kl"}
    assert summary["metrics"]["n_modes"] == 3
    assert summary["objective"] == summary["metrics"]["w1"]
    assert summary["train_time_s"] <= summary["wall_time_s"]
    assert summary["steps_per_sec"] > 0

    rows = read_csv(run_dir / "metrics.csv")
    # a row every log_every=20 steps, plus the evaluation at step 30
    assert [int(r["step"]) for r in rows] == [20, 30, 40, 60]
    assert list(rows[0]) == ["step", "d_loss", "g_loss", "d_real", "d_fake", "d_acc_real",
                             "d_acc_fake", "grad_norm_d", "grad_norm_g", "lr_g", "lr_d",
                             "w1", "hq_fraction", "mode_spread", "modes_covered", "mode_kl",
                             "peaks_on_modes"]
    assert rows[0]["w1"] == "" and rows[1]["w1"] != ""  # metrics only on evaluation rows
    assert float(rows[-1]["w1"]) == pytest.approx(summary["metrics"]["w1"])
    for r in rows:
        assert 0 < float(r["d_real"]) < 1 and 0 < float(r["d_fake"]) < 1
        assert 0 < float(r["d_acc_real"]) < 1 and 0 < float(r["d_acc_fake"]) < 1
        assert float(r["grad_norm_d"]) > 0 and float(r["grad_norm_g"]) > 0
        # the default schedule: lr decays smoothly to 3 % of its start at the last step
        lr = 1e-3 * 0.03 ** (int(r["step"]) / 60)
        assert float(r["lr_g"]) == pytest.approx(lr) and float(r["lr_d"]) == pytest.approx(lr)

    # each mode's share of high-quality samples, per evaluation
    mass = read_csv(run_dir / "mode_mass.csv")
    assert [int(r["step"]) for r in mass] == [30, 60] and list(mass[0]) == \
        ["step", "mode_0", "mode_1", "mode_2"]
    final_mass = [float(mass[-1][f"mode_{k}"]) for k in range(3)]
    assert sum(final_mass) == pytest.approx(summary["metrics"]["hq_fraction"], abs=1e-5)

    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["last.pt", "step_0000030.pt", "step_0000060.pt"]
    plots = sorted(p.name for p in (run_dir / "plots").iterdir())
    assert plots == ["losses.png", "metrics.png", "samples_0000030.png", "samples_0000060.png",
                     "training.gif"]
    from PIL import Image

    with Image.open(run_dir / "plots" / "training.gif") as gif:
        assert gif.n_frames == 2
    log = (run_dir / "train.log").read_text()
    assert "step 40/60" in log and "eval  step 60" in log and "completed:" in log


def test_checkpoint_holds_what_resume_and_sampling_need(run_tiny):
    _, run_dir = run_tiny()
    state = load_checkpoint(run_dir)
    assert state["step"] == 60
    assert state["config"]["data"]["means"] == [-4.0, 0.0, 4.0]
    for key in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d", "eval_z",
                "rng_eval", "health"):
        assert state[key] is not None, key
    assert set(state["rng"]) == {"torch_cpu", "torch_cuda", "cuda_device", "torch_mps", "numpy",
                                 "python"}
    # the metrics history, to continue the curves: the same rows as metrics.csv
    assert [r["step"] for r in state["rows"]] == [20, 30, 40, 60]
    assert state["rows"][-1]["w1"] == state["final_metrics"]["w1"]
    assert len(state["schedulers"]) == 2  # the default exp decay, one per player
    # the periodic checkpoint at 30 holds other weights than the final one
    early = load_checkpoint(run_dir / "checkpoints" / "step_0000030.pt")
    name = next(iter(state["generator"]))
    assert not torch.equal(early["generator"][name], state["generator"][name])


def test_same_seed_same_run_other_seed_other_run(run_tiny, tmp_path):
    _, a = run_tiny(run_dir=tmp_path / "a")
    _, b = run_tiny(run_dir=tmp_path / "b")
    _, c = run_tiny("seed=1", run_dir=tmp_path / "c")
    losses = [[r["d_loss"] for r in read_csv(d / "metrics.csv")] for d in (a, b, c)]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_two_dimensional_data_and_every_loss(run_tiny, tmp_path):
    for loss in ("minimax", "nonsaturating", "maxlik"):
        summary, run_dir = run_tiny("data=ring8", f"loss={loss}", run_dir=tmp_path / loss)
        assert summary["status"] == "completed"
        assert summary["metrics"]["n_modes"] == 8
    assert (run_dir / "plots" / "samples_0000060.png").stat().st_size > 10_000


def test_schedule_and_extra_steps(run_tiny):
    summary, run_dir = run_tiny("optim=gd_exp_decay", "optim.schedule.step_size=10",
                                "train.d_steps=2", "train.g_steps=2", "train.ema=null")
    assert summary["status"] == "completed"
    rows = read_csv(run_dir / "metrics.csv")
    # staircase: lr 0.005 x 0.95^floor(step / 10)
    for r in rows:
        assert float(r["lr_g"]) == pytest.approx(0.005 * 0.95 ** (int(r["step"]) // 10))
    assert load_checkpoint(run_dir)["generator_ema"] is None


class NanAfter:
    """A loss that turns NaN from D update number `after` + 1 on (fault injection)."""

    def __init__(self, inner, after: int):
        self.inner, self.after, self.calls = inner, after, 0

    def __getattr__(self, name):  # everything but d_loss is the real loss's
        return getattr(self.inner, name)

    def d_loss(self, real_logits, fake_logits):
        self.calls += 1
        loss = self.inner.d_loss(real_logits, fake_logits)
        return loss * float("nan") if self.calls > self.after else loss


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(run_tiny, monkeypatch):
    import gan_cli.build

    real_build_loss = gan_cli.build.build_loss
    monkeypatch.setattr(gan_cli.build, "build_loss", lambda cfg: NanAfter(real_build_loss(cfg), 23))
    summary, run_dir = run_tiny("train.log_every=5", "train.eval_every=5", "train.ckpt_every=5")
    # step 24 goes NaN; the check at the next log interval (25) stops the run and names it
    assert summary["status"] == "diverged" and summary["step"] == 25
    assert "d_loss is nan at step 24" in summary["error"]
    assert "checkpoints/last.pt (step 20) is the last good state" in summary["error"]
    # nothing after the divergence was written over the last good checkpoint
    last = load_checkpoint(run_dir)
    assert last["step"] == 20
    assert all(torch.isfinite(w).all() for w in last["generator"].values())
    assert not (run_dir / "checkpoints" / "step_0000025.pt").exists()
    assert (run_dir / "checkpoints" / "step_0000020.pt").exists()


def test_a_failed_sweep_job_keeps_a_summary_and_a_failed_single_run_no_folder(tmp_path):
    from gan_cli.runfolder import RunFolder

    def record_failure(run_dir, message, in_sweep):
        RunFolder(run_dir).record_failure(message, in_sweep=in_sweep)

    for in_sweep in (True, False):
        run_dir = tmp_path / str(in_sweep) / "outputs" / "2026-01-01" / "12-00-00"
        (run_dir / ".hydra").mkdir(parents=True)
        record_failure(run_dir, "data.stds=0: every std must be > 0", in_sweep=in_sweep)
        if in_sweep:
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary == {"status": "failed", "step": 0,
                               "error": "data.stds=0: every std must be > 0"}
        else:  # the run folder goes, and the day's folder it was the only one in
            assert not run_dir.parent.exists() and run_dir.parent.parent.is_dir()
    # a run folder the user chose (hydra.run.dir=mine) goes, but never the folder around it
    (tmp_path / "chosen" / "mine" / ".hydra").mkdir(parents=True)
    record_failure(tmp_path / "chosen" / "mine", "boom", in_sweep=False)
    assert (tmp_path / "chosen").is_dir() and not (tmp_path / "chosen" / "mine").exists()
    # a folder with a run's own files in it (a resumed run's, say) is left alone
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / "metrics.csv").write_text("step\n")
    record_failure(tmp_path / "run", "boom", in_sweep=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".hydra", "metrics.csv"]


def test_null_intervals_mean_only_at_the_end(run_tiny):
    summary, run_dir = run_tiny("train.eval_every=null", "train.ckpt_every=null")
    assert summary["status"] == "completed"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt"]
    rows = read_csv(run_dir / "metrics.csv")
    assert [r["step"] for r in rows if r["w1"]] == ["60"]  # one evaluation, at the end


def test_deterministic_is_on_during_its_run_and_off_after_it(run_tiny, monkeypatch):
    """deterministic=true is scoped to its run: a later job of a sweep run in the same
    process must not inherit it."""
    import gan_cli.train as train_module

    seen, real_build = [], train_module.start_run

    def spy(*args, **kwargs):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real_build(*args, **kwargs)

    monkeypatch.setattr(train_module, "start_run", spy)
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        summary, _ = run_tiny("deterministic=true")
        assert summary["status"] == "completed" and seen == [True]
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
