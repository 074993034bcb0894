"""Every example of the documentation runs (issue 26): each `gan-train` / `gan-sample` /
`gan-report` line of the code blocks of README.md and the docs/ pages, and each YAML block
(written where its first-line comment says, then used as that preset), on tiny settings.

The lines run in this process through the real entry points (cli.train_main, with Hydra
parsing the command line as in a shell), which spares ~40 torch imports; a training line
gets TINY appended (its own keys stay, the lengths shrink), a sampling line the run folder
of its page's nearest training line above it. Lines that need what a test cannot have
are skipped by SKIP, each with its reason, and SKIP may hold no stale entry. No runnable
example appears twice (the pages share none), so none costs its run time twice.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATED = {"seed_study.md", "ring_grid.md"}  # written by gan_cli.studies, not by hand
PAGES = [ROOT / "README.md",
         *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in GENERATED)]
PROGRAMS = ("gan-train", "gan-sample", "gan-report")
# smoke-style lengths for a training line (appended: they win over the line's own values)
TINY = ["train.steps=20", "train.log_every=10", "train.eval_every=null", "train.ckpt_every=null",
        "eval.n_samples=200", "eval.plots=false", "device=cpu", "print_config=false",
        "threads=1"]  # a shared CI machine: one thread is many times faster (issue 26)
SEARCH_TINY = ["hydra.sweeper.n_trials=2"]  # an Optuna search (hparams_search=): two trials
# a DCGAN (model=dcgan): small batches and few channels, the image sizes as the line gives
DCGAN_TINY = ["train.batch_size=16", "model.generator.width=8", "model.discriminator.width=8"]
SKIP = {  # a substring of the line -> why it cannot run here
    "mnist": "needs the MNIST / Fashion-MNIST files (a 50 MB download) and minutes of training",
    "hydra/launcher=slurm": "needs a SLURM cluster",
    "logger.tracking_uri=http": "needs a reachable MLflow tracking server (else minutes of retries)",
    "out=digits.png": "draws digits: needs the MNIST runs of the lines above",
    "label=3": "draws digit 3: needs the MNIST cGAN of the line above",
    "labels=[0,7]": "draws digits 0 and 7: needs the MNIST cGAN of the line above",
    "eval.inception_weights": "needs Inception's 96 MB weights file (tests/test_fid.py runs "
                              "FID and KID with a stand-in file)",
}
FLAGS = ("--help", "-h", "--cfg", "--version", "--info")  # lines that train nothing


class Example(NamedTuple):
    page: str  # relative to the repository: README.md, docs/sweeps.md, ...
    kind: str  # "command" (one command line, continuation lines joined, comment dropped) or "yaml"
    text: str


def page_examples(page: Path) -> list[Example]:
    """The page's examples, in its order."""
    name = page.relative_to(ROOT).as_posix()
    examples = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", page.read_text(), re.S):
        if lang == "yaml":
            examples.append(Example(name, "yaml", body))
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.split(" ", 1)[0] in PROGRAMS:
                line = re.sub(r"<[^>]*>", "PLACEHOLDER", line)  # ckpt=<run folder>
                examples.append(Example(name, "command", " ".join(shlex.split(line, comments=True))))
    return examples


EXAMPLES = [example for page in PAGES for example in page_examples(page)]


def skip_reason(text: str) -> str | None:
    return next((why for what, why in SKIP.items() if what in text), None)


def _is_training(args: list[str]) -> bool:
    return args[0] == "gan-train" and not any(a in FLAGS for a in args)


