"""train.d_pretrain_steps: D fitted to the true density before the game (gan_cli/pretrain.py)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from conftest import compose_train
from test_cli import run
from gan_cli import train as train_module
from gan_cli.train import pretrain, start_run

CPU = torch.device("cpu")
# aylien's own case, N(4, 0.5), with the default networks; Adam fits it in a few hundred steps
FIT = ["data=unimodal", "device=cpu", "train.batch_size=64", "optim.discriminator.lr=0.01"]
GRID = torch.linspace(-6, 6, 241).unsqueeze(1)  # the pre-training box of N(4, 0.5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # (conftest.py)


def correlations(run_) -> list[float]:
    """Per replica: Pearson correlation of D's output (loss.output) with the density on GRID."""
    D, target = run_.state.players.discriminator, run_.data.density(GRID)
    with torch.no_grad():
        x = GRID.expand(run_.axis.count, *GRID.shape) if run_.axis.count > 1 else GRID
        said = run_.loss.output(D(x)).reshape(run_.axis.count, -1)
    return [float(torch.corrcoef(torch.stack([s, target]))[0, 1]) for s in said]


def test_pretraining_makes_d_track_the_density():
    untouched = start_run(compose_train([*FIT, "train.d_pretrain_steps=300"]), CPU)
    fitted = start_run(compose_train([*FIT, "train.d_pretrain_steps=300"]), CPU)
    lines = []
    pretrain(fitted, lines.append)
    assert correlations(fitted)[0] > 0.95
    assert correlations(untouched)[0] < 0.8  # the same D before its pre-training
    first, last = (float(v) for v in lines[0].split("MSE ")[1].split(" -> "))
    assert lines[0].startswith("pre-trained D for 300 steps: MSE ") and last < first / 10


def test_pretraining_leaves_g_the_game_optimizer_and_the_random_stream_untouched():
    fitted = start_run(compose_train([*FIT, "train.d_pretrain_steps=50"]), CPU)
    pretrain(fitted, lambda line: None)
    after_fitting = torch.get_rng_state()
    plain = start_run(compose_train(FIT), CPU)
    pretrain(plain, lambda line: None)  # d_pretrain_steps=0: nothing happens
    # the training stream is where it would be without pre-training (its points have
    # generators of their own)
    assert torch.equal(after_fitting, torch.get_rng_state())
    for a, b in zip(fitted.state.players.generator.parameters(),
                    plain.state.players.generator.parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(
        fitted.state.players.discriminator.parameters(),
        plain.state.players.discriminator.parameters()))
    assert fitted.state.players.opt_d.state_dict()["state"] == {}  # the game's Adam: fresh


def test_each_replica_is_pretrained_as_its_own_seed_would_be():
    stacked = start_run(compose_train([*FIT, "train.d_pretrain_steps=40", "train.replicas=2"]),
                        CPU)
    pretrain(stacked, lambda line: None)
    for k in range(2):
        single = start_run(compose_train([*FIT, "train.d_pretrain_steps=40", f"seed={k}"]), CPU)
        pretrain(single, lambda line: None)
        for name, p in single.state.players.discriminator.named_parameters():
            stacked_p = stacked.state.players.discriminator.get_parameter("net." + name)[k]
            assert torch.allclose(stacked_p, p, atol=1e-5), name
    longer = start_run(compose_train([*FIT, "train.d_pretrain_steps=300", "train.replicas=3",
                                      "model.discriminator.hidden=[64,64]"]), CPU)
    before = correlations(longer)
    pretrain(longer, lambda line: None)
    assert all(c > 0.95 for c in correlations(longer)), (before, correlations(longer))


def test_data_without_a_density_is_refused_before_anything_is_written(tmp_path):
    np.savetxt(tmp_path / "pts.csv", np.random.default_rng(0).normal(size=(200, 2)),
               delimiter=",")
    proc = run(["gan-train", "data=points", "data.path=pts.csv", "device=cpu",
                "train.d_pretrain_steps=10", "hydra.run.dir=out"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "train.d_pretrain_steps=10" in proc.stderr
    assert "Gaussian mixtures" in proc.stderr and not (tmp_path / "out").exists()


def test_a_packed_d_is_refused():
    from gan_cli.errors import UserError

    with pytest.raises(UserError, match="train.d_pretrain_steps=5: D must judge one sample"):
        start_run(compose_train([*FIT, "train.d_pretrain_steps=5",
                                 "model.discriminator.pack=2"]), CPU)


def test_the_blog_preset_pretrains_once_and_a_resumed_run_does_not_again(tmp_path, monkeypatch):
    calls = []
    real = train_module.pretrain_discriminator
    monkeypatch.setattr(train_module, "pretrain_discriminator",
                        lambda *a, **k: calls.append(a[-3]) or real(*a, **k))
    tiny = ["experiment=blog_trimodal", "device=cpu", "train.steps=20", "eval.n_samples=500",
            "train.d_pretrain_steps=100", "train.replicas=2", "train.ckpt_every=20"]
    summary = train_module.train(compose_train(tiny), tmp_path / "run")
    assert summary["status"] == "completed" and calls == [100]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "pre-trained D for 100 steps: MSE " in log and "(mean over 2 replicas)" in log
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["w1"]]
    assert rows and all(r["peaks_on_modes"] in {"0", "1", "2", "3"} for r in rows)
    resumed = train_module.train(compose_train([*tiny, "train.steps=30",
                                                f"resume={tmp_path / 'run'}"]),
                                 tmp_path / "ignored", overrides=["train.steps=30"])
    assert resumed["step"] == 30
    assert calls == [100]  # its checkpoint holds the pre-trained D


def test_blog_presets_follow_the_january_aylien_code_and_keep_the_contrast():
    blog = compose_train(["experiment=blog_trimodal"])
    assert (blog.train.batch_size, blog.train.d_pretrain_steps) == (12, 1000)
    assert blog.optim.generator.lr == blog.optim.discriminator.lr == 0.03
    assert (blog.optim.schedule.step_size, blog.optim.schedule.gamma) == (150, 0.95)
    assert blog.model.discriminator.init_std == blog.model.generator.init_std == 1.0
    before = compose_train(["experiment=blog_nopre_trimodal_narrow"])
    assert (before.train.batch_size, before.train.d_pretrain_steps) == (8, 0)
    assert before.optim.discriminator.lr == 0.005 and list(before.model.generator.hidden) == \
        [12, 8, 8]
