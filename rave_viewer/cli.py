"""Console entry points ``rave`` and ``rave-view``: parse, dispatch, and turn RaveError into one line."""

from __future__ import annotations

import argparse
import importlib
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


def main(argv: list[str] | None = None) -> int:
    """``rave``: every failure (bad flag, bad file, Ctrl-C or SIGTERM, also during start-up) is one stderr line."""
    return guarded(_main, sys.argv[1:] if argv is None else list(argv))


def _view_main(argv: list[str]) -> int:
    from .commands import view

    parser = Parser(prog="rave-view", description=view.HELP)
    view.add_arguments(parser)
    args = _parse(parser, argv)
    return args if isinstance(args, int) else int(view.run(args) or 0)


def view_main(argv: list[str] | None = None) -> int:
    """``rave-view``: like :func:`main`."""
    return guarded(_view_main, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
