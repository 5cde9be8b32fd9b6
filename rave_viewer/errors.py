"""One exception type for user-facing problems, so the CLI can print one line instead of a traceback."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable


class RaveError(Exception):
    """A problem with user input (file, option, value), with a one-line message naming its source."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        msg = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {msg}" if self.path is not None else msg)


def guarded(fn: Callable[..., Any], *args: Any) -> int:
    """Run a command's body and return its exit code: a RaveError is one line on stderr (2), Ctrl-C is 130."""
    try:
        return int(fn(*args) or 0)
    except RaveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
