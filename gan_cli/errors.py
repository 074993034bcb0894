"""Turn the exceptions a user can cause (config, data, checkpoint) into one readable line."""

from __future__ import annotations

from typing import Optional

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from gan_cli.config import UserError

# lines of OmegaConf's error text that describe internals, not the user's mistake
_NOISE = ("full_key:", "object_type=", "reference_type=", "Set the environment variable")


def _chain(e: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(_NOISE)]
    if any(ln.startswith("Available options") for ln in lines):
        # Hydra lists the options of a group one per line: join them into one
        head = [ln for ln in lines if not ln.startswith("Available options")]
        k = next(i for i, ln in enumerate(lines) if ln.startswith("Available options"))
        return " ".join(lines[:k]) + f". {lines[k]} " + ", ".join(lines[k + 1:]) \
            if len(head) > k else " ".join(lines)
    return " ".join(lines)


def user_error_message(e: BaseException) -> Optional[str]:
    """The one-line message for a user error, or None when e looks like a bug."""
    chain = _chain(e)
    for link in chain:
        if isinstance(link, UserError):
            return str(link)
    if isinstance(e, (HydraException, OmegaConfBaseException)):
        parts = [_one_line(str(e))]
        cause = e.__cause__
        if isinstance(cause, OmegaConfBaseException):
            key = getattr(cause, "full_key", None)
            parts.append(_one_line(str(cause)) + (f" (key: {key})" if key else ""))
        return ": ".join(p.rstrip(".") for p in parts if p)
    return None
