"""`gan-train --help` (and gan-sample's): every key with its meaning, read from the schemas.

The meaning and unit of each key is the comment beside its field in gan_cli/config.py
(the one place a knob is declared), read with `ast` from that file's source, so that the
help cannot drift from the schema. The keys are those of the config composed from the
command line's overrides: `gan-train --help data=ring8` lists ring8's values and only the
keys of the groups the command line picks. Hydra's internals (`_target_`, `_partial_`)
stay out. `--hydra-help` still gives Hydra's own flags.

Quick: nothing heavy is imported (no torch); the group listing is read from one config
repository instead of Hydra's deep copy per question.
"""

from __future__ import annotations

import ast
import contextlib
import io
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

HELP_FLAGS = ("--help", "-h")  # Hydra's
HIDDEN_KEYS = ("_target_", "_partial_")  # how a node is built, not something to set
KEY_COLUMN = 36  # width of the key=value column


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


@lru_cache(maxsize=1)
def schema_comments() -> dict[str, dict[str, str]]:
    """{dataclass name: {field: its comment}} from gan_cli/config.py's source: the comment
    on the field's line, else the comment lines right above it."""
    from gan_cli import config

    source = Path(config.__file__).read_text()
    lines = source.splitlines()
    found: dict[str, dict[str, str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = found.setdefault(node.name, {})
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            line = lines[item.lineno - 1]
            inline = line.partition("  # ")[2].strip()
            above, i = [], item.lineno - 2  # a comment block right above the field
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            block = " ".join(above)
            fields[item.target.id] = f"{inline} ({block})" if inline and block else \
                inline or block
    return found


def _comment(schema: Optional[type], key: str) -> str:
    """The comment of field key in schema or the schemas it extends ('' when none)."""
    comments = schema_comments()
    for cls in getattr(schema, "__mro__", ()):
        text = comments.get(cls.__name__, {}).get(key)
        if text:
            return text
    return ""


def _value(node: Any) -> str:
    """A leaf as it is written on a command line (null, true, [64, 64], ${train.steps})."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(node) and node._is_none():
        return "null"
    if OmegaConf.is_config(node):
        return str(OmegaConf.to_container(node, resolve=False)).replace("'", "")
    value = node._value() if hasattr(node, "_value") else node
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def key_lines(cfg: Any, prefixes: Sequence[str] = ()) -> list[str]:
    """`  key=value    meaning` for every settable key of cfg (under prefixes, if given)."""
    from omegaconf import DictConfig, OmegaConf

    out = []

    def walk(node: DictConfig, path: str) -> None:
        schema = OmegaConf.get_type(node)
        for key in node.keys():
            if key in HIDDEN_KEYS or (not path and key in ("hydra", "experiment")):
                continue  # experiment=<name> is a group (listed above), not a value
            child, dotted = node._get_node(key), f"{path}{key}"
            if isinstance(child, DictConfig) and not child._is_none() and len(child):
                walk(child, dotted + ".")
                continue
            if prefixes and not any(dotted.startswith(p + ".") for p in prefixes):
                continue
            setting = f"{dotted}={_value(child)}"
            meaning = _comment(schema, key)
            pad = " " * max(2, KEY_COLUMN - len(setting))
            out.append(f"  {setting}{pad}{meaning}".rstrip())

    walk(cfg, "")
    return out


def _group_listing(repo: Any, chosen: Sequence[str]) -> list[str]:
    """`  group: option, ...` for the groups this config picks from (base_* schemas and
    Hydra's own groups left out)."""
    from hydra.core.object_type import ObjectType

    lines = []
    for group in chosen:
        options = [o for o in repo.get_group_options(group, ObjectType.CONFIG)
                   if not o.startswith("base_")]
        if options:
            lines.append(f"  {group}: {', '.join(sorted(options))}")
    return lines


def _preset_description(group: str, option: str) -> str:
    """The leading comment of a shipped preset's YAML (what ring8 is), '' when none."""
    from gan_cli import conf

    path = Path(conf.__file__).parent / group / f"{option}.yaml"
    if not path.is_file():
        return ""
    words = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            words.append(line.lstrip("#").strip())
    return " ".join(words)


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
    overrides = parsed["overrides"]
    if other_flags or any(o.startswith("hydra.help") for o in overrides):
        return None  # Hydra's own help (its template, its flags)
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    with initialize_config_module("gan_cli.conf", version_base="1.3"):
        try:
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        except Exception:  # e.g. data=no_such_preset
            return None
        repo = GlobalHydra.instance().config_loader().repository
        choices = dict(cfg.hydra.runtime.choices)
        groups = sorted({g.split("@")[0] for g in choices if not g.startswith("hydra/")})
        listing = _group_listing(repo, groups)
        picked = [o.split("=", 1) for o in overrides if "=" in o and "." not in
                  o.split("=", 1)[0] and o.split("=", 1)[0].lstrip("+~") in groups]
    header, footer = cfg.hydra.help.header.rstrip(), cfg.hydra.help.footer.rstrip()
    with open_dict(cfg):
        del cfg["hydra"]
    picked = [(g.lstrip("+~"), option) for g, option in picked if g.lstrip("+~") != "experiment"]
    prefixes = [g.replace("/", ".") for g, _ in picked]
    parts = [header]
    if listing:
        parts.append("Groups (group=option picks a preset; `--help group=option` lists its "
                     "keys):\n" + "\n".join(listing))
    if picked:
        about = [f"{g}={o}: {d}" for g, o in picked if (d := _preset_description(g, o))]
        title = "Keys of " + ", ".join(f"{g}={o}" for g, o in picked) + " (key=value):"
        parts.append("\n".join([*about, title, *key_lines(cfg, prefixes)]))
    else:
        parts.append("Keys (key=value; the values this command line composes):\n"
                     + "\n".join(key_lines(cfg)))
    parts.append(footer)
    return "\n\n".join(parts)
