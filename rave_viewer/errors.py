"""One exception type for user-facing problems, so the CLI can print one line instead of a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterator


class RaveError(Exception):
    """A problem with user input (file, option, value), with a one-line message naming its source."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        msg = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {msg}" if self.path is not None else msg)


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that ``except``/``finally`` clean-ups (temp files) run.

    A BaseException like KeyboardInterrupt, but not one: code that treats Ctrl-C as "stop and save" (the
    training loop) does not take it for that.
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = f"signal {self.signum}"
        super().__init__(f"terminated by {name}")


#: Signals turned into :class:`Terminated` by :func:`terminate_as_exception` (those that exist here).
TERMINATING_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def _raise_terminated(signum: int, frame: Any) -> None:
    # One shot: a second signal of the same kind during the clean-up ends the process the default way.
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signum, signal.SIG_DFL)
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While the block runs, SIGTERM/SIGHUP raise :class:`Terminated` in the main thread (previous handlers restored).

    Only signals still at their default action are taken over (an ignored SIGHUP under ``nohup``, or a
    handler the embedding program installed, are left alone); outside the main thread this does nothing.
    SIGKILL cannot be caught: a ``.rave-*.tmp`` file of an interrupted atomic write may then remain.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in TERMINATING_SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is signal.SIG_DFL:
                previous[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, old)


def guarded(fn: Callable[..., Any], *args: Any) -> int:
    """Run a command's body and return its exit code: a RaveError is one line on stderr (2), Ctrl-C is 130.

    SIGTERM/SIGHUP become :class:`Terminated` while ``fn`` runs (so atomic writes remove their temp files)
    and exit with 128 + the signal number, as the default action would.
    """
    try:
        with terminate_as_exception():
            return int(fn(*args) or 0)
    except RaveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated as e:
        print(str(e), file=sys.stderr)
        return 128 + e.signum
