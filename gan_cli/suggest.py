""""Did you mean ...?" for misspelt keys, group options and --flags, and no silent `+key=`.

Every key a user can set is in the composed config (its schemas are gan_cli/config.py's
dataclasses), so the closest valid spelling of a wrong one is looked up there with difflib.
Hydra itself answers a misspelt `train.step=100` with "To append to your config use
+train.step=100", and `+` then adds the key, which nothing reads: here `+key=` may only add
a key to a node whose schema is an open dictionary (a `dict` field); gan_cli declares none.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Iterable, Optional, Sequence

from gan_cli.errors import UserError, one_line, user_error_message

# how many spellings a hint offers at most (optim.lr -> the generator's and the discriminator's)
MAX_SUGGESTIONS = 3


def key_paths(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a composed config (nodes and leaves), Hydra's own node left out."""
    from omegaconf import DictConfig

    paths = []
    for key in cfg.keys():
        if not prefix and key == "hydra":
            continue
        path = f"{prefix}{key}"
        paths.append(path)
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            paths += key_paths(child, path + ".")
    return paths


def closest(key: str, candidates: Iterable[str]) -> list[str]:
    """The valid spellings nearest to key: keys ending in the same name (steps ->
    train.steps; optim.lr -> optim.generator.lr, optim.discriminator.lr), else difflib's
    closest match over the whole dotted path or over the last name."""
    # a node above key is no spelling of it (data.foo is not a misspelt data)
    candidates = sorted(c for c in set(candidates) if not key.startswith(c + "."))
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf and c != key]
    if same_leaf:
        head = key.rsplit(".", 1)[0] if "." in key else ""
        nearer = [c for c in same_leaf if head and c.startswith(head + ".")]
        return (nearer or same_leaf)[:MAX_SUGGESTIONS]
    found = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not found and "." in key:  # the same parent, a misspelt last name
        parent = key.rsplit(".", 1)[0] + "."
        siblings = {c[len(parent):]: c for c in candidates
                    if c.startswith(parent) and "." not in c[len(parent):]}
        found = [siblings[s] for s in difflib.get_close_matches(leaf, list(siblings), n=1)]
    return found


def did_you_mean(key: str, candidates: Iterable[str], value: Optional[str] = None) -> str:
    """'; did you mean a=1?' (or 'a=1 or b=1'), '' when nothing is close."""
    found = closest(key, candidates)
    if not found:
        return ""
    tail = "" if value is None else f"={value}"
    return "; did you mean " + " or ".join(f"{f}{tail}" for f in found) + "?"


def group_names() -> list[str]:
    """The config groups a command line may pick from (data, model, optim/schedule, ...)."""
    try:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.object_type import ObjectType

        repo = GlobalHydra.instance().config_loader().repository
    except Exception:  # Hydra not initialised (a config built by hand)
        return []

    def walk(parent: str) -> list[str]:
        found = []
        for child in repo.get_group_options(parent, ObjectType.GROUP):
            name = f"{parent}/{child}" if parent else child
            if not (name == "hydra" or name.startswith("hydra/")):
                found += [name, *walk(name)]
        return found

    return walk("")


# ---------------------------------------------------------------- +key= refused
def _open_dictionary(node: Any) -> bool:
    """A node declared as `dict[str, ...]` in its schema, whose keys are the user's to name."""
    import typing

    ref = node._metadata.ref_type
    return ref is dict or typing.get_origin(ref) is dict


def check_addition(cfg: Any, key: str, input_line: str) -> None:
    """Refuse `+key=value` / `++key=value` when key is not in gan_cli's config cfg (before
    the override is applied) and its parent node has a fixed schema."""
    from omegaconf import DictConfig, OmegaConf

    if OmegaConf.select(cfg, key, throw_on_missing=False, default=_ABSENT) is not _ABSENT:
        return  # an existing key: `++` overrides it, `+` gets Hydra's own error
    parts = key.split(".")
    node = cfg
    for part in parts[:-1]:  # the deepest node that exists on the way to key
        child = node._get_node(part) if isinstance(node, DictConfig) else None
        if not isinstance(child, DictConfig):
            break
        node = child
    if isinstance(node, DictConfig) and _open_dictionary(node):
        return
    value = input_line.partition("=")[2]
    hint = did_you_mean(key, key_paths(cfg), value)
    raise UserError(f"{input_line}: {key} is not a config key{hint} (`+` adds no "
                    "key that nothing would read; --help lists the keys)")


_ABSENT = object()


