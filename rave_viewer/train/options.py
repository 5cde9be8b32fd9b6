"""Documented, range-checked dataclass options read from YAML: one checker for every training config.

The 3DGS config (:mod:`rave_viewer.train.config`) and the Scaffold-GS config (:mod:`rave_viewer.scaffold.config`)
declare their fields with :func:`option` (doc, choices, bounds, list length in ``metadata``); :class:`Options`
turns a YAML mapping into the dataclass with one-line :class:`RaveError`\\ s naming the file and the key, and
prints every option as commented YAML. :func:`read_yaml` and :func:`config_mapping` read the file itself (size
cap, parse errors, a recipe's ``train:`` section).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import field
from pathlib import Path
from typing import Any

from ..errors import RaveError, shown
from ..yaml_checks import key_text, limit_text, yaml_value_error

MAX_CONFIG_BYTES = 1 << 20  # a training config or recipe is a few hundred bytes
#: Keys allowed beside ``train:`` in a recipe file (the demo scenes in ``assets/``).
RECIPE_KEYS = ("name", "description", "scene", "train")
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               list: "a list of numbers"}


def option(default, doc: str, *, choices: tuple | None = None, min: float | None = None, max: float | None = None,
           min_exclusive: bool = False, length: int | None = None):
    """A dataclass field carrying its documentation and value constraints in ``metadata``."""
    meta = {"doc": doc, "choices": choices, "min": min, "max": max, "min_exclusive": min_exclusive,
            "length": length}
    if isinstance(default, list):
        return field(default_factory=lambda d=tuple(default): list(d), metadata=meta)
    return field(default=default, metadata=meta)


def _plain(t):
    """The field type without ``| None``, lists as ``list``."""
    args = [a for a in typing.get_args(t) if a is not type(None)]
    t = args[0] if len(args) == 1 and type(None) in typing.get_args(t) else t
    return list if typing.get_origin(t) is list else t


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float))


def yaml_scalar(v) -> str:
    """One value as flow-style YAML (``[0.0, 0.0, 0.0]``, ``true``, ``null``)."""
    import yaml

    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...").strip()


class Options:
    """The checked reader of one config dataclass (fields made with :func:`option`).

    ``help_command``: what the unknown-key error tells the user to run (e.g. ``rave train --help-config``).
    """

    def __init__(self, cls: type, help_command: str):
        self.cls = cls
        self.help_command = help_command
        self.fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        self.types = {k: _plain(t) for k, t in hints.items()}
        #: Fields that may be empty (None: decided at run time, e.g. opacity_reset's auto).
        self.optional = {k for k, t in hints.items() if type(None) in typing.get_args(t)}

    def describe(self) -> str:
        """Every option with its default and documentation, as YAML comments (``--help-config``)."""
        defaults = dataclasses.asdict(self.cls())
        lines = []
        for f in dataclasses.fields(self.cls):
            lines.append(f"# {f.metadata['doc']}")
            lines.append(f"{f.name}: {yaml_scalar(defaults[f.name])}")
        return "\n".join(lines) + "\n"

    def check(self, name: str, value: Any, path) -> Any:
        """Convert/validate one value for field ``name``; RaveError naming ``path`` and the key otherwise."""
        typ, meta, where = self.types[name], self.fields[name].metadata, f"config key '{name}'"
        if value is None and name in self.optional:
            return None

        def wrong(expected: str):
            got = "null" if value is None else type(value).__name__
            raise RaveError(f"{where} must be {expected}, got {got} ({shown(value)})", path)

        if typ is bool:
            if not isinstance(value, bool):
                wrong(_TYPE_NAMES[bool])
        elif typ is int:
            if isinstance(value, bool) or not isinstance(value, int):
                wrong(_TYPE_NAMES[int])
        elif typ is float:
            if not _number(value):
                wrong(_TYPE_NAMES[float])
            if not abs(value) <= 1e300:  # NaN, inf, and ints a float cannot hold
                raise RaveError(f"{where} must be a finite number, got {shown(value)}", path)
            value = float(value)
        elif typ is str:
            if not isinstance(value, str):
                wrong(_TYPE_NAMES[str])
        elif typ is list:
            n = meta["length"]
            expected = f"a list of {n} numbers" if n else _TYPE_NAMES[list]
            if not isinstance(value, (list, tuple)) or not all(_number(v) for v in value):
                wrong(expected)
            if n is not None and len(value) != n:
                raise RaveError(f"{where} must be {expected}, got {len(value)} value(s)", path)
            if not all(abs(v) <= 1e300 for v in value):
                raise RaveError(f"{where} must be finite numbers, got {shown(value)}", path)
            value = [float(v) for v in value]
        else:  # pragma: no cover - a field type this checker does not know
            raise TypeError(f"unsupported config field type {typ!r} for {name}")

        if meta["choices"] is not None and value not in meta["choices"]:
            raise RaveError(f"{where} must be one of {', '.join(meta['choices'])}, got {shown(value)}", path)
        lo, hi = meta["min"], meta["max"]
        for v in value if isinstance(value, list) else [value]:
            if not _number(v):
                continue
            if lo is not None and (v < lo or (meta["min_exclusive"] and v == lo)):
                raise RaveError(f"{where} must be {'>' if meta['min_exclusive'] else '>='} {lo}, got {shown(v)}",
                                path)
            if hi is not None and v > hi:
                raise RaveError(f"{where} must be <= {limit_text(hi)}, got {shown(v)}", path)
        return value

    def from_dict(self, d: Any, path: str | os.PathLike | None = None):
        """The dataclass from a mapping; unknown keys and bad values raise RaveError naming ``path``."""
        if not isinstance(d, dict):
            raise RaveError(f"the training config must be a mapping of option: value, got {type(d).__name__}",
                            path)
        values = {}
        for key, value in d.items():
            if not isinstance(key, str) or key not in self.fields:
                raise RaveError(f"unknown config key '{key_text(key)}' (see `{self.help_command}` for the "
                                "options)", path)
            values[key] = self.check(key, value, path)
        return self.cls(**values)

    def load(self, path: str | os.PathLike | None):
        """The config in the YAML file ``path``: defaults for None or an empty file; the fields at the top level
        or a recipe's ``train:`` section (see :func:`config_mapping`)."""
        data = None if path is None else config_mapping(path)
        return self.cls() if data is None else self.from_dict(data, path)


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file with one-line RaveErrors for missing, unreadable or malformed files."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise RaveError("config file not found", path)
    if path.is_dir():
        raise RaveError("is a folder, expected a YAML file", path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise RaveError(f"is too large for a config file ({size:,} bytes; at most {MAX_CONFIG_BYTES:,})", path)
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RaveError(f"cannot read config file: {e.strerror or e}", path) from None
    except UnicodeDecodeError:
        raise RaveError("cannot read config file: not UTF-8 text", path) from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise RaveError("invalid YAML: nested too deeply", path) from None
    except (ValueError, OverflowError) as e:  # a constructor's int()/date(): 5000 digits, a 13th month
        raise RaveError(f"invalid YAML: {yaml_value_error(e)}", path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "malformed YAML"
        raise RaveError(f"invalid YAML{where}: {problem}", path) from None


def config_mapping(path: str | os.PathLike) -> Any:
    """What a config file holds for the trainer: None (empty file), the top-level value, or the ``train:``
    section of a recipe (whose other keys must be :data:`RECIPE_KEYS`)."""
    data = read_yaml(path)
    if isinstance(data, dict) and "train" in data:
        for key in data:
            if key not in RECIPE_KEYS:
                raise RaveError(f"unknown recipe key '{key_text(key)}' (expected {', '.join(RECIPE_KEYS)})", path)
        data = data["train"] if data["train"] is not None else {}
        if not isinstance(data, dict):
            raise RaveError("recipe key 'train' must be a mapping of option: value", path)
    return data
