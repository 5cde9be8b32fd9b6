"""Strict JSON reading for files users hand us: NaN/Infinity, giant integers, deep nesting and lone surrogates are
one RaveError line, never a hang, a MemoryError or an unprintable message."""

from __future__ import annotations

import json
import math
import os

from .errors import RaveError

MAX_JSON_DEPTH = 64  # nesting (our writers use at most 4)
MAX_INT_DIGITS = 40  # digits of an integer literal (int64 needs 19)


class _Refused(Exception):
    """A JSON value the strict reader refuses (raised from the json module's parse hooks)."""


def _refuse_constant(name: str):
    raise _Refused(f"{name} is not a finite number")


def _parse_int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(s.lstrip('-'))} digits")
    return int(s)


def _parse_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise _Refused(f"the number {s[:24]}{'...' if len(s) > 24 else ''} does not fit a float")
    return v


def strict_loads(text: str, what: str, path) -> object:
    """``json.loads`` refusing NaN/Infinity, integers over MAX_INT_DIGITS digits, nesting deeper than
    MAX_JSON_DEPTH and lone surrogates (which cannot be printed): RaveError ``what (reason)`` otherwise."""
    try:
        obj = json.loads(text, parse_constant=_refuse_constant, parse_int=_parse_int, parse_float=_parse_float)
    except _Refused as e:
        raise RaveError(f"{what} ({e})", path) from None
    except RecursionError:
        raise RaveError(f"{what} (nested too deeply)", path) from None
    except ValueError as e:  # json.JSONDecodeError
        raise RaveError(f"{what} (not JSON: {' '.join(str(e).split())[:80]})", path) from None
    stack = [(obj, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise RaveError(f"{what} (a string holds a lone surrogate)", path) from None
        elif isinstance(v, (list, dict)):
            if depth >= MAX_JSON_DEPTH:
                raise RaveError(f"{what} (nested deeper than {MAX_JSON_DEPTH} levels)", path)
            stack.extend((x, depth + 1) for x in (v if isinstance(v, list) else [*v, *v.values()]))
    return obj


def read_json(path: str | os.PathLike, what: str = "is not valid JSON", *, max_bytes: int = 256 << 20) -> object:
    """The strict JSON document in the file ``path`` (at most ``max_bytes``); RaveError naming the file otherwise."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise RaveError(f"{what} (a {size:,}-byte file; at most {max_bytes:,} bytes are read)", path)
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except UnicodeDecodeError:
        raise RaveError(f"{what} (not UTF-8 text)", path) from None
    except OSError as e:
        raise RaveError(f"cannot read file: {e.strerror or e}", path) from None
    return strict_loads(text, what, path)
