"""The seed-000 study command: its fast variant produces the report with every row."""

from __future__ import annotations

import re

import pytest
import torch

from gan_cli.data.gaussian import evenly_spaced
from gan_cli.models import MLP
from gan_cli.studies import blog
from conftest import compose_train


@pytest.mark.slow  # (tens of seconds: CI's suite stays under ~10 minutes)
def test_the_fast_study_writes_every_arm_and_claim_with_a_verdict(tmp_path, capsys):
    report = blog.main(["--seeds", "2", "--steps", "30", "--out", str(tmp_path / "docs"),
                        "--runs", str(tmp_path / "runs")])
    text = report.read_text()
    assert "`python -m gan_cli.studies.blog --seeds 2 --steps 30`" in text
    for arm in blog.ARMS:  # one table row per arm, with 2 seeds
        assert re.search(rf"^\| {re.escape(arm.name)} \| 2 \|", text, re.M), arm.name
    verdicts = re.findall(r"^\| (.+?) \| (strict|loose|peaks) \| "
                          r"\*\*(reproduced|partly|not reproduced)\*\* \|", text, re.M)
    # uni, bi, tri, shallow, narrow, scaling, seeds: each by each of the three yardsticks
    assert len(verdicts) == 7 * 3
    assert {stick for _, stick, _ in verdicts} == {"strict", "loose", "peaks"}
    assert any("depend on the random seed" in claim for claim, _, _ in verdicts)
    assert "Under the blog's own notion of convergence (peaks on the modes), " in text
    assert text.count("not in the previous report") == 7 * 3  # there was none in the folder
    png = tmp_path / "docs" / "seed_study.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the runs behind the numbers: one batched run per arm, two replicas each
    assert len(list((tmp_path / "runs").glob("*/summary.json"))) == len(blog.ARMS)
    # --from-runs rebuilds the same tables from them, training nothing
    rebuilt = blog.main(["--seeds", "2", "--steps", "30", "--out", str(tmp_path / "again"),
                         "--runs", str(tmp_path / "runs"), "--from-runs"]).read_text()
    assert "rebuilt from those runs" in rebuilt
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert [line for line in rebuilt.splitlines() if line.startswith("| ")] == table


def result(strict, loose, peaks=None, arm=blog.ARMS[0]):
    return blog.ArmResult(arm, list(range(len(strict))), strict, loose, peaks or strict,
                          [0.1] * len(strict), [1] * len(strict), 1, 0.0, None)


def test_verdicts_follow_the_measured_steps():
    assert blog.verdict_on_steps(result([20, 30, 40], [10, 20, 30]), False, "strict")[0] == \
        "reproduced"  # median 30 <= 2 x 30
    assert blog.verdict_on_steps(result([None, None, 90], [20, 30, 40]), False, "loose")[0] == \
        "reproduced"  # each yardstick alone
    narrow_peaks = result([None] * 3, [None, 900, None], [20, 30, 40])
    assert [blog.verdict_on_steps(narrow_peaks, False, k)[0] for k in blog.YARDSTICKS] == \
        ["not reproduced", "not reproduced", "reproduced"]
    assert blog.verdict_on_steps(result([None, 900, 800], [None] * 3), False, "strict")[0] == \
        "partly"  # gets there, late
    slow, fast = result([160, 150, 140], [150] * 3), result([20] * 3, [20] * 3)
    verdict, text = blog.ratio_verdict(slow, fast, 150 / 20, "strict")
    assert verdict == "reproduced" and "7.5x" in text
    assert blog.seed_verdict([result([10, None], [10, None])], "loose")[0] == "reproduced"
    assert blog.seed_verdict([result([10, 10], [10, 10])], "loose")[0] == "not reproduced"


OLD_REPORT = """## The blog's claims

| claim | verdict | measured |
|---|---|---|
| uni-modal converges within 20-30 steps | **partly** | median over 20 seeds: never (strict), 1910 steps (loose); G gets there |
| results depend on the random seed | **reproduced** | 3 of 8 arms |
"""


