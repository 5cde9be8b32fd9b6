"""`rave decode`: a .rave file (complete or cut short) back into a standard 3DGS PLY."""

from __future__ import annotations

import argparse
import sys
import warnings

HELP = "decode a .rave file into a 3DGS PLY (a truncated file yields its complete chunks, with a warning)"


def _limit(cast):
    """argparse type: a number >= 0 (0 means no limit -> None)."""

    def parse(text: str):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
        if not v >= 0:
            raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
        return v or None

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..codec.container import DEFAULT_MAX_GAUSSIANS, DEFAULT_MAX_RATIO

    p.add_argument("input", help="input .rave file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.ply", help="output PLY (written atomically)")
    p.add_argument("--strict", action="store_true", help="fail on a truncated file instead of decoding its prefix")
    p.add_argument("--max-gaussians", type=_limit(int), default=DEFAULT_MAX_GAUSSIANS, metavar="N",
                   help=f"refuse streams of more Gaussians (default {DEFAULT_MAX_GAUSSIANS}; 0: no limit)")  # fmt: skip
    p.add_argument("--max-ratio", type=_limit(float), default=DEFAULT_MAX_RATIO, metavar="R",
                   help=f"refuse streams that would decompress to more than R bytes per byte of file, a "
                        f"decompression bomb (default {DEFAULT_MAX_RATIO:g}; real scenes stay below 25; 0: no "
                        f"limit)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")


def run(args: argparse.Namespace) -> int:
    from ..codec.container import RaveStreamWarning, decode
    from ..errors import RaveError
    from ..scene.ply import write_ply

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RaveStreamWarning)  # reported below as one line
        res = decode(args.input, strict=args.strict, max_gaussians=args.max_gaussians, max_ratio=args.max_ratio)
    if res.message:
        print(f"warning: {args.input}: {res.message}", file=sys.stderr)
    if res.n_decoded == 0:
        raise RaveError("no complete chunk to decode: the stream holds 0 Gaussians", args.input)
    write_ply(res.gaussians, args.output)
    if not args.quiet:
        print(f"wrote {args.output}: {res.n_decoded} Gaussians (SH degree {res.info.sh_degree}, "
              f"{res.info.codec})", file=sys.stderr)  # fmt: skip
    return 0
