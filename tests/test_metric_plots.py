"""plots/metrics.png: the evaluation metrics over steps (tests check the series drawn)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan_cli.plots import plot_metrics
from conftest import compose_train
from test_images import digits_root, quick_classifier, tiny_image_run  # noqa: F401 (fixtures)


def csv_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def eval_series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pairs = [(int(r["step"]), float(r[key])) for r in rows if r[key] != ""]
    return [s for s, _ in pairs], [v for _, v in pairs]


def assert_draws(drawn: dict, rows: list[dict], keys: tuple[str, ...]) -> None:
    assert tuple(drawn) == keys
    for key in keys:
        steps, (low, median, high) = drawn[key]
        want_steps, want = eval_series(rows, key)
        assert steps == want_steps and median == pytest.approx(want), key
        assert np.array_equal(low, median) and np.array_equal(high, median)  # one run


def test_a_mixture_runs_metric_picture_shows_w1_modes_and_hq(run_tiny, tmp_path):
    summary, run_dir = run_tiny("print_config=false", "train.steps=90")
    rows = csv_rows(run_dir)
    path = tmp_path / "metrics.png"
    drawn = plot_metrics(rows, path, converged_at=summary["converged_at_step"] or 60)
    assert_draws(drawn, rows, ("w1", "modes_covered", "hq_fraction"))
    assert drawn["w1"][0] == [30, 60, 90]
    with Image.open(path) as image:
        assert image.size == (800, int(100 * (2.2 * 3 + 0.6)))


def test_a_run_writes_its_metric_picture(run_tiny):
    summary, run_dir = run_tiny("print_config=false")
    assert (run_dir / "plots" / "metrics.png").is_file()


@pytest.mark.slow  # trains the digit classifier first (about 30 s of CPU)
def test_an_image_runs_metric_picture_shows_fd_classes_and_score(digits_root, tmp_path):  # noqa: F811
    from gan_cli.train import train

    run_dir = tmp_path / "run"
    train(compose_train(tiny_image_run(digits_root)), run_dir)
    rows = csv_rows(run_dir)
    drawn = plot_metrics(rows, tmp_path / "metrics.png")
    assert_draws(drawn, rows, ("fd", "classes_covered", "classifier_score"))
    assert drawn["fd"][0] == [20, 40] and (tmp_path / "metrics.png").is_file()


def test_image_rows_draw_fd_classes_and_score_not_the_mixture_metrics(tmp_path):
    # train()'s rows: numbers, the evaluation metrics on evaluation rows only
    rows = [{"step": 10, "d_loss": 1.2},
            {"step": 20, "d_loss": 1.1, "fd": 80.0, "classifier_score": 2.5,
             "classes_covered": 4, "class_kl": 0.9},
            {"step": 40, "d_loss": 1.0, "fd": 35.5, "classifier_score": 6.0,
             "classes_covered": 9, "class_kl": 0.2}]
    drawn = plot_metrics(rows, tmp_path / "metrics.png")
    assert list(drawn) == ["fd", "classes_covered", "classifier_score"]
    assert drawn["fd"][0] == [20, 40] and drawn["fd"][1][1] == pytest.approx([80.0, 35.5])
    assert drawn["classes_covered"][1][1] == pytest.approx([4, 9])
    assert (tmp_path / "metrics.png").is_file()


def test_replicas_draw_the_median_and_quartiles_of_each_step(tmp_path):
    rows = [{"step": s, "replica": k, "d_loss": 1.0, "w1": w, "modes_covered": m}
            for s, per_replica in ((10, [(0.9, 1), (0.5, 2), (0.1, 3)]),
                                   (20, [(0.4, 3), (0.2, 3), (0.3, 3)]))
            for k, (w, m) in enumerate(per_replica)]
    rows.insert(1, {"step": 5, "replica": 0, "d_loss": 1.0})  # a log row without evaluation
    drawn = plot_metrics(rows, tmp_path / "metrics.png", converged_at=20)
    assert list(drawn) == ["w1", "modes_covered"]
    steps, (low, median, high) = drawn["w1"]
    assert steps == [10, 20]
    assert median == pytest.approx([0.5, 0.3]) and low == pytest.approx([0.3, 0.25])
    assert high == pytest.approx([0.7, 0.35])
    assert drawn["modes_covered"][1][1] == pytest.approx([2, 3])
    assert (tmp_path / "metrics.png").is_file()


def test_no_evaluation_no_picture(tmp_path):
    path = tmp_path / "metrics.png"
    assert plot_metrics([{"step": 10, "d_loss": 1.0, "w1": ""}], path) == {}
    assert not path.exists()
