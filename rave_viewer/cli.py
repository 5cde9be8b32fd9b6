"""Console entry points ``rave`` and ``rave-view``: parse, dispatch, and turn RaveError into one line."""

from __future__ import annotations

import argparse
import importlib
import sys

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


def _load(name: str):
    return importlib.import_module(f"rave_viewer.commands.{COMMANDS[name]}")


def build_parser(names: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rave", description="RAVE rate-adaptive 3D Gaussian Splatting")
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = [argv[0]] if argv and argv[0] in COMMANDS else None
    args = build_parser(names).parse_args(argv)
    return guarded(args._run, args)


def view_main(argv: list[str] | None = None) -> int:
    from .commands import view

    parser = argparse.ArgumentParser(prog="rave-view", description=view.HELP)
    view.add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return guarded(view.run, args)


if __name__ == "__main__":
    sys.exit(main())
