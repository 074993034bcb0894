"""The process's exit code (design.md, "Exit codes and errors"), shared by the entry points
and the sweep summary, so that neither imports the other."""

from __future__ import annotations

# summary.json status -> exit code. In a sweep a diverged job is a result like any other:
# only a failed job makes the sweep exit non-zero.
EXIT_CODES = {"completed": 0, "diverged": 1, "failed": 2, "interrupted": 130}
SWEEP_EXIT_CODES = {**EXIT_CODES, "diverged": 0}

_highest = 0


def set_exit_code(code: int) -> None:
    """The process exits with the highest code any job (or the sweep summary) asked for."""
    global _highest
    _highest = max(_highest, code)


def exit_code() -> int:
    return _highest
