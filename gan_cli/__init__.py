"""gan_cli: a command-line GAN experiment runner driven by Hydra configs.

From Python: `from gan_cli import compose, run` (gan_cli/api.py), imported on first use
so that `import gan_cli` (and `gan-train --help`) stays light.
"""

__version__ = "0.1.0"
__all__ = ["compose", "run"]


def __getattr__(name: str):
    if name in __all__:
        from gan_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'gan_cli' has no attribute {name!r}")