def test_each_verdict_says_what_changed_and_which_change_did_it():
    """The previous report's verdict is cited; a twin arm without pre-training (same batch
    and lr) tells the pre-training's effect from the batch's and lr's."""
    by = {a.name: a for a in blog.ARMS}
    fast = result([20] * 3, [20] * 3, arm=by["uni-modal"])
    slow_twin = result([900] * 3, [900] * 3, arm=by["uni-modal" + blog.NO_PRETRAINING])
    rows = {(r[0], r[1]): r for r in blog.verdict_rows([fast, slow_twin], OLD_REPORT)}
    claim = "uni-modal converges within 20-30 steps"
    _, _, verdict, _, changed = rows[(claim, "loose")]
    # the old single verdict's medians give each yardstick's verdict back
    assert verdict == "reproduced" and changed.startswith("before: partly at 1910 steps; "
                                                          "without pre-training")
    assert changed.endswith("-> batch and lr moved the median 1910 steps to 900 steps, "
                            "the pre-training 900 steps to 20 steps")
    assert rows[(claim, "strict")][4].startswith("before: not reproduced at never")
    assert rows[(claim, "peaks")][4].startswith("before: not measured by this yardstick (the "
                                                "report's one verdict: partly)")
    seeds = rows[("results depend on the random seed", "loose")]
    assert seeds[2] == "not reproduced" and "before: reproduced; D pre-trained" in seeds[4]
    # a report of the new form is read per yardstick
    new_form = "\n".join(["| claim | yardstick | verdict | measured | what changed |",
                          "|---|---|---|---|---|",
                          *[f"| {c} | {k} | **{v}** | {m} | {w} |" for c, k, v, m, w in
                            blog.verdict_rows([fast, slow_twin], OLD_REPORT)]])
    again = blog.previous_verdicts(new_form)[(claim, "peaks")]
    assert (again.verdict, again.median) == ("reproduced", 20)
    assert blog.previous_verdicts(OLD_REPORT)[(claim, None)].verdict == "partly"


def test_evenly_spaced_modes_centre_on_zero():
    m = evenly_spaced(3)
    assert m.means[:, 0].tolist() == [-4.0, 0.0, 4.0] and m.stds.unique().tolist() == [0.5]
    assert evenly_spaced(4, spacing=2.0).means[:, 0].tolist() == [-3.0, -1.0, 1.0, 3.0]
    cfg = compose_train(["experiment=blog_modes_k", "data.k=10"])
    assert cfg.data.k == 10 and cfg.model.widths_per_mode


def test_init_std_draws_the_aylien_initialisation():
    torch.manual_seed(0)
    net = MLP(1, 1, hidden=[400, 400], init_std=1.0)
    w = net[2].weight
    assert abs(w.std().item() - 1.0) < 0.01 and net[2].bias.abs().max() == 0
    default = MLP(1, 1, hidden=[400, 400])[2].weight  # PyTorch's: U(+-1/sqrt(400))
    assert default.abs().max() <= 0.05
    with pytest.raises(Exception, match="init_std"):
        from gan_cli.config import validate_train_config
        validate_train_config(compose_train(["model.generator.init_std=-1"]))


def test_plot_every_thins_the_pictures_not_the_evaluations(run_tiny):
    summary, run = run_tiny("train.eval_every=10", "eval.plot_every=30")
    frames = sorted(p.name for p in (run / "plots").glob("samples_*.png"))
    assert frames == ["samples_0000030.png", "samples_0000060.png"]
    with open(run / "metrics.csv") as f:
        evaluations = [line for line in f if line.rstrip("\n").split(",")[-1]][1:]  # mode_kl set
    assert len(evaluations) == 6  # every 10 steps of 60


