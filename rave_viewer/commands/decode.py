"""`rave decode`: a .rave file (complete or cut short) back into a standard 3DGS PLY."""

from __future__ import annotations

import argparse
import sys
import warnings

HELP = "decode a .rave file into a 3DGS PLY (a truncated file yields its complete chunks, with a warning)"
MAX_RATIO_FLAG = 1e12  # largest --max-ratio accepted (0 lifts the limit)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..codec.container import DEFAULT_MAX_GAUSSIANS, DEFAULT_MAX_RATIO, MAX_GAUSSIANS
    from ._args import add_force, float_in, int_in

    p.add_argument("input", help="input .rave file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.ply", help="output PLY (written atomically)")
    p.add_argument("--strict", action="store_true", help="fail on a truncated file instead of decoding its prefix")
    p.add_argument("--max-gaussians", type=int_in(0, MAX_GAUSSIANS), default=DEFAULT_MAX_GAUSSIANS, metavar="N",
                   help=f"refuse streams of more Gaussians (default {DEFAULT_MAX_GAUSSIANS}; 0: no limit)")  # fmt: skip
    p.add_argument("--max-ratio", type=float_in(0, MAX_RATIO_FLAG), default=DEFAULT_MAX_RATIO, metavar="R",
                   help=f"refuse streams that would decompress to more than R bytes per byte of file, i.e. "
                        f"decompression bombs (default {DEFAULT_MAX_RATIO:g}; real scenes stay below 25; 0: no "
                        f"limit)")  # fmt: skip
    add_force(p)
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")


def run(args: argparse.Namespace) -> int:
    from ..codec.container import RaveStreamWarning, decode
    from ..errors import RaveError
    from ..fileio import check_output
    from ..scene.ply import write_ply

    check_output(args.output, args.input, force=args.force)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RaveStreamWarning)  # reported below as one line
        res = decode(args.input, strict=args.strict, max_gaussians=args.max_gaussians or None,
                     max_ratio=args.max_ratio or None)  # fmt: skip
    if res.message:
        print(f"warning: {args.input}: {res.message}", file=sys.stderr)
    if res.n_decoded == 0:
        raise RaveError("no complete chunk to decode: the stream holds 0 Gaussians", args.input)
    write_ply(res.gaussians, args.output)
    if not args.quiet:
        print(f"wrote {args.output}: {res.n_decoded} Gaussians (SH degree {res.info.sh_degree}, "
              f"{res.info.codec})", file=sys.stderr)  # fmt: skip
    return 0
