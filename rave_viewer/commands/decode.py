"""`rave decode`: a .rave file (complete or cut short) back into a standard 3DGS PLY."""

from __future__ import annotations

import argparse
import sys
import warnings

HELP = "decode a .rave file into a 3DGS PLY (a truncated file yields its complete chunks, with a warning)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="input .rave file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.ply", help="output PLY (written atomically)")
    p.add_argument("--strict", action="store_true", help="fail on a truncated file instead of decoding its prefix")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")


def run(args: argparse.Namespace) -> int:
    from ..codec.container import RaveStreamWarning, decode
    from ..errors import RaveError
    from ..scene.ply import write_ply

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RaveStreamWarning)  # reported below as one line
        res = decode(args.input, strict=args.strict)
    if res.message:
        print(f"warning: {args.input}: {res.message}", file=sys.stderr)
    if res.n_decoded == 0:
        raise RaveError("no complete chunk to decode: the stream holds 0 Gaussians", args.input)
    write_ply(res.gaussians, args.output)
    if not args.quiet:
        print(f"wrote {args.output}: {res.n_decoded} Gaussians (SH degree {res.info.sh_degree}, "
              f"{res.info.codec})", file=sys.stderr)  # fmt: skip
    return 0