@pytest.mark.slow  # (tens of seconds: CI's suite stays under ~10 minutes)
def test_the_fast_ring_grid_study_writes_every_setup_beside_the_published_numbers(tmp_path):
    from gan_cli.studies import ring_grid

    report = ring_grid.main(["--seeds", "2", "--steps-scale", "0.004",
                             "--out", str(tmp_path / "docs"), "--runs", str(tmp_path / "runs")])
    text = report.read_text()
    assert "`python -m gan_cli.studies.ring_grid --seeds 2 --steps-scale 0.004" in text
    for setup in ring_grid.SETUPS:  # a row per setup: its steps, modes of 8 or 25, the paper's
        steps = round(setup.steps * 0.004)
        n = 8 if "ring8" in setup.name else 25
        assert re.search(rf"^\| {re.escape(setup.name)} \| {steps} \| [\d.]+ ± [\d.]+ "
                         rf"\([\d.]+–[\d.]+\) / {n} \| \d/2 seeds \| .+ \| "
                         rf"{re.escape(setup.published)} \|$", text, re.M), setup.name
    runs = tmp_path / "runs"  # two batched runs of 2 replicas, and the best presets' 2 seeds
    assert len(list(runs.glob("*/summary.json"))) == 2
    for best in ("ring8_best", "grid25_best"):
        assert len(list(runs.glob(f"{best}/seed_*/summary.json"))) == 2
    # both best presets evaluate with rejection sampling: their lines say so, twice
    assert text.count("hq over the samples D's rejection sampling kept") == 2
    assert len(re.findall(r"all of G's samples, without rejection: \d+/[\d.]+, \d+/[\d.]+ \(",
                          text)) == 2

    # --reuse reads the finished runs back: the same table, nothing trained again
    written = {f: f.stat().st_mtime_ns for f in runs.rglob("summary.json")}
    again = ring_grid.main(["--seeds", "2", "--steps-scale", "0.004", "--reuse",
                            "--out", str(tmp_path / "again"), "--runs", str(runs)]).read_text()
    assert {f: f.stat().st_mtime_ns for f in runs.rglob("summary.json")} == written
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert [line for line in again.splitlines() if line.startswith("| ")] == table


def test_setups_left_out_with_only_are_named_in_the_report(tmp_path):
    from gan_cli.studies import ring_grid

    report = ring_grid.main(["--seeds", "2", "--steps-scale", "0.004", "--only", "0",
                             "--out", str(tmp_path / "docs"), "--runs", str(tmp_path / "runs")])
    text = report.read_text()
    assert "| ring8, plain GAN | 20 |" in text and "| grid25, plain GAN |" not in text
    left_out = "; ".join(s.name for s in ring_grid.SETUPS[1:])
    assert f"Not run for this report (left out with `--only`): {left_out}." in text


def test_reuse_reads_finished_seeds_back_and_trains_only_the_others(tmp_path, monkeypatch):
    """A study stopped part-way continues (ring_grid --reuse): seed 0 finished, seed 1
    completed a shorter run and seed 2 stopped early, so only seeds 1 and 2 train again."""
    import json
    import subprocess

    import gan_cli.studies as studies

    def write(seed: int, status: str, step: int) -> None:
        folder = tmp_path / f"seed_{seed}"
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps({"status": status, "step": step,
                                                          "seed": seed}))

    write(0, "completed", 50)
    write(1, "completed", 40)
    write(2, "interrupted", 30)
    trained = []

    def fake_gan_train(command, **kwargs):  # the run a gan-train process would leave
        seed = int(next(a for a in command if a.startswith("seed=")).split("=")[1])
        trained.append(seed)
        (tmp_path / f"seed_{seed}" / "summary.json").write_text(json.dumps(
            {"status": "completed", "step": 50, "seed": seed, "new": True}))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(studies.subprocess, "run", fake_gan_train)
    summaries = studies.run_seeds(["data=ring8"], 3, 50, tmp_path, jobs=1, reuse=True)
    assert sorted(trained) == [1, 2]
    assert [s.get("new", False) for s in summaries] == [False, True, True]
    trained.clear()  # without reuse every seed trains
    studies.run_seeds(["data=ring8"], 3, 50, tmp_path, jobs=1)
    assert sorted(trained) == [0, 1, 2]
