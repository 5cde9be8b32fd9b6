"""`rave encode`: a 3DGS PLY (or the prefix of a ranked scene) into a progressive, chunked .rave file.

Structure for extensions: :func:`make_encoder` turns the input into a ``(ProgressiveEncoder, k)`` pair and
:func:`write_prefix` writes the first ``k`` Gaussians of any encoder; checkpoint inputs with ``--rate`` /
``--count`` / ``--psnr`` plug into :func:`make_encoder`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._args import add_force, float_in, int_in

HELP = "encode a 3DGS PLY into a progressive .rave file (quantized, chunked, entropy-coded)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..codec.coders import CODECS, DEFAULT_CODEC
    from ..codec.container import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_GAUSSIANS
    from ..codec.quantize import BIT_RANGES, QuantConfig

    d = QuantConfig()

    def bits(name: str):
        return int_in(*BIT_RANGES[name])
    p.add_argument("input", help="input scene: a 3DGS .ply, or a RAVE checkpoint .ckpt from `rave build`")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--rate", metavar="RATE",
                   help="(.ckpt) size cap: the most Gaussians whose file is at most RATE bytes, e.g. 2.5MB, "
                        "800KB (10^3/10^6), 2.5MiB (2^20), 123456; ~RATE (e.g. ~2.5MB): the nearest point instead")
    t.add_argument("--count", type=int_in(1, MAX_GAUSSIANS), metavar="N",
                   help="(.ckpt) number of Gaussians to keep, 1..the model's count")
    t.add_argument("--psnr", type=float_in(-1000, 1000), metavar="DB",
                   help="(.ckpt) smallest operating point reaching this PSNR on the stored RD table")
    p.add_argument("--nearest", action="store_true",
                   help="(.ckpt, with --rate) the operating point nearest to RATE (Eq. 3 between exact chunk "
                        "sizes), which may exceed it by part of one chunk; same as --rate ~RATE")
    p.add_argument("-o", "--output", required=True, metavar="OUT.rave", help="output .rave file (written atomically)")
    p.add_argument("--codec", default=DEFAULT_CODEC, choices=sorted(CODECS),
                   help=f"(.ply) entropy coder of the chunks (default {DEFAULT_CODEC}; a .ckpt keeps its own)")
    p.add_argument("--chunk-size", type=int_in(1, MAX_CHUNK_SIZE), default=DEFAULT_CHUNK_SIZE, metavar="N",
                   help=f"(.ply) Gaussians per independently compressed chunk, 1..{MAX_CHUNK_SIZE} "
                        f"(default {DEFAULT_CHUNK_SIZE})")
    g = p.add_argument_group("quantization bit depths of a .ply input (a .ckpt keeps its own; defaults keep the "
                             "PSNR loss small)")
    for flag, name, what in (("--pos-bits", "pos_bits", "bits per position axis over the scene bounds"),
                             ("--rot-bits", "rot_bits", "bits per stored quaternion component, smallest-three"),
                             ("--scale-bits", "scale_bits", "bits per log-scale"),
                             ("--opacity-bits", "opacity_bits", "bits of the opacity in [0, 1]"),
                             ("--sh0-bits", "sh0_bits", "bits per SH DC coefficient")):
        lo, hi = BIT_RANGES[name]
        g.add_argument(flag, type=bits(name), default=getattr(d, name), metavar="B",
                       help=f"{what}, {lo}..{hi} (default {getattr(d, name)})")
    lo, hi = BIT_RANGES["shN_bits"]
    g.add_argument("--shN-bits", "--shn-bits", type=bits("shN_bits"), nargs=3, default=list(d.shN_bits),
                   metavar=("B1", "B2", "B3"), help=f"bits per SH coefficient of degree 1, 2, 3, {lo}..{hi} "
                                                    f"(default {' '.join(map(str, d.shN_bits))})")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing but errors and warnings (no summary, no progress bar)")
    add_force(p)


def quant_config_from_args(args: argparse.Namespace):
    """The :class:`QuantConfig` the bit-depth options ask for (ranges stay at their defaults)."""
    from ..codec.quantize import QuantConfig

    return QuantConfig(
        pos_bits=args.pos_bits, rot_bits=args.rot_bits, scale_bits=args.scale_bits,
        opacity_bits=args.opacity_bits, sh0_bits=args.sh0_bits, shN_bits=tuple(args.shN_bits),
    )  # fmt: skip


def make_encoder(args: argparse.Namespace):
    """(encoder, k) for the input: a PLY gives an encoder over its Gaussians in file order and k = all."""
    from ..codec.container import ProgressiveEncoder
    from ..errors import RaveError
    from ..scene.ply import read_ply

    path = Path(args.input)
    target = {"rate": getattr(args, "rate", None), "count": getattr(args, "count", None),
              "psnr": getattr(args, "psnr", None)}  # fmt: skip
    nearest = bool(getattr(args, "nearest", False))
    if nearest and target["rate"] is None:
        raise RaveError("--nearest goes with --rate (it picks the operating point nearest to the rate)")
    if path.suffix.lower() == ".ckpt":
        # Quantization, codec and chunk size are the checkpoint's own: its rates were measured with them.
        from ..rave.checkpoint import checkpoint_encoder

        return checkpoint_encoder(path, **target, nearest=nearest, progress=not getattr(args, "quiet", False))
    if any(v is not None for v in target.values()):
        raise RaveError("--rate/--count/--psnr need a RAVE checkpoint (.ckpt) from `rave build`", path)
    g = read_ply(path)
    enc = ProgressiveEncoder(g, quant_config_from_args(args), args.codec, args.chunk_size,
                             progress=not getattr(args, "quiet", False), name=str(path))  # fmt: skip
    return enc, None


def write_prefix(enc, k: int | None, out: str | os.PathLike, quiet: bool = False, note: str = "") -> int:
    """Write the first ``k`` Gaussians of ``enc`` (all when None) to ``out``; print a one-line summary
    (ending with ``note``, if any)."""
    n = len(enc) if k is None else int(k)
    size = enc.write(out, k)
    if size != enc.size_of_prefix(n):  # the promise the format makes; cheap (everything is cached)
        raise AssertionError(f"wrote {size} bytes, size_of_prefix promised {enc.size_of_prefix(n)}")
    if not quiet:
        per = f", {size / n:.2f} B/Gaussian" if n else ""
        print(f"wrote {out}: {n} Gaussians, {size} bytes ({size / 1e6:.3f} MB, MB = 10^6 bytes{per}) "
              f"with {enc.codec.name}, {enc.n_chunks(n)} chunk(s) of {enc.chunk_size}{note}",
              file=sys.stderr)  # fmt: skip
    return size


def rate_note(enc, k: int, rate: str, nearest: bool) -> str:
    """'; cap 200,000 B: 88 B under, one more Gaussian would be 200,031 B' (or the nearest point's offset)."""
    from ..rave.selection import parse_rate_target

    target, tilde = parse_rate_target(rate)
    size = enc.size_of_prefix(k)
    if nearest or tilde:
        return f"; nearest to {target:,} B: {size - target:+,} B ({100 * (size - target) / target:+.2f} %)"
    if k >= len(enc):
        return f"; cap {target:,} B: the whole model fits ({target - size:,} B under)"
    return (f"; cap {target:,} B: {target - size:,} B under, one more Gaussian would be "
            f"{enc.size_of_prefix(k + 1):,} B")


def run(args: argparse.Namespace) -> int:
    from ..fileio import check_output

    check_output(args.output, args.input, force=args.force)
    enc, k = make_encoder(args)
    if args.quiet:
        enc.progress = False  # no compression bar either (a .ckpt's encoder is built with one)
    note = ""
    if getattr(args, "rate", None) is not None and not args.quiet:
        note = rate_note(enc, k, args.rate, bool(getattr(args, "nearest", False)))
    write_prefix(enc, k, args.output, quiet=args.quiet, note=note)
    return 0
