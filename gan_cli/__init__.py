"""gan_cli: a command-line GAN experiment runner driven by Hydra configs."""

__version__ = "0.1.0"
