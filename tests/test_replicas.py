"""train.replicas=R: R seeds in one batched run, each the same as its single run."""

import csv
import json
import statistics

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_train
from gan_cli import build
from gan_cli.checkpoint import load_checkpoint
from gan_cli.config import validate_train_config
from gan_cli.errors import UserError
from gan_cli.replicas import Replicas, replica_weights
from gan_cli.sample import sample
from gan_cli.train import train
from test_resume import assert_same_tensors

# every step logged, so metrics.csv holds each step's losses; instance noise and the
# stratified prior exercise every per-replica random draw
STEPWISE = ["train.steps=50", "train.log_every=1", "train.eval_every=null", "eval.plots=false",
            "train.instance_noise=0.1", "train.ckpt_every=null"]


def read_rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_each_replica_follows_its_single_run_step_by_step(run_tiny, tmp_path):
    summary, batched = run_tiny(*STEPWISE, "train.replicas=3", "seed=4",
                                run_dir=tmp_path / "batched")
    rows = read_rows(batched)
    assert len(rows) == 3 * 50
    for k, seed in enumerate([4, 5, 6]):
        _, single = run_tiny(*STEPWISE, f"seed={seed}", run_dir=tmp_path / f"seed{seed}")
        mine = [r for r in rows if r["replica"] == str(k)]
        assert {r["seed"] for r in mine} == {str(seed)}
        theirs = read_rows(single)
        assert [r["step"] for r in mine] == [r["step"] for r in theirs]
        for a, b in zip(mine, theirs):
            for key in ("d_loss", "g_loss", "d_real", "d_fake"):
                assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-4), (seed, a["step"])
            # a gradient norm is the most rounding-sensitive number: batched and single
            # kernels round differently, and once (step 36 of seed 4) one step's G norm
            # differed by 6e-4 while the losses agreed to 1e-5
            for key in ("grad_norm_d", "grad_norm_g"):
                assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-2), (seed, a["step"])
        # the evaluations agree too (own evaluation noise per replica)
        assert float(mine[-1]["w1"]) == pytest.approx(float(theirs[-1]["w1"]), abs=1e-3)
        # and the replica's generator is that run's, to float rounding
        ours = replica_weights(load_checkpoint(batched)["generator"], k)
        for name, tensor in load_checkpoint(single)["generator"].items():
            torch.testing.assert_close(ours[name], tensor, atol=1e-4, rtol=1e-4)
    assert summary["replicas"] == 3


def test_replicas_differ_from_each_other():
    """A test that would pass if every replica were seeded alike must not: they differ."""
    cfg = compose_train(["device=cpu", "train.replicas=2"])
    data = build.build_data(cfg.data, torch.device("cpu"))
    models, generators = build.build_replicas(cfg.model, data, torch.device("cpu"), [0, 1])
    w = next(models.generator.parameters())
    assert w.shape[0] == 2 and not torch.equal(w[0], w[1])
    assert not torch.equal(data.sample(8, generator=generators[0]),
                           data.sample(8, generator=generators[1]))


def test_summary_files_and_sampling_of_a_replica_run(run_tiny, tmp_path):
    summary, run_dir = run_tiny("train.replicas=4", "seed=10")
    assert summary["status"] == "completed" and summary["replicas"] == 4
    per = summary["per_replica"]
    assert [p["seed"] for p in per] == [10, 11, 12, 13]
    w1s = [p["metrics"]["w1"] for p in per]
    assert len(set(w1s)) == 4
    assert summary["metrics"]["w1"] == pytest.approx(statistics.median(w1s))
    low, high = summary["metrics_iqr"]["w1"]
    assert min(w1s) <= low <= summary["metrics"]["w1"] <= high <= max(w1s)
    assert summary["objective"] == summary["metrics"]["w1"]
    assert summary["converged"] == sum(p["converged_at_step"] is not None for p in per)
    assert summary["diverged"] == 0

    rows = read_rows(run_dir)
    assert rows[0].keys() >= {"step", "replica", "seed", "d_loss", "w1"}
    last = [r for r in rows if r["step"] == "60"]
    assert [float(r["w1"]) for r in last] == pytest.approx(w1s)
    mass = (run_dir / "mode_mass.csv").read_text().splitlines()
    assert mass[0] == "step,replica,seed,mode_0,mode_1,mode_2"
    assert len(mass) == 1 + 4 * 2  # evaluations at steps 30 and 60
    assert (run_dir / "plots" / "samples_0000060.png").stat().st_size > 0
    assert (run_dir / "plots" / "losses.png").stat().st_size > 0

    # gan-sample draws from the replica asked for, and asks which one otherwise
    out = tmp_path / "s.npy"
    sample_cfg = OmegaConf.create({"ckpt": str(run_dir), "n": 500, "out": str(out), "seed": 0,
                                   "device": "cpu", "ema": True, "replica": 2})
    sample(sample_cfg)
    x = np.load(out)
    assert x.shape == (500, 1)
    sample_cfg.replica = None
    with pytest.raises(UserError, match=r"holds 4 replicas; choose one with replica=0\.\.3"):
        sample(sample_cfg)


