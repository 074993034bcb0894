"""What the user sees while a run trains, mirrored as plain text into train.log.

On a terminal: a rich progress bar (step, losses, steps/s, ETA) with event
lines above it. Elsewhere (CI logs, files): one plain line per log interval.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
    TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from rich.tree import Tree


class RunConsole:
    def __init__(self, log_path: Path, total_steps: int, start_step: int = 0):
        # soft_wrap: long lines stay whole for logs and for tools that read them
        self.screen = Console(file=sys.stdout, soft_wrap=True)
        self._log_file = open(log_path, "a", encoding="utf-8")
        self.log = Console(file=self._log_file, color_system=None, width=100, soft_wrap=True)
        self.interactive = self.screen.is_terminal
        self._progress: Optional[Progress] = None
        if self.interactive:
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=self.screen)
            self._task = self._progress.add_task("train", total=total_steps, completed=start_step,
                                                 losses="", speed="")
            self._progress.start()

    def line(self, text: str) -> None:
        """An event worth keeping: shown on screen and written to train.log."""
        self.screen.print(text, highlight=False, markup=False)
        self.log.print(text, highlight=False, markup=False)

    def record(self, text: str) -> None:
        """A line already shown on screen (before the console existed): train.log only."""
        self.log.print(text, highlight=False, markup=False)

    def step(self, step: int) -> None:
        """Move the bar (cheap: no text formatting, no host-device sync)."""
        if self._progress is not None:
            self._progress.update(self._task, completed=step)

    def interval(self, step: int, total: int, row: dict, steps_per_sec: float) -> None:
        """Once per log interval: the losses, on the bar or as a plain line."""
        losses = (f"D {row['d_loss']:.4f}  G {row['g_loss']:.4f}  "
                  f"D(x) {row['d_real']:.3f}  D(G(z)) {row['d_fake']:.3f}  "
                  f"D acc real {row['d_acc_real']:.2f} fake {row['d_acc_fake']:.2f}")
        speed = f"{steps_per_sec:,.0f} steps/s"
        text = f"step {step}/{total}  {losses}  {speed}"
        self.log.print(text, highlight=False, markup=False)
        if self._progress is not None:
            self._progress.update(self._task, completed=step, losses=losses, speed=speed)
        else:
            self.screen.print(text, highlight=False, markup=False)

    def config_tree(self, config: dict) -> None:
        """The composed config as a compact tree: a node's plain values on its own line."""

        def label(key: str, node: dict) -> Text:
            text = Text(key, style="bold")
            target = node.get("_target_")
            if target:  # the class, by its short name
                text.append(f"  {target.rsplit('.', 1)[-1]}", style="cyan")
            for k, v in node.items():
                if not isinstance(v, dict) and not k.startswith("_"):
                    text.append(f"  {k}={v}")
            return text

        def add(branch: Tree, node: dict) -> None:
            for key, value in node.items():
                if isinstance(value, dict):
                    add(branch.add(label(key, value)), value)

        tree = Tree(label("config", config), guide_style="dim")
        add(tree, config)
        self.screen.print(tree, soft_wrap=False)  # long lines wrap inside the tree
        self.log.print(tree, soft_wrap=False)

    def table(self, title: str, rows: dict) -> None:
        table = Table(title=title, show_header=True, header_style="bold")
        table.add_column("metric")
        table.add_column("value", justify="right")
        def shown(value) -> str:  # 4 significant digits, in lists too (per-class metrics)
            if isinstance(value, float):
                return f"{value:.4g}"
            if isinstance(value, list):
                return " ".join(shown(v) for v in value)
            return str(value)

        for key, value in rows.items():
            table.add_row(key, shown(value))
        self.screen.print(table)
        self.log.print(table)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._log_file.close()