def write_own_data(home: Path) -> None:
    """Small files where the own-data examples (docs/own_data.md) look for theirs: a
    two-moons CSV, a CSV with named columns and a label column, an .npz of two arrays, a
    folder of unlabelled colour pictures and one of grey pictures in class subfolders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    angle = rng.uniform(0, np.pi, 300)
    moons = np.c_[np.cos(angle), np.sin(angle)] + rng.normal(0, 0.1, (300, 2))
    home.mkdir(parents=True)
    np.savetxt(home / "moons.csv", moons, delimiter=",", header="x,y", comments="")
    kinds = rng.integers(0, 2, 300)
    with open(home / "cells.csv", "w") as f:
        f.write("area,perimeter,type\n")
        f.writelines(f"{a:.3f},{p:.3f},{'ab'[k]}\n" for (a, p), k in zip(moons + 3 * kinds[:, None], kinds))
    np.savez(home / "x.npz", train=moons, test=moons[:20])
    for folder, mode, n in (("faces", "RGB", 70), ("digits_png/0", "L", 35), ("digits_png/1", "L", 35)):
        (home / folder).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (20, 24, 3 if mode == "RGB" else 1), dtype=np.uint8)
            Image.fromarray(pixels.squeeze(), mode).save(home / folder / f"{i}.png")


def expand_home(args: list[str], home: Path) -> list[str]:
    """What bash does to `data.path=~/moons.csv`: the tilde after `=` becomes the home folder."""
    return [re.sub(r"^([^=]+=)~/", lambda m: f"{m.group(1)}{home}/", a) for a in args]


class Runner:
    """Runs the examples in one scratch folder, remembering each training line's run folder.
    `~` is a scratch home holding the own-data examples' files (and the image cache)."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        write_own_data(self.home)
        self.folders: dict[int, Path] = {}  # example index -> its run (or sweep) folder

    def invoke(self, args: list[str], monkeypatch) -> int:
        from gan_cli import cli, exit_codes, sweep

        monkeypatch.chdir(self.root)
        monkeypatch.setenv("HOME", str(self.home))
        monkeypatch.setenv("XDG_CACHE_HOME", str(self.home / ".cache"))
        monkeypatch.setattr(exit_codes, "_highest", 0)  # the process-wide worst exit code so far
        # a labelled image folder's classifier: tens of steps learn the test's few pictures
        monkeypatch.setattr("gan_cli.image_metrics.MIN_STEPS", 30)
        args = expand_home(args, self.home)
        monkeypatch.setattr(sys, "argv", list(args))
        main = {"gan-train": cli.train_main, "gan-sample": cli.sample_main,
                "gan-report": lambda: sweep.report_main(args[1:])}[args[0]]
        try:
            main()
        except SystemExit as e:
            return 0 if e.code is None else e.code
        return 0

    def run_training(self, index: int, args: list[str], monkeypatch) -> int:
        folder = self.root / f"example_{index}"
        multirun = "-m" in args or "--multirun" in args
        where = f"hydra.sweep.dir={folder}" if multirun else f"hydra.run.dir={folder}"
        search = SEARCH_TINY if any(a.startswith("hparams_search=") for a in args) else []
        dcgan = DCGAN_TINY if "model=dcgan" in args else []
        code = self.invoke([*args, *TINY, *search, *dcgan, where], monkeypatch)
        self.folders[index] = folder
        return code

    def source_run(self, index: int, monkeypatch, sweep: bool = False) -> Path:
        """The run (or sweep) folder of the nearest runnable training line above index, on
        its page."""
        for i in range(index - 1, -1, -1):
            page, kind, text = EXAMPLES[i]
            if page != EXAMPLES[index].page:
                break
            args = shlex.split(text) if kind == "command" else []
            if not (args and _is_training(args)) or skip_reason(text):
                continue
            if sweep and "-m" not in args:
                continue
            if i not in self.folders:
                assert self.run_training(i, args, monkeypatch) == 0, text
            folder = self.folders[i]
            return folder if sweep or "-m" not in args else folder / "0"
        raise AssertionError(f"no training example above {EXAMPLES[index].text!r} "
                             f"on {EXAMPLES[index].page}")


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return Runner(tmp_path_factory.mktemp("readme"))


def test_the_pages_have_examples_and_the_skip_list_is_current():
    commands = [e.text for e in EXAMPLES if e.kind == "command"]
    assert len(commands) >= 30 and any(e.kind == "yaml" for e in EXAMPLES)
    assert {e.page for e in EXAMPLES} >= {"README.md", "docs/sweeps.md", "docs/own_data.md"}
    for what in SKIP:  # a skip that no longer matches anything must go
        assert any(what in e.text for e in EXAMPLES), what


def test_no_runnable_example_appears_twice():
    seen: dict[tuple[str, str], str] = {}
    for page, kind, text in EXAMPLES:
        if not skip_reason(text):
            assert (kind, text) not in seen, f"{text!r} on {page} and {seen[kind, text]}"
            seen[kind, text] = page


@pytest.mark.parametrize("index", range(len(EXAMPLES)),
                         ids=[f"{e.page}: {e.text.splitlines()[0][:60]}" for e in EXAMPLES])
def test_example_runs(index, runner, monkeypatch, capsys):
    _, kind, text = EXAMPLES[index]
    reason = skip_reason(text)
    if reason:
        pytest.skip(reason)
    if kind == "yaml":
        # its first line names the file: `# my_conf/data/my_mixture.yaml`
        path = Path(text.splitlines()[0].lstrip("# ").strip())
        (runner.root / path).parent.mkdir(parents=True, exist_ok=True)
        (runner.root / path).write_text(text)
        config_dir, group, name = path.parts[0], path.parts[-2], path.stem
        args = ["gan-train", "--config-dir", config_dir, f"{group}={name}"]
        assert runner.run_training(index, args, monkeypatch) == 0, capsys.readouterr().err
        return
    args = shlex.split(text)
    if _is_training(args):
        code = runner.run_training(index, args, monkeypatch)
    elif args[0] == "gan-sample":  # from the run of its page's nearest training line above
        ckpt = runner.source_run(index, monkeypatch)
        args = [f"ckpt={ckpt}" if a.startswith("ckpt=") else a for a in args]
        code = runner.invoke([*args, "device=cpu"], monkeypatch)
        out = next(a.split("=", 1)[1] for a in args if a.startswith("out="))
        assert (runner.root / out).is_file(), out
    elif args[0] == "gan-report":  # the sweep of its page's nearest sweep line above
        code = runner.invoke([args[0], str(runner.source_run(index, monkeypatch, sweep=True))],
                             monkeypatch)
    else:  # --help, --cfg job: nothing to shrink
        code = runner.invoke(args, monkeypatch)
    captured = capsys.readouterr()
    assert code == 0, f"{text}\n{captured.err[-2000:]}"
