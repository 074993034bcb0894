"""step_cache.py: a compiled step saved by one run is loaded by the next with the same
networks and options (and trains the same numbers); a file that does not match the run,
or is damaged, is compiled again with one line, never trusted."""

import os
import shutil
import subprocess

import pytest
import torch

from conftest import TINY, compose_train
from gan_cli import step_cache
from test_cli import script
from test_resume import SMOKE

CPU = torch.device("cpu")


def key(*overrides: str) -> str:
    return step_cache.graph_key(compose_train([*TINY, *overrides]), CPU)


def test_the_key_ignores_seed_and_run_length_but_not_what_shapes_the_graph():
    base = key()
    assert key("seed=7", "train.steps=999", "train.log_every=10", "train.compile=true") == base
    assert key("model.generator.hidden=[16,16]") != base
    assert key("train.batch_size=32") != base
    assert key("loss=hinge") != base
    assert len(base) == 24 and int(base, 16) >= 0  # a hex digest, as the file name holds


def test_a_damaged_file_is_not_loaded_and_says_why(tmp_path):
    damaged = tmp_path / "step-0.bin"
    damaged.write_bytes(b"not a compiled step")
    fn, problem = step_cache._load(damaged, (None,))
    assert fn is None and problem.startswith("could not be loaded (")


# ---------------------------------------------------------------- whole compiled runs
COMPILED = [*SMOKE, "train.compile=true", "optim=adam", "train.steps=100", "train.log_every=10",
            "train.eval_every=null", "train.ckpt_every=null", "eval.plots=false"]


def train(tmp_path, folder: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([script("gan-train"), *COMPILED, *overrides, f"hydra.run.dir={folder}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_a_saved_step_is_loaded_by_the_next_run_and_a_mismatch_is_compiled_again(tmp_path):
    first = train(tmp_path, "first")
    assert "compiled the step in" in first.stdout
    (saved,) = (tmp_path / "cache" / "gan_cli").glob("step-*.bin")
    metrics = (tmp_path / "first" / "metrics.csv").read_text()

    again = train(tmp_path, "again")
    assert f"loaded the compiled step ({saved}) in" in again.stdout
    assert (tmp_path / "again" / "metrics.csv").read_text() == metrics  # the same numbers

    # another run's file under this run's name (G twice as wide): its guards refuse it
    wider = train(tmp_path, "wider", "model.generator.hidden=[32,32]")
    assert "compiled the step in" in wider.stdout
    (wide_file,) = set((tmp_path / "cache" / "gan_cli").glob("step-*.bin")) - {saved}
    shutil.copy(wide_file, saved)
    swapped = train(tmp_path, "swapped")
    assert f"the saved compiled step {saved} does not match this run's step: compiling it " \
           "again" in swapped.stdout
    assert (tmp_path / "swapped" / "metrics.csv").read_text() == metrics

    saved.write_bytes(saved.read_bytes()[:1000])  # a truncated file (a full disk, say)
    truncated = train(tmp_path, "truncated")
    assert f"the saved compiled step {saved} could not be loaded (" in truncated.stdout
    assert "compiled the step in" in truncated.stdout
    assert (tmp_path / "truncated" / "metrics.csv").read_text() == metrics
