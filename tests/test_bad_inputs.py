"""The bad-input matrix: each bad config value, file or checkpoint gets exit code 2, one line
on stderr naming the culprit, no traceback, and no change to an earlier run's files."""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from test_cli import SMOKE, run

GPU = torch.cuda.is_available()


def fingerprint(folder: Path) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """A finished run, plus a truncated and a wrong-architecture copy of its checkpoint."""
    cwd = tmp_path_factory.mktemp("bad_inputs")
    proc = run(["gan-train", *SMOKE, "train.steps=20", "train.ckpt_every=10", "hydra.run.dir=run"],
               cwd)
    assert proc.returncode == 0, proc.stderr
    last = cwd / "run" / "checkpoints" / "last.pt"
    (cwd / "truncated.pt").write_bytes(last.read_bytes()[:2000])
    (cwd / "broken" / "checkpoints").mkdir(parents=True)
    (cwd / "broken" / "checkpoints" / "last.pt").write_bytes(last.read_bytes()[:2000])
    state = torch.load(last, weights_only=True)
    (cwd / "old" / "checkpoints").mkdir(parents=True)
    torch.save({k: v for k, v in state.items() if k not in ("rng", "rows")},
               cwd / "old" / "checkpoints" / "last.pt")  # as an older gan_cli wrote them
    state["config"]["model"]["generator"]["hidden"] = [7]  # the weights are for [128, 128]
    (cwd / "other_arch" / "checkpoints").mkdir(parents=True)
    torch.save(state, cwd / "other_arch" / "checkpoints" / "last.pt")
    (cwd / "not_a_run").mkdir()
    (cwd / "a_file").write_text("")
    return cwd


# (command-line arguments, what the one-line message must contain)
CASES = [
    (["data=nosuchdata"], "nosuchdata"),                            # unknown group option
    (["train.stepz=10"], "stepz"),                                  # misspelt key
    (["train.steps=many"], "train.steps"),                          # wrong type
    (["optim.generator.lr=-1"], "optim.generator.lr=-1"),           # negative lr
    (["optim.discriminator.lr=0"], "optim.discriminator.lr=0"),     # zero lr
    (["optim.generator.lr=nan"], "optim.generator.lr=nan"),         # NaN lr
    (["train.batch_size=0"], "train.batch_size=0"),                 # zero batch size
    (["data.means=[]"], "data.means=[]"),                           # empty means list
    (["data.stds=[0.5,0.5]"], "data.stds"),                         # means/stds lengths differ
    (["data.weights=[1,2]"], "data.weights"),                       # means/weights lengths differ
    (["data.stds=-1"], "data.stds"),                                # negative std
    (["device=tpu"], "device=tpu"),                                 # unknown device
    (["resume=broken/checkpoints/last.pt"], "last.pt: not a readable gan_cli checkpoint"),
    (["resume=truncated.pt"], "must lie in its run folder's checkpoints/"),
    (["resume=old"], "the checkpoint lacks rng, rows"),
    (["resume=other_arch"], "generator weights do not fit"),         # another architecture
    (["resume=not_a_run"], "resume=not_a_run: not a gan_cli run folder"),
    (["resume=no_such_folder"], "resume=no_such_folder: no such run folder"),
    (["hydra.run.dir=a_file/run"], "a_file/run: Not a directory"),  # unwritable output folder
    (["train.keep_checkpoints=0"], "train.keep_checkpoints=0"),
    (["eval.n_samples=-5"], "eval.n_samples=-5"),
]
if not GPU:
    CASES.append((["device=cuda"], "device=cuda: no CUDA GPU"))
SAMPLE_CASES = [
    (["ckpt=other_arch", "out=s.npy"], "generator weights do not fit"),
    (["ckpt=truncated.pt", "out=s.npy"], "truncated.pt: not a readable gan_cli checkpoint"),
    (["ckpt=run", "out=s.jpg"], "out=s.jpg"),
    (["ckpt=run", "n=0"], "n=0"),
]


def test_every_bad_input_is_one_clear_line_with_exit_2_and_nothing_changed(earlier_run):
    before = fingerprint(earlier_run)
    # a resumed run takes its config from the checkpoint: no experiment=smoke there
    commands = [["gan-train", *(args if args[0].startswith("resume=") else SMOKE + args)]
                for args, _ in CASES] + [["gan-sample", *args] for args, _ in SAMPLE_CASES]
    with ThreadPoolExecutor(max_workers=4) as pool:  # each process mostly waits on imports
        results = list(pool.map(lambda c: run(c, earlier_run), commands))
    assert len(commands) >= 15
    for command, (_, must_say), proc in zip(commands, CASES + SAMPLE_CASES, results):
        where = " ".join(command)
        assert proc.returncode == 2, (where, proc.stdout, proc.stderr)
        assert proc.stderr.startswith(f"{command[0]}: error: "), (where, proc.stderr)
        assert proc.stderr.count("\n") == 1, (where, proc.stderr)
        assert must_say in proc.stderr, (where, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout, where
    assert fingerprint(earlier_run) == before
    assert (earlier_run / "not_a_run").is_dir()  # a folder named by resume= is never removed
    # and no run folder holding nothing but Hydra's record was left behind
    assert list(earlier_run.glob("outputs/*/*")) == []
