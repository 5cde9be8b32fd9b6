"""Console entry points ``rave`` and ``rave-view``: parse, dispatch, and turn RaveError into one line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from .errors import guarded

# Sub-command name -> module in rave_viewer.commands providing ``HELP``, ``add_arguments(p)``, ``run(args)``.
COMMANDS = {
    "generate": "generate",
    "train": "train",
    "encode": "encode",
    "decode": "decode",
    "build": "build",
    "info": "info",
    "eval": "eval",
    "publish": "publish",
    "build-all": "build_all",
}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one ``error:`` line naming the flag (exit 2), like RaveErrors."""

    def error(self, message: str) -> NoReturn:
        msg = " ".join(message.split())
        self.exit(2, f"error: {self.prog}: {msg} (see {self.prog} --help)\n")


def _load(name: str):
    return importlib.import_module(f"rave_viewer.commands.{COMMANDS[name]}")


def build_parser(names: list[str] | None = None) -> argparse.ArgumentParser:
    parser = Parser(prog="rave", description="RAVE rate-adaptive 3D Gaussian Splatting")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in names or list(COMMANDS):
        try:
            mod = _load(name)
        except ModuleNotFoundError as e:  # a command not built yet
            if e.name and e.name.startswith("rave_viewer.commands"):
                continue
            raise
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """Parsed arguments, or the exit code of --help (0) or of a usage error (2, its line already printed)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


def _main(argv: list[str]) -> int:
    names = [argv[0]] if argv and argv[0] in COMMANDS else None
    args = _parse(build_parser(names), argv)
    return args if isinstance(args, int) else int(args._run(args) or 0)


INTERRUPTED = (130, 128 + 1, 128 + 15)  # Ctrl-C, SIGHUP, SIGTERM (errors.guarded's exit codes)


def _console_exit(code: int, console: bool) -> int:
    """After an interruption in a console run, leave without interpreter finalization.

    The stack has already unwound (temp files removed, one line printed); what is left is native threads of
    torch/OpenMP or viser that a Ctrl-C at start-up can catch mid-construction, and tearing those down at exit
    sometimes aborts ("terminate called without an active exception", exit -6) instead of exiting 130.
    """
    if console and code in INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    """``rave``: every failure (bad flag, bad file, Ctrl-C or SIGTERM, also during start-up) is one stderr line."""
    code = guarded(_main, sys.argv[1:] if argv is None else list(argv))
    return _console_exit(code, argv is None)


def _view_main(argv: list[str]) -> int:
    from .commands import view

    parser = Parser(prog="rave-view", description=view.HELP)
    view.add_arguments(parser)
    args = _parse(parser, argv)
    return args if isinstance(args, int) else int(view.run(args) or 0)


def view_main(argv: list[str] | None = None) -> int:
    """``rave-view``: like :func:`main`."""
    code = guarded(_view_main, sys.argv[1:] if argv is None else list(argv))
    return _console_exit(code, argv is None)


if __name__ == "__main__":
    sys.exit(main())