def refuse_undeclared_additions(schemas: tuple[type, ...]) -> None:
    """Wrap Hydra's override step so that `+key=` cannot add an unknown key to a config of
    one of these schemas (other apps' configs in the same process are left alone)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from omegaconf import OmegaConf

    original = ConfigLoaderImpl._apply_overrides_to_config
    if getattr(original, "gan_cli", False):
        return

    def apply(overrides: list, cfg: Any) -> None:
        if OmegaConf.get_type(cfg) in schemas:
            for o in overrides:
                if (o.is_add() or o.is_force_add()) and o.package is None \
                        and not o.key_or_group.startswith("hydra."):
                    check_addition(cfg, o.key_or_group, o.input_line)
        original(overrides, cfg)

    apply.gan_cli = True
    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply)


# ---------------------------------------------------------------- --flags
def flag_hint(program: str, config_name: str, args: Sequence[str]) -> Optional[str]:
    """The error line for an argparse-style `--steps 100` (which Hydra's parser would answer
    with its usage text), None when every --flag is one of Hydra's."""
    unknown = [(i, a) for i, a in enumerate(args) if a.startswith("--") and len(a) > 2]
    if not unknown:
        return None  # the common case, decided before importing anything
    from hydra._internal.utils import get_args_parser

    known = set(get_args_parser()._option_string_actions)
    unknown = [(i, a) for i, a in unknown if a.split("=", 1)[0] not in known]
    if not unknown:
        return None
    i, flag = unknown[0]
    name, has_value, value = flag[2:].partition("=")
    if not has_value and i + 1 < len(args) and not args[i + 1].startswith("-") \
            and "=" not in args[i + 1]:
        value, shown = args[i + 1], f"{flag} {args[i + 1]}"
    else:
        shown = flag
    key = name.replace("-", "_")
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    hint = did_you_mean(key, _keys_of(config_name, overrides), value or None)
    return (f"{shown}: {program} takes key=value overrides, not --flags"
            f"{hint or ' (--help lists the keys)'}")


def _keys_of(config_name: str, overrides: list[str]) -> list[str]:
    """The composed config's keys and groups (with the user's overrides when they compose)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        for attempt in (overrides, []):
            try:
                cfg = compose(config_name, overrides=list(attempt))
            except Exception:
                continue
            return key_paths(cfg) + group_names()
    return []


# ---------------------------------------------------------------- resume
def finished_run_hint(resume: str, steps: int) -> str:
    """The console line for `resume=` of a run that already reached its train.steps: the
    override that trains it further (it otherwise only reprints its results)."""
    return (f"this run already finished its train.steps={steps}; to train it further, "
            f"give more: gan-train resume={resume} train.steps={2 * steps}")


# ---------------------------------------------------------------- Hydra's refusals, with a hint
_COULD_NOT_OVERRIDE = re.compile(r"Could not override '([^']+)'\.\s+To append to your config "
                                 r"use \+(\S+)")
_MISSING_OPTION = re.compile(r"Could not find '([\w/]+)/([^']+)'")


def _unknown_key(e: BaseException) -> Optional[str]:
    """`train.stepz=1` (or `steps=100`): the key and its closest valid spelling, instead of
    Hydra's advice to add it with `+` (which would run with the key ignored)."""
    found = _COULD_NOT_OVERRIDE.search(str(e))
    node = getattr(e.__cause__, "parent_node", None)
    if found is None or node is None:
        return None
    key, line = found.group(1), found.group(2)
    candidates = key_paths(node._get_root()) + group_names()
    hint = did_you_mean(key, candidates, line.partition("=")[2])
    return f"{line}: {key} is not a config key{hint or ' (--help lists the keys)'}"


def _unknown_option(text: str) -> Optional[str]:
    """`data=ring9`: Hydra's list of the group's options, led by the closest one."""
    found = _MISSING_OPTION.search(text)
    if found is None or "Available options" not in text:
        return None
    group, option = found.groups()
    message = one_line(text)
    options = [o.strip(", ") for o in message.split("Available options in")[-1]
               .split(":", 1)[-1].split(",")]
    close = difflib.get_close_matches(option, [o for o in options if o], n=1, cutoff=0.5)
    return message + (f"; did you mean {group}={close[0]}?" if close else "")


def misspelt(e: BaseException) -> Optional[str]:
    """One line for a misspelt key or group option that Hydra refused, with the closest
    valid spelling; None for any other error (errors.user_error_message's hint)."""
    return _unknown_key(e) or _unknown_option(str(e))


def error_line(e: BaseException) -> Optional[str]:
    """What the entry points print for an error: the one-line user message, with the
    closest valid spelling for a misspelt key or option; None for a bug."""
    return user_error_message(e, hint=misspelt)
