"""Recipe files (configs/*.yaml): the values of a training recipe, read, checked and written.

A recipe is a YAML mapping of option names to values, as on the command line (``lr: 2.0e-4``,
``repeat: [derain=120]``). ``base: NAME`` extends a built-in recipe (configs/NAME.yaml), ``base:
FILE.yaml`` a file beside it; its own values win. Values under ``train:`` or ``test:`` apply to that
script only. configs/paper.yaml holds every recipe value: its keys are the recipe keys.
"""
from __future__ import annotations

import argparse
import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import yaml

from utils.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAPER = "paper"  # the recipe that holds every value: the defaults
SCRIPTS = ("train", "test")  # the sections of a recipe whose values only that script takes
SUFFIXES = (".yaml", ".yml")


def recipe_names() -> list[str]:
    """The built-in recipes (``--preset`` names): the files directly in configs/."""
    return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """configs/<name>.yaml."""
    return CONFIGS / f"{name}.yaml"


def _load_yaml(path: Path) -> dict[str, Any]:
    """The mapping a YAML file holds, or one UserError line saying what is wrong with the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such recipe file; pass a YAML file such as configs/demo.yaml") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UserError(f"{path}: cannot read this recipe file ({reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise UserError(f"{path}: not valid YAML ({where}{getattr(e, 'problem', None) or 'unreadable'}); "
                        "fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise UserError(f"{path}: a recipe is a mapping of option names to values, e.g. 'lr: 2.0e-4'")
    return data


def _base_path(base: Any, path: Path) -> Path:
    """The file ``base:`` names: a built-in recipe's name, or a YAML file relative to ``path``'s folder."""
    if not isinstance(base, str) or not base.strip():
        raise UserError(f"{path}: base must name a recipe, e.g. 'base: demo'")
    if base.endswith(SUFFIXES):
        return path.parent / base
    if base not in recipe_names():
        raise UserError(f"{path}: base {base!r} is not a recipe; use one of {', '.join(recipe_names())}")
    return recipe_path(base)


def read_recipe(path: Path, script: str, keys: Sequence[str], seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The values the recipe file at ``path`` (with its bases) gives ``script``: its base's values,
    then its own, then its ``script:`` section's. Every key must be one of ``keys``."""
    path = Path(path)
    if path.resolve() in seen:
        raise UserError(f"{path}: its base leads back to itself; remove the loop of base: lines")
    data = _load_yaml(path)
    values = read_recipe(_base_path(data["base"], path), script, keys, (*seen, path.resolve())) \
        if "base" in data else {}
    sections = {name: data.get(name) or {} for name in SCRIPTS}
    for name, section in sections.items():
        if not isinstance(section, dict):
            raise UserError(f"{path}: {name}: holds the values only {name}.py takes, as a mapping")
    own = {k: v for k, v in data.items() if k not in ("base", *SCRIPTS)}
    for mapping in (own, *sections.values()):
        for key in mapping:
            check_key(key, keys, path)
    return {**values, **own, **sections[script]}


def preset_value(name: str, key: str, script: str) -> Any:
    """What the built-in recipe ``name`` (with its bases) gives ``script`` for ``key``, as written
    in the file; None when it sets no such value or there is no such recipe."""
    if name not in recipe_names():
        return None
    return read_recipe(recipe_path(name), script, recipe_keys()).get(key)


def check_key(key: str, keys: Sequence[str], path: Path) -> None:
    """UserError naming ``key`` and the closest recipe key, when ``key`` is none."""
    if key in keys:
        return
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"the keys are those of {recipe_path(PAPER)}"
    raise UserError(f"{path}: unknown key {key!r}; {hint}")


@lru_cache(maxsize=None)
def recipe_keys() -> tuple[str, ...]:
    """Every recipe key: those of configs/paper.yaml, its sections' included."""
    data = _load_yaml(recipe_path(PAPER))
    sections = [data.get(name) or {} for name in SCRIPTS]
    keys = [k for k in data if k not in SCRIPTS] + [k for s in sections for k in s]
    return tuple(dict.fromkeys(keys))


def paper_values(script: str) -> dict[str, Any]:
    """configs/paper.yaml's values for ``script``: the defaults of the recipe keys."""
    return read_recipe(recipe_path(PAPER), script, recipe_keys())


def _item(action: argparse.Action, key: str, item: Any, path: Path) -> Any:
    """One YAML value through the option's own type and choices, as the command line's would go."""
    if isinstance(item, (bool, list, dict)) or item is None:
        raise UserError(f"{path}: {key}: {item!r} is not a value of --{key}; see `--help`")
    text = str(item)
    try:
        value = action.type(text) if action.type is not None else text
    except argparse.ArgumentTypeError as e:
        raise UserError(f"{path}: {key}: {e}") from None
    if action.choices is not None and value not in action.choices:
        raise UserError(f"{path}: {key}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def option_value(action: argparse.Action, key: str, value: Any, path: Path, may_be_null: bool) -> Any:
    """A recipe's ``value`` for the option of ``action``, checked as the command line checks it:
    true/false for a switch, a list for an option of several values, null where ``may_be_null``."""
    if value is None and may_be_null:
        return None
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise UserError(f"{path}: {key}: {value!r} is not true or false")
        return value
    if action.nargs is None or action.nargs == "?":
        return _item(action, key, value, path)
    if not isinstance(value, list):
        raise UserError(f"{path}: {key}: takes a list, e.g. {key}: [a, b]")
    count = action.nargs if isinstance(action.nargs, int) else None
    if (count is not None and len(value) != count) or (action.nargs == "+" and not value):
        raise UserError(f"{path}: {key}: takes {count or 'at least one'} value{'s' if count != 1 else ''}")
    return [_item(action, key, item, path) for item in value]


def parser_values(parser: argparse.ArgumentParser, values: dict[str, Any], path: Path,
                  nullable: Sequence[str]) -> dict[str, Any]:
    """``values`` checked against ``parser``'s options (those it does not take are left out):
    the defaults a recipe gives that parser. ``nullable``: the keys that may be null."""
    actions = {a.dest: a for a in parser._actions}
    return {key: option_value(actions[key], key, value, path, key in nullable or _free_text(actions[key]))
            for key, value in values.items() if key in actions}


def _free_text(action: argparse.Action) -> bool:
    """An option that takes any one text (a path, a name): null is its 'none given'."""
    return action.type is None and action.choices is None and action.nargs is None


def recipe_record(args: argparse.Namespace, script: str = "train") -> dict[str, Any]:
    """The recipe values of a run of ``script``, as a recipe file holds them: the options file
    saved beside a run, which ``--config`` reads back. The values paper.yaml gives each script
    its own of (precision, loader workers) go in the ``script:`` section, so that the other
    script keeps its own."""
    values = {key: record_value(getattr(args, key)) for key in recipe_keys() if hasattr(args, key)}
    paper = _load_yaml(recipe_path(PAPER))
    apart = {key for name in SCRIPTS for key in (paper.get(name) or {})}
    own = {key: values.pop(key) for key in list(values) if key in apart}
    return {**values, script: own} if own else values


def record_value(value: Any) -> Any:
    """An option's parsed value as a recipe file writes it (``("derain", 120)`` -> ``"derain=120"``)."""
    if isinstance(value, (list, tuple)):
        return [f"{v[0]}={v[1]}" if isinstance(v, tuple) else v for v in value]
    return value
