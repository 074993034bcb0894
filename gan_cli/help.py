"""`gan-train --help` (and gan-sample's) in a third of the time Hydra's own takes.

Hydra's help lists each config group's options by asking its config loader, which
deep-copies the whole config repository (every structured config, the launcher
plugins' included) for each of its ~100 questions: about a second. The same
listing read from one repository takes milliseconds. The text is Hydra's: its
help template, filled in the same way (tests/test_cli.py compares the two).
"""

from __future__ import annotations

import contextlib
import io
import string
from typing import Optional, Sequence

HELP_FLAGS = ("--help", "-h")  # Hydra's


def version_text(program: str) -> str:
    """`--version`: gan_cli's version (Hydra's flag would print Hydra's), and its stack's."""
    from importlib import metadata

    import gan_cli

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (f"{program} (gan_cli) {gan_cli.__version__}; hydra-core {version('hydra-core')}, "
            f"torch {version('torch')}")


def quick_help(config_name: str, args: Sequence[str]) -> Optional[str]:
    """The help text for `--help` followed or preceded only by overrides; None for any
    other command line (other Hydra flags such as --config-dir go to Hydra itself) and
    for overrides that do not compose (Hydra reports those, as without --help)."""
    if not any(a in HELP_FLAGS for a in args):
        return None  # the common case, decided before importing anything
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # Hydra's parser will say it
            parsed = vars(parser.parse_args(args))
    except SystemExit:  # a command line Hydra refuses: Hydra says why
        return None
    defaults = vars(parser.parse_args([]))
    other_flags = [k for k, v in parsed.items() if k not in ("help", "overrides")
                   and v != defaults[k]]
    if other_flags:
        return None
    overrides = parsed["overrides"]
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType
    from omegaconf import OmegaConf, open_dict

    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        try:
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        except Exception:  # e.g. data=no_such_preset
            return None
        repo = GlobalHydra.instance().config_loader().repository

        def options(group: str, kind: ObjectType) -> list[str]:
            return repo.get_group_options(group, kind)

        def groups(parent: str = "") -> list[str]:  # as Hydra's list_all_config_groups
            found = []
            for child in options(parent, ObjectType.GROUP):
                name = f"{parent}/{child}" if parent else child
                if options(name, ObjectType.CONFIG):
                    found.append(name)
                found += groups(name)
            return found

        listing = "".join(f"{g}: {', '.join(sorted(options(g, ObjectType.CONFIG)))}\n"
                          for g in sorted(groups()) if not (g == "hydra" or
                                                            g.startswith("hydra/")))
    template = string.Template(cfg.hydra.help.template)
    if not set(template.get_identifiers()) <= {"APP_CONFIG_GROUPS", "CONFIG"}:
        return None  # a template asking for Hydra's flags or its own groups: Hydra fills it
    with open_dict(cfg):
        del cfg["hydra"]
    return template.substitute(
        APP_CONFIG_GROUPS=listing, CONFIG=OmegaConf.to_yaml(cfg))
