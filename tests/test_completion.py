"""Tab completion: Hydra's `--shell-completion install=bash` script, through the installed
entry points (whose quick --help path must leave it to Hydra), completes in a real bash."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def complete_in_bash(program: str, line: str, cwd) -> list[str]:
    """What bash offers after typing `line` (ending in a partial word) and pressing Tab,
    with the completion `<program> --shell-completion install=bash` installs."""
    script = f"""
        eval "$({program} --shell-completion install=bash)" || exit 3
        complete -p {program} >/dev/null || exit 4  # the completion is registered
        COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}
        read -ra words <<< "$COMP_LINE"; COMP_CWORD=$(( ${{#words[@]}} - 1 ))
        hydra_bash_completion
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "HYDRA_FULL_ERROR": "0"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_gan_train_completes_groups_options_and_keys(tmp_path):
    assert {"logger=mlflow", "logger=none", "logger=tensorboard", "logger=wandb"} <= set(
        complete_in_bash("gan-train", "gan-train loss=minimax logger=", tmp_path))
    assert complete_in_bash("gan-train", "gan-train data=ri", tmp_path) == ["data=ring8"]
    assert "train.steps=" in complete_in_bash("gan-train", "gan-train train.st", tmp_path)
    # a --help already on the line is the user's, not the completion query's
    assert complete_in_bash("gan-train", "gan-train --help data=ri", tmp_path) == ["data=ring8"]
    assert not (tmp_path / "outputs").exists()  # completing runs nothing


def test_gan_sample_completes_its_keys(tmp_path):
    assert "ckpt=" in complete_in_bash("gan-sample", "gan-sample ck", tmp_path)


def test_the_install_script_exits_0_and_names_the_program(tmp_path):
    proc = subprocess.run(["gan-train", "--shell-completion", "install=bash"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("-F hydra_bash_completion gan-train")


def test_the_quick_help_leaves_shell_completion_to_hydra():
    from gan_cli.help import quick_help

    assert quick_help("train", ["--shell-completion", "install=bash"]) is None
    assert quick_help("train", ["-sc", "query=bash"]) is None
    assert quick_help("train", ["--help", "-sc", "install=bash"]) is None
