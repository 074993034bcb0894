"""Live views of a run beside the always-on metrics.csv / summary.json / plots.

A logger is picked with `logger=<name>` (conf/logger/); each is a small class
with the four calls the loop makes. Adding MLflow or W&B is one class and one
YAML file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_cli.errors import UserError


class TensorBoardLogger:
    """Event files in <run>/<subdir>: scalars, evaluation pictures, histograms, hparams."""

    def __init__(self, run_dir: str | Path, subdir: str = "tb", start_step: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("logger=tensorboard: the tensorboard package is not installed; "
                            "pip install 'gan-cli[tensorboard]', or use logger=none") from None
        # purge_step: a resumed run hides the events a killed run wrote after its checkpoint
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / subdir),
                                    purge_step=start_step or None)

    def scalars(self, row: dict[str, Any]) -> None:
        """One metrics.csv row: every number in it, at its step."""
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, row["step"])
            elif isinstance(value, list):  # e.g. mode_mass: one curve per mode
                for i, v in enumerate(value):
                    self.writer.add_scalar(f"{key}/{i}", v, row["step"])

    def picture(self, tag: str, png: Path, samples: torch.Tensor, step: int) -> None:
        """An evaluation picture, and for 1-D data a histogram of G's samples (N, 1)."""
        from PIL import Image

        with Image.open(png) as image:
            self.writer.add_image(tag, np.asarray(image.convert("RGB")), step,
                                  dataformats="HWC")
        if samples.shape[1] == 1:
            self.writer.add_histogram("generated", samples[:, 0].cpu(), step)

    def finish(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run's settings and final metrics (TensorBoard's HParams view), then close."""
        if metrics:
            self.writer.add_hparams(hparams, {f"final/{k}": v for k, v in metrics.items()},
                                    run_name=".")
        self.writer.close()


def flat_hparams(config: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted keys with values TensorBoard's HParams accepts (numbers, strings, booleans)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_hparams(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is not None:
            flat[name] = str(value)  # lists: compared as text
    return flat

