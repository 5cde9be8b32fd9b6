"""Small message helpers shared by the YAML config validators of `rave train` and `rave build`."""

from __future__ import annotations

from .errors import shown


def yaml_value_error(e: Exception) -> str:
    """What a YAML value that Python cannot read is, in one phrase (e.g. a 5,000-digit integer)."""
    msg = " ".join(str(e).split())
    if "integer string conversion" in msg:
        return "a number has too many digits (Python reads at most 4300)"
    return f"unreadable value ({msg[:80]})"


def limit_text(x: float) -> str:
    """A bound as the docs write it: 10_000_000, 64, 1.0."""
    return f"{x:_}" if isinstance(x, int) and x >= 10_000 else str(x)


def key_text(k: object) -> str:
    """A config key for a message: a string (cut at 60 characters) or the repr of anything else."""
    return k[:60] if isinstance(k, str) else shown(k)
