"""What the benchmark scripts share: running a command, timing it, comparing medians."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent


def timed(command: list[str], env: dict | None = None) -> tuple[float, str, float]:
    """(wall seconds, stdout, peak resident memory in MB) of a command that must succeed;
    env: variables to set for it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True,
                                 env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            sys.exit(f"{' '.join(command)} failed ({child.returncode}): "
                     f"{err.read().strip()[-500:]}")
        return wall, out.read(), usage.ru_maxrss / 1024  # ru_maxrss is in kB on Linux


def gan_train(overrides: list[str], folder: Path, threads: int,
              compile_cache: Path | None = None) -> tuple[float, dict, float]:
    """(wall s, summary.json, peak MB) of one gan-train run into folder; compile_cache: the
    inductor cache directory it uses (TORCHINDUCTOR_CACHE_DIR), None = the user's."""
    env = {"TORCHINDUCTOR_CACHE_DIR": str(compile_cache)} if compile_cache else None
    wall, _, peak = timed([shutil.which("gan-train") or "gan-train", *overrides,
                           f"threads={threads}", f"hydra.run.dir={folder}"], env)
    return wall, json.loads((folder / "summary.json").read_text()), peak


def reference_script(name: str, args: list[str], threads: int) -> tuple[float, dict, float]:
    """(wall s, the JSON line it prints, peak MB) of benchmarks/<name> with `threads` torch
    threads."""
    wall, out, peak = timed([sys.executable, "-c", f"import torch; torch.set_num_threads({threads}); "
                       f"import runpy, sys; sys.argv = ['{name}', *{args!r}]; "
                       f"runpy.run_path({str(HERE / name)!r}, run_name='__main__')"])
    return wall, json.loads(out.strip().splitlines()[-1]), peak


Run = Callable[[int], tuple[float, float, float]]  # repeat index -> (wall s, rate, peak MB)
MODES = ("eager", "compiled", "both")  # the benchmarks' --mode: train.compile of our runs


def gan_train_runs(overrides: list[str], root: Path, threads: int,
                   rate: Callable[[dict], float], mode: str) -> dict[str, Run]:
    """Our side(s) of a comparison, by --mode: "gan-train" is train.compile=false (eager)
    or true with a warm compile cache (compiled; both); both adds "eager" and "cold
    cache" (compiled into an empty cache per repeat: what a first run costs). rate: the
    summary's number compared (e.g. steps/s). A compiled mode first fills the warm cache
    with a 3-step run (untimed)."""
    def side(compile_setting: str, cache: Callable[[int], Path | None], name: str) -> Run:
        def one(i: int) -> tuple[float, float, float]:
            wall, summary, peak = gan_train([*overrides, f"train.compile={compile_setting}"],
                                            root / f"run_{name}_{i}", threads, cache(i))
            return wall, rate(summary), peak
        return one

    eager = side("false", lambda i: None, "eager")
    if mode == "eager":
        return {"gan-train": eager}
    warm = root / "compile_cache"
    short = [o for o in overrides if not o.startswith("train.steps=")] + ["train.steps=3"]
    gan_train([*short, "train.compile=true"], root / "warm_up", threads, warm)
    runs = {"gan-train": side("true", lambda i: warm, "compiled")}
    if mode == "both":
        runs.update(eager=eager, **{"cold cache": side("true", lambda i: root / f"cold_{i}",
                                                        "cold")})
    return runs


def compare(title: str, unit: str, sides: dict[str, Run], repeats: int,
            target: float) -> None:
    """Run each side `repeats` times, interleaved (the machine's load hits all alike), and
    print each side's median rate and wall time and the first side's ratios to the second."""
    rows: dict[str, tuple[list[float], ...]] = {name: ([], [], []) for name in sides}
    for i in range(repeats):
        for name, run in sides.items():
            for column, value in zip(rows[name], run(i)):  # wall, rate, peak memory
                column.append(value)
        print(f"repeat {i + 1}/{repeats}: " + ", ".join(
            f"{name} {r[1][-1]:.0f} {unit}" for name, r in rows.items()), flush=True)
    med = statistics.median
    print(f"\n{title}, median of {repeats}:")
    for name, (walls, rates, peaks) in rows.items():
        print(f"  {name:10s} {med(rates):8.0f} {unit} in training   {med(walls):7.1f} s wall"
              f"   {med(peaks):6.0f} MB peak")
    (ours, theirs, *others) = list(sides)
    ratio = med(rows[ours][1]) / med(rows[theirs][1])
    print(f"  ratio ({ours} / {theirs}): {unit} {ratio:.2f}x (target >= {target:g}), "
          f"wall time {med(rows[theirs][0]) / med(rows[ours][0]):.2f}x")
    for other in others:  # e.g. the eager and the cold-cache runs beside the compiled one
        print(f"  ratio ({other} / {theirs}): {unit} "
              f"{med(rows[other][1]) / med(rows[theirs][1]):.2f}x, "
              f"wall time {med(rows[theirs][0]) / med(rows[other][0]):.2f}x")
