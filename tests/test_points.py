"""Your own point sets (data=points): reading the files, bad input, the metrics with their
floors, and a tiny run on two moons written by the test, from .npy and from .csv."""

from __future__ import annotations

import csv
import re
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_cli.errors import UserError
from gan_cli.data.points import PointSet
from gan_cli.point_metrics import PointMetrics, energy_distance, kmeans, prdc
from conftest import compose_train, run_sample


def two_moons(n: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """(n, 2) points on two interleaved half circles (not a Gaussian mixture), shifted and
    scaled away from 0 and 1 so that un-standardising matters; labels: which moon."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    moon = rng.integers(0, 2, n)
    x = np.where(moon, np.cos(t), 1 - np.cos(t))
    y = np.where(moon, np.sin(t), 0.5 - np.sin(t))
    points = np.stack([x, y], 1) + rng.normal(0, noise, (n, 2))
    return (points * [30.0, 3.0] + [1000.0, -50.0]).astype(np.float32), moon


def write_csv(path: Path, rows, header=None) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def moons_npy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("moons") / "moons.npy"
    np.save(path, two_moons(3000)[0])
    return path


@pytest.fixture(scope="module")
def moons_csv(tmp_path_factory) -> Path:
    points, moon = two_moons(3000)
    path = tmp_path_factory.mktemp("moons") / "moons.csv"
    return write_csv(path, [[f"{x:.6f}", f"{y:.6f}", "upper" if m else "lower"]
                            for (x, y), m in zip(points, moon)], header=["x", "y", "moon"])


# ---------------------------------------------------------------- reading
def test_npy_points_are_split_with_a_seed_and_kept_in_data_units(moons_npy):
    data = PointSet(str(moons_npy), holdout=0.2)
    assert data.shape == (2,) and len(data.train) == 2400 and len(data.held_out) == 600
    everything = np.load(moons_npy)
    together = torch.cat([data.train, data.held_out]).numpy()
    assert sorted(map(tuple, together)) == sorted(map(tuple, everything))  # a partition
    np.testing.assert_allclose(data.mean.numpy(), data.train.mean(0).numpy(), rtol=1e-6)
    assert data.mean[0] > 900 and data.scale[0] > 10 * data.scale[1]  # data units, per column
    again, other = PointSet(str(moons_npy), holdout=0.2), PointSet(str(moons_npy), holdout=0.2,
                                                                   split_seed=1)
    assert torch.equal(again.held_out, data.held_out)
    assert not torch.equal(other.held_out, data.held_out)
    assert data.n_classes == 0 and data.sample(7).shape == (7, 2)


def test_csv_with_header_names_and_a_text_label_column(moons_csv):
    data = PointSet(str(moons_csv), columns=["y", "x"], label_column="moon")
    assert data.column_names == ["y", "x"] and data.class_names == ["lower", "upper"]
    assert data.n_classes == 2 and data.mean[1] > 900  # columns in the order asked for
    x, y = data.sample_labelled(500, torch.Generator().manual_seed(0))
    assert x.shape == (500, 2) and set(y.tolist()) == {0, 1}
    balanced = data.balanced_labels(1000)
    share = (data.train_labels == 1).float().mean().item()
    assert abs((balanced == 1).float().mean().item() - share) < 2e-3  # the data's shares
    assert torch.all(balanced[:-1] <= balanced[1:])  # in blocks


def test_txt_without_header_one_column_npz_key_and_1d_npy(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# a comment\n1 2 3\n\n4 5 6\n7 8 9\n10 11 12\n")
    data = PointSet(str(txt), columns=[2], holdout=0.25)
    assert data.shape == (1,) and sorted(torch.cat([data.train, data.held_out])[:, 0].tolist()) \
        == [3, 6, 9, 12]
    np.savez(tmp_path / "a.npz", first=np.zeros((5, 3)), second=np.arange(10.0))
    assert PointSet(str(tmp_path / "a.npz"), key="second").shape == (1,)
    np.save(tmp_path / "one.npy", np.arange(20.0))
    assert PointSet(str(tmp_path / "one.npy")).shape == (1,)  # N numbers: 1-D points


BAD = [
    # (file name, contents writer, options, words the one-line message must contain)
    ("missing.npy", None, {}, ["data.path=", "no such file"]),
    ("ragged.csv", lambda p: p.write_text("a,b\n1,2\n3,4\n5\n"), {}, ["line 4", "ragged"]),
    ("word.csv", lambda p: p.write_text("1,2\n3,x4\n"), {}, ["line 2", "column 1", "'x4'",
                                                             "not a number"]),
    ("nan.csv", lambda p: p.write_text("1,2\n3,nan\n5,6\n"), {}, ["line 2", "not finite"]),
    ("inf.npy", lambda p: np.save(p, np.array([[1.0, 2], [np.inf, 1], [3, 4]])), {},
     ["row 1", "not finite"]),
    ("rank3.npy", lambda p: np.save(p, np.zeros((4, 2, 2))), {}, ["3-D array", "(N, d)"]),
    ("two.npz", lambda p: np.savez(p, a=np.zeros((3, 2)), b=np.zeros((3, 2))), {},
     ["2 arrays", "data.key="]),
    ("many.csv", lambda p: p.write_text("".join(f"{i},{i * 0.37}\n" for i in range(300))),
     {"label_column": 1}, ["data.label_column", "300 distinct labels", "data.max_classes=100"]),
    ("name.csv", lambda p: p.write_text("1,2\n3,4\n"), {"columns": ["x"]},
     ["data.columns", "no header row"]),
    ("range.csv", lambda p: p.write_text("1,2\n3,4\n"), {"columns": [5]},
     ["data.columns", "out of range"]),
    ("points.json", lambda p: p.write_text("[]"), {}, ["allowed endings"]),
    ("holdout.csv", lambda p: p.write_text("1,2\n3,4\n"), {"holdout": 1.5},
     ["data.holdout=1.5", "(0, 1)"]),
]


@pytest.mark.parametrize("name, write, options, words", BAD, ids=[b[0] for b in BAD])
def test_bad_point_files_fail_with_one_line_naming_the_problem(tmp_path, name, write, options,
                                                                words):
    path = tmp_path / name
    if write is not None:
        write(path)
    with pytest.raises(UserError) as e:
        PointSet(str(path), **options)
    message = str(e.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,4\n5,6,7\n")
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", "from gan_cli.cli import train_main; "
                           "train_main()", "data=points", f"data.path={bad}", "device=cpu",
                           f"hydra.run.dir={run_dir}"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 3" in lines[0] and "ragged" in lines[0], done.stderr
    assert not run_dir.exists()


# ---------------------------------------------------------------- metrics
def test_knn_metrics_tell_a_collapsed_and_a_shifted_sample_from_a_good_one():
    g = torch.Generator().manual_seed(0)
    real, good = torch.randn(800, 2, generator=g), torch.randn(800, 2, generator=g)
    collapsed = 0.05 * torch.randn(800, 2, generator=g)  # all mass near the centre
    shifted = torch.randn(800, 2, generator=g) + 8.0  # (outliers' balls are wide)
    fit, few, off = prdc(real, good), prdc(real, collapsed), prdc(real, shifted)
    assert fit["precision"] > 0.9 and fit["recall"] > 0.9 and 0.8 < fit["density"] < 1.2
    assert few["precision"] > 0.9 and few["recall"] < 0.2 and few["coverage"] < 0.2
    assert off["precision"] < 0.05 and off["recall"] < 0.05 and off["coverage"] < 0.05
    assert energy_distance(real, good) < 0.02 < energy_distance(real, collapsed) < \
        energy_distance(real, shifted)


def test_kmeans_finds_separate_clusters_and_the_floor_is_a_training_subsample():
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centres[torch.arange(600) % 3] + 0.1 * torch.randn(600, 2, generator=g)
    found = kmeans(x, 3, torch.Generator().manual_seed(0))
    assert torch.cdist(found, centres).min(0).values.max() < 0.1
    scorer = PointMetrics(x[:500], x[500:], k=5, bins=3, projections=16)
    floor = scorer.floor(1000)  # capped at the 100 held-out points
    assert floor["n_compared"] == 100 and floor["precision"] > 0.9 and floor["bin_kl"] < 0.05
    one_cluster = scorer(centres[0] + 0.1 * torch.randn(100, 2, generator=g),
                         torch.Generator().manual_seed(0))
    assert one_cluster["bin_kl"] == pytest.approx(np.log(3), rel=0.05)  # one cell of three
    assert one_cluster["recall"] < 0.5 < floor["recall"]


# ---------------------------------------------------------------- end to end
POINT_RUN = ["experiment=smoke", "device=cpu", "print_config=false", "train.steps=60",
             "train.log_every=20", "train.eval_every=30", "train.ckpt_every=null",
             "eval.n_samples=400", "eval.projections=16"]


@pytest.mark.parametrize("source", ["npy", "csv"])
def test_two_moons_train_and_gan_sample_writes_data_units(source, moons_npy, moons_csv,
                                                           tmp_path):
    from gan_cli.train import train

    # the CSV's third column names the moon: a text column must be left out (or be the label)
    data = [f"data.path={moons_npy}"] if source == "npy" else \
        [f"data.path={moons_csv}", "data.columns=[x,y]"]
    run_dir = tmp_path / "run"
    summary = train(compose_train(POINT_RUN + ["data=points", *data]), run_dir)
    assert summary["status"] == "completed"
    floor = summary["floor_metrics"]
    assert set(summary["metrics"]) == {"w1", "energy", "precision", "recall", "density",
                                       "coverage", "bin_kl"}
    assert floor["precision"] > 0.9 and floor["recall"] > 0.9 and floor["w1"] < 0.2
    assert summary["n_compared"] == 300  # 10 % of 3000 held out, fewer than eval.n_samples
    assert "precision and recall >= 0.9 x floor" in summary["converged_rule"]
    header = (run_dir / "bin_mass.csv").read_text().splitlines()[0]
    assert header.split(",")[:2] == ["step", "bin_0"] and header.count("bin_") == 20
    assert (run_dir / "plots" / "samples_0000060.png").stat().st_size > 10_000
    out = run_sample(run_dir, tmp_path / "s.npy", "n=300")
    x = np.load(out)
    assert x.shape == (300, 2)
    assert abs(x[:, 0].mean() - 1030) < 30 and abs(x[:, 1].mean() + 50) < 5  # data units
    assert run_sample(run_dir, tmp_path / "s.png", "n=300").stat().st_size > 10_000


def test_conditional_points_from_a_label_column(moons_csv, tmp_path):
    from gan_cli.train import train

    summary = train(compose_train(POINT_RUN + [
        "data=points", f"data.path={moons_csv}", "data.label_column=moon",
        "model.conditional=true"]), tmp_path / "run")
    m = summary["metrics"]
    assert 0 <= m["class_fidelity"] <= 1 and len(m["class_w1"]) == 2
    assert summary["floor_metrics"]["class_fidelity"] > 0.9  # the moons barely overlap
    x = np.load(run_sample(tmp_path / "run", tmp_path / "upper.npy", "n=200", "label=1"))
    assert x.shape == (200, 2)


def test_conditional_without_labels_and_replicas_are_refused(moons_npy):
    from gan_cli.train import train

    for extra, words in ((["model.conditional=true"], "needs labelled data"),
                         (["train.replicas=2"], "your own data")):
        with pytest.raises(UserError, match=words):
            train(compose_train(POINT_RUN + ["data=points", f"data.path={moons_npy}", *extra]),
                  Path("/nonexistent/never/written"))


def test_one_dimensional_points_get_histograms_and_d_of_x(tmp_path):
    from gan_cli.plots import plot_points

    g = torch.Generator().manual_seed(0)
    seen = []

    def discriminator(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return torch.sigmoid(x - 100)

    plot_points(100 + torch.randn(300, 1, generator=g), 100 + torch.randn(300, 1, generator=g),
                tmp_path / "hist.png", title="1-D", discriminator=discriminator)
    assert (tmp_path / "hist.png").stat().st_size > 10_000
    grid = seen[0][:, 0]
    assert grid.shape == (400,) and grid.min() < 98 and grid.max() > 102  # D over the data


def test_higher_dimensional_points_get_a_pairwise_picture(tmp_path):
    from gan_cli.plots import plot_points

    g = torch.Generator().manual_seed(0)
    plot_points(torch.randn(300, 7, generator=g), torch.randn(300, 7, generator=g),
                tmp_path / "pairs.png", title="7-D", names=list("abcdefg"))
    from PIL import Image

    assert Image.open(tmp_path / "pairs.png").size[0] >= 1000  # 5 x 5 panels, 2.2 in each


@pytest.mark.slow
def test_two_moons_precision_and_recall_reach_085_of_their_floors(tmp_path):
    """Acceptance (issue 22): the default model on 20,000 two-moons points. Slow (minutes)."""
    from gan_cli.train import train

    path = tmp_path / "moons.npy"
    np.save(path, two_moons(20_000, seed=0)[0])
    summary = train(compose_train(["data=points", f"data.path={path}", "device=cpu",
                                   "print_config=false"]), tmp_path / "run")
    m, floor = summary["metrics"], summary["floor_metrics"]
    print(json.dumps({"metrics": m, "floor": floor}, indent=1))
    assert m["precision"] >= 0.85 * floor["precision"]
    assert m["recall"] >= 0.85 * floor["recall"]


@pytest.mark.parametrize("override, words", [("eval.knn_k=0", "eval.knn_k=0"),
                                             ("eval.floor_fraction=1.5", "(0, 1]"),
                                             ("eval.knn_k=400", "more than 400 held-out")])
def test_bad_evaluation_settings_are_refused_before_training(moons_npy, tmp_path, override,
                                                              words):
    from gan_cli.train import train

    with pytest.raises(UserError, match=re.escape(words)):
        train(compose_train(POINT_RUN + ["data=points", f"data.path={moons_npy}", override]),
              tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_g_and_d_see_standardised_points_and_g_maps_back_to_data_units(moons_csv):
    from gan_cli.build import build_conditioning, build_models

    cfg = compose_train(["data=points", f"data.path={moons_csv}", "data.label_column=moon",
                         "model.conditional=true", "device=cpu"])
    data = PointSet(str(moons_csv), label_column="moon")
    cond = build_conditioning(cfg.model, cfg.loss, data)
    models = build_models(cfg.model, data, torch.device("cpu"), cond)
    standardise = models.discriminator[0]  # (d + K,): the points scaled, the label code kept
    code = torch.nn.functional.one_hot(data.train_labels, 2).float()
    seen = standardise(torch.cat([data.train, code], dim=1))
    assert seen[:, :2].mean(0).abs().max() < 1e-3 and (seen[:, :2].std(0) - 1).abs().max() < 1e-3
    assert torch.equal(seen[:, 2:], code)
    inner, unstandardise = models.generator[0], models.generator[1]
    z = cond.generator_input(models.noise(64), data.balanced_labels(64))
    assert torch.allclose(models.generator(z), inner(z) * data.scale + data.mean)
    assert torch.allclose(unstandardise(seen[:, :2]), data.train, atol=1e-3)
