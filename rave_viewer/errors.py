"""One exception type for user-facing problems, so the CLI can print one line instead of a traceback."""

from __future__ import annotations

import contextlib
import math
import os
import reprlib
import signal
import sys
import threading
import warnings
from typing import Any, Callable, Iterator


class RaveError(Exception):
    """A problem with user input (file, option, value), with a one-line message naming its source."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        msg = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {msg}" if self.path is not None else msg)


_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlist = 2, 50, 50, 50, 6


def shown(value: object, limit: int = 40, *, quote: bool = True) -> str:
    """A value for a one-line message, at most ``limit`` characters: a short repr (a 5000-digit integer is
    "an integer of about 5000 digits", long strings and deep lists are cut); ``quote=False`` shows a printable
    string (a flag the user typed) as it is, stripped."""
    if isinstance(value, str) and not quote:
        s = value.strip()
        r = s if s.isprintable() else repr(s)
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        r = f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    else:
        r = _REPR.repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _format_warning(message: Any, category: Any, filename: Any, lineno: Any, line: Any = None) -> str:
    """``warning: <message>`` on one line: no category, file or source line (what :func:`guarded` prints)."""
    return f"warning: {' '.join(str(message).split())}\n"


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """While the block runs, warnings print as one ``warning: ...`` line (still warnings: filters, ``-W error``
    and ``pytest.warns`` see them as usual); the previous format is restored afterwards."""
    previous, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        yield
    finally:
        warnings.formatwarning = previous


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


#: Signals turned into :class:`Terminated` by :func:`signals_as_exceptions` (those that exist here).
TERMINATING_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class _Signals:
    """State of :func:`signals_as_exceptions`, shared by the main thread's handler and one helper thread."""

    active = False  # the handlers are installed
    pending: int | None = None  # a signal held back while the main thread imports
    calls = 0  # handler invocations: the helper knows when its re-sent signal was handled
    lock = threading.Lock()  # held while a re-sent signal is in flight: the handlers stay installed until then


def _importing(frame: Any) -> bool:
    """Whether ``frame`` runs inside an import (module top-level code, or a C extension loading)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _redeliver(main_ident: int) -> None:
    """Helper thread: re-send the held-back signal to the main thread once it no longer runs an import.

    One signal in flight at a time (sent only after the previous one was handled), so the user's one
    Ctrl-C is one KeyboardInterrupt.
    """
    import time

    while True:
        with _Signals.lock:
            if not _Signals.active or _Signals.pending is None:
                return
            frame = sys._current_frames().get(main_ident)
            if frame is None or not _importing(frame):
                calls = _Signals.calls
                signal.pthread_kill(main_ident, _Signals.pending)
                while _Signals.active and _Signals.calls == calls:
                    time.sleep(0.005)
                continue
        time.sleep(0.02)


def _handler(signum: int, frame: Any) -> None:
    _Signals.calls += 1
    # An exception raised in the middle of an import can leave a C extension half-initialised (numpy then
    # refuses to load again, torch may abort): hold the signal until the import is done.
    if _importing(frame) and hasattr(signal, "pthread_kill"):
        if _Signals.pending is None:
            _Signals.pending = signum
            threading.Thread(target=_redeliver, args=(threading.main_thread().ident,), daemon=True).start()
        return
    _Signals.pending = None
    _raise(signum)


def _raise(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    # One shot: a second signal of the same kind during the clean-up ends the process the default way.
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signum, signal.SIG_DFL)
    raise Terminated(signum)


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """While the block runs in the main thread: SIGTERM/SIGHUP raise :class:`Terminated`, Ctrl-C raises
    KeyboardInterrupt as usual, and neither is raised in the middle of an import (held until it finishes).

    Only handlers still at Python's defaults are taken over (an ignored SIGHUP under ``nohup``, or a handler
    the embedding program installed, are left alone) and they are restored afterwards; outside the main
    thread this does nothing. SIGKILL cannot be caught: a ``.rave-*.tmp`` file of an interrupted atomic
    write may then remain.
    """
    if threading.current_thread() is not threading.main_thread() or _Signals.active:
        yield
        return
    previous = {}
    defaults = {sig: signal.SIG_DFL for sig in TERMINATING_SIGNALS}
    defaults[signal.SIGINT] = signal.default_int_handler
    for sig, default in defaults.items():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is default:
                previous[sig] = signal.signal(sig, _handler)
    _Signals.active, _Signals.pending = True, None
    try:
        yield
        pending, _Signals.pending = _Signals.pending, None
        if pending is not None:  # the block ended before the held-back signal was re-sent
            _raise(pending)
    finally:
        try:
            with _Signals.lock:  # waits for a re-sent signal in flight to reach the handler (which may raise)
                pass
        finally:
            _Signals.active, _Signals.pending = False, None
            for sig, old in previous.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(sig, old)


def guarded(fn: Callable[..., Any], *args: Any) -> int:
    """Run a command's body and return its exit code: a RaveError is one line on stderr (2), Ctrl-C is 130.

    SIGTERM/SIGHUP become :class:`Terminated` while ``fn`` runs (so atomic writes remove their temp files)
    and exit with 128 + the signal number, as the default action would. Warnings are one ``warning:`` line.
    """
    try:
        with signals_as_exceptions(), one_line_warnings():
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
