"""Turn the exceptions a user can cause (config, data, checkpoint) into one readable line."""

from __future__ import annotations

import errno
import re
from typing import Callable, Optional

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException


class UserError(Exception):
    """A bad config value, data file or checkpoint: reported as one line, exit code 2."""


# lines of OmegaConf's error text that describe internals, not the user's mistake
_NOISE = ("full_key:", "object_type=", "reference_type=", "Set the environment variable",
          "base_")  # base_* are the schemas of config groups, not options to pick


# Hydra plugins that the sweeps extra installs: the configs they provide -> the package
PLUGINS = {"hydra/launcher/joblib": "hydra-joblib-launcher",
           "hydra/launcher/submitit_local": "hydra-submitit-launcher",
           "hydra/launcher/submitit_slurm": "hydra-submitit-launcher",
           "hydra/sweeper/optuna": "hydra-optuna-sweeper"}
_MISSING_CONFIG = re.compile(r"Could not (?:find|load) '(hydra/(?:launcher|sweeper)/\w+)'")


def _missing_plugin(text: str) -> Optional[str]:
    """Hydra's error for a plugin's config that is not there, as the install it needs."""
    found = _MISSING_CONFIG.search(text)
    if found is None or found.group(1) not in PLUGINS:
        return None
    group, _, option = found.group(1).rpartition("/")
    return (f"{group}={option} comes from the Hydra plugin {PLUGINS[found.group(1)]}, which is "
            "not installed: pip install \"gan-cli[sweeps]\"")


def _chain(e: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def first_line(e: BaseException) -> str:
    """An exception's first line (its type's name if it has none), at most 200 characters:
    for console lines that say why a cache or saved file was not used."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines()]
    if "Config search path:" in lines:  # where Hydra looked: not the user's concern
        lines = lines[:lines.index("Config search path:")]
    lines = [ln for ln in lines if ln and not ln.startswith(_NOISE)]
    for i, ln in enumerate(lines):
        if ln.startswith("Available options"):  # Hydra lists them one per line
            return " ".join(lines[:i]) + f". {ln} " + ", ".join(lines[i + 1:])
    return " ".join(lines)


def user_error_message(e: BaseException,
                       hint: Callable[[BaseException], Optional[str]] = lambda e: None
                       ) -> Optional[str]:
    """The one-line message for a user error, or None when e looks like a bug. hint(e):
    a message for a misspelt key or option (gan_cli.suggest.misspelt), None otherwise."""
    chain = _chain(e)
    for link in chain:
        if isinstance(link, UserError):
            return str(link)
        if isinstance(link, OSError) and link.filename is not None:
            # e.g. an output folder that cannot be created or written
            return f"{link.filename}: {link.strerror or link}"
        if isinstance(link, OSError) and link.errno == errno.ENOSPC:
            return f"no space left on the device ({link})"
    if isinstance(e, ValueError) and str(e).startswith("Config group override must be"):
        # Hydra's parser, for group=null on the command line (e.g. optim/schedule=null)
        return ("a config group cannot be set to null on the command line: pick one of its "
                "options (e.g. optim/schedule=constant) or remove it with ~group")
    if isinstance(e, (HydraException, OmegaConfBaseException)):
        plugin = _missing_plugin(str(e))
        if plugin is not None:
            return plugin
        misspelt = hint(e)
        if misspelt is not None:
            return misspelt
        parts = [one_line(str(e))]
        cause = e.__cause__
        if isinstance(cause, OmegaConfBaseException):
            key = getattr(cause, "full_key", None)
            parts.append(one_line(str(cause)) + (f" (key: {key})" if key else ""))
        return ": ".join(p.rstrip(".") for p in parts if p)
    return None
