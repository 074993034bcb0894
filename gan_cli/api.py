"""The runner from Python (a notebook, a script): compose the config gan-train would run,
edit it if you like, run it, get the summary back.

    from gan_cli import compose, run
    cfg = compose(["data=bimodal", "loss=minimax"])
    summary = run(cfg)

`run` is not named `train` because gan_cli.train is the module that holds the loop.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Optional, Sequence, Union

from omegaconf import DictConfig, OmegaConf


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `gan-train <overrides>` runs: conf/train.yaml, its groups and the
    typed schemas, with the same errors for a bad key or value (hydra.* overrides are
    accepted and have no effect here; pass run(..., run_dir=) instead)."""
    import gan_cli.cli  # noqa: F401  (registers the schemas and the resolvers the CLI uses)
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    theirs = get_gh_backup()  # a notebook's own hydra.initialize(...) is left as it was
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("gan_cli.conf", version_base="1.3"):
            return hydra_compose("train", overrides=list(overrides))
    finally:
        restore_gh_from_backup(theirs)


def default_run_dir(resume: Optional[str] = None) -> Path:
    """Where gan-train puts a run: conf/train.yaml's hydra.run.dir, resolved now
    (outputs/<date>/<time>/ under the working directory; a resumed run's own folder)."""
    import gan_cli.cli  # noqa: F401  (the gan_run_dir resolver)
    from hydra.core.utils import setup_globals  # Hydra's `now` resolver

    setup_globals()
    template = OmegaConf.load(files("gan_cli.conf") / "train.yaml").hydra.run.dir
    return Path(OmegaConf.create({"resume": resume, "dir": template}).dir)


def run(config: Union[DictConfig, Sequence[str]] = (),
        run_dir: Optional[Union[str, Path]] = None) -> dict:
    """Train a GAN; returns the summary (also in <run_dir>/summary.json).

    config: a composed (and maybe edited) config, or the overrides to compose one; only
    overrides can extend a resumed run (["resume=<folder>", "train.steps=4000"]), as on
    the command line. run_dir: None = where gan-train would put it.
    Raises gan_cli.config.UserError for a bad config, data or checkpoint.
    """
    from gan_cli.train import train

    overrides: Sequence[str] = ()
    if not isinstance(config, DictConfig):
        overrides, config = list(config), compose(config)
    return train(config, run_dir if run_dir is not None else default_run_dir(config.resume),
                 overrides=overrides)
