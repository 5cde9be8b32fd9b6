"""One exception type for user-facing problems, so the CLI can print one line instead of a traceback."""

from __future__ import annotations

import os


class RaveError(Exception):
    """A problem with user input (file, option, value), with a one-line message naming its source."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        msg = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {msg}" if self.path is not None else msg)
