"""Every example of README.md runs (issue 26): each `gan-train` / `gan-sample` / `gan-report`
line of its code blocks, and each YAML block (written where its first-line comment says,
then used as that preset), on tiny settings.

The lines run in this process through the real entry points (cli.train_main, with Hydra
parsing the command line as in a shell), which spares ~40 torch imports; a training line
gets TINY appended (its own keys stay, the lengths shrink), a sampling line the run folder
of the README's nearest training line above it. Lines that need what a test cannot have
are skipped by SKIP, each with its reason, and SKIP may hold no stale entry.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
PROGRAMS = ("gan-train", "gan-sample", "gan-report")
# smoke-style lengths for a training line (appended: they win over the line's own values)
TINY = ["train.steps=20", "train.log_every=10", "train.eval_every=null", "train.ckpt_every=null",
        "eval.n_samples=200", "eval.plots=false", "device=cpu", "print_config=false",
        "threads=1"]  # a shared CI machine: one thread is many times faster (issue 26)
SEARCH_TINY = ["hydra.sweeper.n_trials=2"]  # an Optuna search (hparams_search=): two trials
SKIP = {  # a substring of the line -> why it cannot run here
    "mnist": "needs the MNIST / Fashion-MNIST files (a 50 MB download) and minutes of training",
    "hydra/launcher=slurm": "needs a SLURM cluster",
    "label=3": "draws digit 3: needs the MNIST cGAN of the line above",
    "labels=[0,7]": "draws digits 0 and 7: needs the MNIST cGAN of the line above",
}
FLAGS = ("--help", "-h", "--cfg", "--version", "--info")  # lines that train nothing


def readme_examples() -> list[tuple[str, str]]:
    """(kind, text) in README order: ("command", one command line, continuation lines
    joined, comment dropped) or ("yaml", a YAML block)."""
    examples = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", README.read_text(), re.S):
        if lang == "yaml":
            examples.append(("yaml", body))
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.split(" ", 1)[0] in PROGRAMS:
                line = re.sub(r"<[^>]*>", "PLACEHOLDER", line)  # ckpt=<run folder>
                examples.append(("command", " ".join(shlex.split(line, comments=True))))
    return examples


EXAMPLES = readme_examples()


def skip_reason(text: str) -> str | None:
    return next((why for what, why in SKIP.items() if what in text), None)


def _is_training(args: list[str]) -> bool:
    return args[0] == "gan-train" and not any(a in FLAGS for a in args)


class Runner:
    """Runs README lines in one scratch folder, remembering each training line's run folder."""

    def __init__(self, root: Path):
        self.root = root
        self.folders: dict[int, Path] = {}  # README example index -> its run (or sweep) folder

    def invoke(self, args: list[str], monkeypatch) -> int:
        from gan_cli import cli, sweep

        monkeypatch.chdir(self.root)
        monkeypatch.setattr(cli, "_exit_code", 0)  # the process-wide worst exit code so far
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
        code = self.invoke([*args, *TINY, *search, where], monkeypatch)
        self.folders[index] = folder
        return code

    def source_run(self, index: int, monkeypatch, sweep: bool = False) -> Path:
        """The run (or sweep) folder of the nearest runnable training line above index."""
        for i in range(index - 1, -1, -1):
            kind, text = EXAMPLES[i]
            args = shlex.split(text) if kind == "command" else []
            if not (args and _is_training(args)) or skip_reason(text):
                continue
            if sweep and "-m" not in args:
                continue
            if i not in self.folders:
                assert self.run_training(i, args, monkeypatch) == 0, text
            folder = self.folders[i]
            return folder if sweep or "-m" not in args else folder / "0"
        raise AssertionError(f"no training example above {EXAMPLES[index][1]!r}")


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return Runner(tmp_path_factory.mktemp("readme"))


def test_the_readme_has_examples_and_the_skip_list_is_current():
    commands = [text for kind, text in EXAMPLES if kind == "command"]
    assert len(commands) >= 30 and any(kind == "yaml" for kind, _ in EXAMPLES)
    for what in SKIP:  # a skip that no longer matches anything must go
        assert any(what in text for _, text in EXAMPLES), what


@pytest.mark.parametrize("index", range(len(EXAMPLES)),
                         ids=[text.splitlines()[0][:60] for _, text in EXAMPLES])
def test_readme_example_runs(index, runner, monkeypatch, capsys):
    kind, text = EXAMPLES[index]
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
    elif args[0] == "gan-sample":  # from the run of the nearest training line above
        ckpt = runner.source_run(index, monkeypatch)
        args = [f"ckpt={ckpt}" if a.startswith("ckpt=") else a for a in args]
        code = runner.invoke([*args, "device=cpu"], monkeypatch)
        out = next(a.split("=", 1)[1] for a in args if a.startswith("out="))
        assert (runner.root / out).is_file(), out
    elif args[0] == "gan-report":  # the sweep of the nearest sweep line above
        code = runner.invoke([args[0], str(runner.source_run(index, monkeypatch, sweep=True))],
                             monkeypatch)
    else:  # --help, --cfg job: nothing to shrink
        code = runner.invoke(args, monkeypatch)
    captured = capsys.readouterr()
    assert code == 0, f"{text}\n{captured.err[-2000:]}"