def test_a_diverged_replica_is_recorded_and_the_others_finish(run_tiny, monkeypatch):
    real_build = build.build_replicas

    def with_a_broken_replica(*args, **kwargs):
        models, generators = real_build(*args, **kwargs)
        with torch.no_grad():
            next(models.discriminator.parameters())[1].fill_(float("nan"))
        return models, generators

    monkeypatch.setattr("gan_cli.build.build_replicas", with_a_broken_replica)
    summary, run_dir = run_tiny("train.replicas=3")
    assert summary["status"] == "completed" and summary["diverged"] == 1
    statuses = [p["status"] for p in summary["per_replica"]]
    assert statuses == ["completed", "diverged", "completed"]
    assert "d_loss is nan at step 1" in summary["per_replica"][1]["error"]
    healthy = [summary["per_replica"][k]["metrics"]["w1"] for k in (0, 2)]
    assert summary["metrics"]["w1"] == pytest.approx(statistics.median(healthy))
    # what a sweeper ranks: the diverged seed counts as infinitely bad, not as absent
    assert summary["objective"] == pytest.approx(max(healthy))
    log = (run_dir / "train.log").read_text()
    assert log.count("replica 1 (seed 1) diverged") == 1


def test_a_diverged_first_replica_leaves_the_live_logger_working(run_tiny, monkeypatch):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed; CI installs it")
    real_build = build.build_replicas

    def with_replica_0_broken(*args, **kwargs):
        models, generators = real_build(*args, **kwargs)
        with torch.no_grad():
            next(models.generator.parameters())[0].fill_(float("nan"))
        return models, generators

    monkeypatch.setattr("gan_cli.build.build_replicas", with_replica_0_broken)
    summary, run_dir = run_tiny("train.replicas=2", "logger=tensorboard")
    assert summary["status"] == "completed" and summary["per_replica"][0]["status"] == "diverged"
    assert summary["objective"] is None  # the median of w1 and infinity
    assert any((run_dir / "tb").iterdir())


def test_every_replica_diverging_stops_the_run(run_tiny):
    summary, _ = run_tiny("train.replicas=2", "optim.generator.lr=1e6",
                          "optim.discriminator.lr=1e6", "train.log_every=1")
    assert summary["status"] == "diverged"
    assert "every replica diverged" in summary["error"]


def test_replica_run_resumes_exactly(tmp_path):
    base = ["experiment=smoke", "device=cpu", "train.replicas=2", "train.log_every=10",
            "train.eval_every=20", "train.ckpt_every=null", "eval.n_samples=500",
            "eval.plots=false",
            "optim/schedule=constant"]  # a decay (and instance noise) depend on train.steps
    train(compose_train(base + ["train.steps=40"]), tmp_path / "whole")
    train(compose_train(base + ["train.steps=20"]), tmp_path / "part")
    train(compose_train(base + ["train.steps=40", f"resume={tmp_path / 'part'}"]),
          tmp_path / "ignored", overrides=["train.steps=40"])
    a, b = (load_checkpoint(tmp_path / d) for d in ("whole", "part"))
    for key in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d", "rng_eval",
                "rng_replicas", "converged_at"):
        assert_same_tensors(a[key], b[key], key)
    assert (tmp_path / "whole" / "metrics.csv").read_text() == \
        (tmp_path / "part" / "metrics.csv").read_text()
    summary = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["step"] == 40


@pytest.mark.parametrize("override, named", [
    ("loss=wgan_gp", "loss=wgan_gp (its gradient penalty) cannot run batched"),
    ("train.unroll_steps=2", "train.unroll_steps=2 cannot run batched"),
    ("model.discriminator.spectral_norm=true", "spectral_norm=true cannot run batched"),
])
def test_options_without_a_batched_form_are_refused(override, named):
    cfg = compose_train(["train.replicas=4", override])
    with pytest.raises(UserError, match=r"^train\.replicas=4: .*" + named.replace("(", r"\(")
                       .replace(")", r"\)").replace(".", r"\.")):
        validate_train_config(cfg)


def test_replicas_must_be_a_positive_count():
    with pytest.raises(UserError, match=r"train\.replicas=0"):
        validate_train_config(compose_train(["train.replicas=0"]))


def test_replicas_module_runs_each_copy_on_its_own_slice():
    torch.manual_seed(0)
    copies = [torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(),
                                  torch.nn.Linear(5, 2)) for _ in range(3)]
    stacked = Replicas(copies)
    x = torch.randn(3, 7, 3)
    y = stacked(x)
    for k, net in enumerate(copies):
        torch.testing.assert_close(y[k], net(x[k]))
    y.sum().backward()
    norms = stacked.grad_norm()
    for k, net in enumerate(copies):
        net(x[k]).sum().backward()
        expected = torch.cat([p.grad.flatten() for p in net.parameters()]).norm()
        torch.testing.assert_close(norms[k], expected)


def test_a_checkpoint_from_before_replicas_still_resumes(tmp_path):
    """A checkpoint written before train.replicas (and threads) existed: the new keys
    take their defaults, which keep the old behaviour."""
    base = ["experiment=smoke", "device=cpu", "train.ckpt_every=null", "eval.plots=false",
            "eval.n_samples=500", "optim/schedule=constant"]
    train(compose_train(base + ["train.steps=20"]), tmp_path / "old")
    last = tmp_path / "old" / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    del state["config"]["train"]["replicas"], state["config"]["threads"]
    del state["rng_replicas"], state["health"]["diverged"]
    torch.save(state, last)
    summary = train(compose_train(base + ["train.steps=30", f"resume={tmp_path / 'old'}"]),
                    tmp_path / "ignored", overrides=["train.steps=30"])
    assert summary["status"] == "completed" and summary["step"] == 30
    assert load_checkpoint(tmp_path / "old")["config"]["train"]["replicas"] == 1
