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
TUNE_VIEWS = 6  # orbit views rendered per candidate by --tune
TUNE_SIZE = 384


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..codec.coders import CODECS, DEFAULT_CODEC
    from ..codec.container import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_GAUSSIANS
    from ..codec.presets import DEFAULT_QUALITY, PRESETS
    from ..codec.quantize import BIT_RANGES, MAX_FAINT_BITS, MAX_SH_STEP, MIN_SH_STEP

    d = PRESETS[DEFAULT_QUALITY][0]

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
    p.add_argument("--quality", choices=list(PRESETS), default=DEFAULT_QUALITY,
                   help=f"(.ply) quality preset (default {DEFAULT_QUALITY}): bit depths, fitted ranges and the size of "
                        f"the per-scene SH codebook; targets "
                        + ", ".join(f"{k} ~{v[1]:g} dB" for k, v in PRESETS.items())
                        + " PSNR vs the original's renders (benchmarks/CODEC.md has what each scene reaches)")
    p.add_argument("--tune", action="store_true",
                   help="(.ply) rate-distortion allocation measured on this scene: starting from the preset, lower "
                        "the bit depth of whichever attribute saves the most bytes per dB while the renders of "
                        f"{TUNE_VIEWS} orbit views at {TUNE_SIZE}x{TUNE_SIZE} stay above the preset's target PSNR "
                        "vs the original's (slower: renders every candidate)")
    p.add_argument("--order", choices=("spatial", "file"), default="spatial",
                   help="(.ply) order of the Gaussians in the stream (default spatial): spatial sorts them by the "
                        "Morton code of their positions, so each chunk is a compact region (4-9 %% smaller); file "
                        "keeps the PLY's own order, e.g. a ranked scene whose prefixes should stay its first Gaussians")
    p.add_argument("--format-version", type=int, choices=(1, 2, 3, 4), default=None,
                   help="(.ply) .rave format version to write (default: 2, 3 when the preset coarsens faint "
                        "Gaussians' grids, 4 when it transform-codes the SH rest; lower versions for older "
                        "readers: 3 = scalar SH rest instead of the transform, 1 = no faint classes or codebook)")
    g = p.add_argument_group("quantization bit depths of a .ply input, overriding the preset (a .ckpt keeps its "
                             "own)")
    for flag, name, what in (("--pos-bits", "pos_bits", "bits per position axis over the scene bounds"),
                             ("--rot-bits", "rot_bits", "bits per stored quaternion component, smallest-three"),
                             ("--scale-bits", "scale_bits", "bits per log-scale"),
                             ("--opacity-bits", "opacity_bits", "bits of the opacity in [0, 1]"),
                             ("--sh0-bits", "sh0_bits", "bits per SH DC coefficient")):
        lo, hi = BIT_RANGES[name]
        g.add_argument(flag, type=bits(name), default=None, metavar="B",
                       help=f"{what}, {lo}..{hi} (medium preset: {d[name]})")
    lo, hi = BIT_RANGES["shN_bits"]
    g.add_argument("--shN-bits", "--shn-bits", type=bits("shN_bits"), nargs=3, default=None,
                   metavar=("B1", "B2", "B3"), help=f"bits per SH coefficient of degree 1, 2, 3 (of the codebook "
                                                    f"entries with a codebook), {lo}..{hi} (medium preset: "
                                                    f"{' '.join(map(str, d['shN_bits']))})")
    g.add_argument("--sh-codebook", type=int_in(0, 1 << 16), default=None, metavar="K",
                   help=f"SH-rest codebook entries (k-means on the scene), 0 = scalar SH rest (medium preset: "
                        f"{d['sh_vq']})")
    g.add_argument("--sh-step", type=float_in(0, MAX_SH_STEP), default=None, metavar="S",
                   help=f"code the SH rest in a basis fitted to the scene (format version 4), on a grid of step S in "
                        f"SH units, {MIN_SH_STEP:g}..{MAX_SH_STEP:g} (preset very-high: "
                        f"{PRESETS['very-high'][0]['shN_step']}); 0 = scalar grids or the codebook")
    g.add_argument("--faint-bits", type=int_in(0, MAX_FAINT_BITS), default=None, metavar="F",
                   help=f"bits faint Gaussians' position, rotation and SH grids lose: min(F, floor(-log2 opacity)); "
                        f"0 = none (medium preset: {d.get('faint_bits', 0)}; format version 3)")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing but errors and warnings (no summary, no progress bar)")
    add_force(p)


def quant_config_from_args(args: argparse.Namespace):
    """The :class:`QuantConfig` of ``--quality`` with the bit-depth options given on top of it."""
    from ..codec.presets import DEFAULT_QUALITY, preset
    from ..codec.quantize import MAX_SH_STEP, MIN_SH_STEP
    from ..errors import RaveError

    over = {k: getattr(args, k, None) for k in ("pos_bits", "rot_bits", "scale_bits", "opacity_bits", "sh0_bits")}
    if getattr(args, "shN_bits", None) is not None:
        over["shN_bits"] = tuple(args.shN_bits)
    if getattr(args, "sh_codebook", None) is not None:
        over["sh_vq"] = args.sh_codebook
    if getattr(args, "faint_bits", None) is not None:
        over["faint_bits"] = args.faint_bits
    step = getattr(args, "sh_step", None)
    if step is not None:
        if 0 < step < MIN_SH_STEP:
            raise RaveError(f"--sh-step must be 0 or {MIN_SH_STEP:g}..{MAX_SH_STEP:g}, got {step:g}")
        over["shN_step"] = step
        if step:
            over["sh_vq"] = 0  # the transform replaces the codebook
    if over.get("sh_vq"):
        over["shN_step"] = 0.0  # a codebook replaces the transform
    version = getattr(args, "format_version", None)
    if version is not None and version < 4:
        if over.get("shN_step"):
            raise RaveError(f"--format-version {version} cannot hold the SH transform (--sh-step 0)")
        over["shN_step"] = 0.0  # the scalar grids of shN_bits instead
    if version is not None and version < 3:
        if over.get("faint_bits"):
            raise RaveError(f"--format-version {version} cannot hold faint classes (--faint-bits 0)")
        over["faint_bits"] = 0  # faint classes need version 3
    if version == 1:
        if over.get("sh_vq"):
            raise RaveError("--format-version 1 cannot hold an SH codebook (--sh-codebook 0)")
        over["sh_vq"] = 0
    return preset(getattr(args, "quality", None) or DEFAULT_QUALITY, **{k: v for k, v in over.items() if v is not None})


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
    cfg = quant_config_from_args(args)
    if getattr(args, "tune", False):
        cfg = tune_config(g, cfg, getattr(args, "quality", None), args.codec, args.chunk_size,
                          quiet=getattr(args, "quiet", False))
    enc = ProgressiveEncoder(g, cfg, args.codec, args.chunk_size,
                             progress=not getattr(args, "quiet", False), name=str(path),
                             format_version=getattr(args, "format_version", None),
                             spatial_order=getattr(args, "order", "spatial") == "spatial")  # fmt: skip
    return enc, None


def orbit_cameras(g, n: int, size: int):
    """``n`` cameras on a ring around the central 98 % of ``g``'s Gaussians, looking at its centre."""
    import math

    import torch

    from ..scene.cameras import Cameras, intrinsics, look_at

    m = g.means.detach().float()
    m = m[torch.isfinite(m).all(1)]
    lo, hi = torch.quantile(m, 0.01, dim=0), torch.quantile(m, 0.99, dim=0)
    c, r = (lo + hi) / 2, max(float((hi - lo).norm()) * 0.85, 1e-6)
    mats = [look_at(c + torch.tensor([r * math.cos(a), r * math.sin(a), (0.25 + 0.2 * math.sin(3 * a)) * r]), c)
            for a in (2 * math.pi * i / n for i in range(n))]
    K = intrinsics(size, size, math.radians(55))
    return Cameras(torch.stack(mats), K.expand(n, 3, 3).clone(), size, size)


def tune_config(g, cfg, quality: str | None, codec: str, chunk_size: int, quiet: bool = False):
    """``cfg`` with bit depths lowered by :func:`~rave_viewer.codec.rdopt.allocate` to the preset's target PSNR,
    measured by rendering orbit views of the dequantized scene against the original's."""
    import torch

    from ..codec.presets import DEFAULT_QUALITY, PRESETS
    from ..codec.rdopt import allocate
    from ..metrics import psnr
    from ..render import render_cameras

    target = PRESETS[quality or DEFAULT_QUALITY][1]
    cams = orbit_cameras(g, TUNE_VIEWS, TUNE_SIZE)
    with torch.no_grad():
        ref = render_cameras(g, cams)[0].clamp(0, 1)

    def measure(dec) -> float:
        with torch.no_grad():
            return float(psnr(render_cameras(dec, cams)[0].clamp(0, 1), ref).clamp(max=100).mean())

    log = None if quiet else (lambda m: print(f"tune: {m}", file=sys.stderr))  # noqa: E731
    tuned, path = allocate(g, cfg, target, measure, codec=codec, chunk_size=chunk_size, log=log)
    if not quiet:
        last = path[-1]
        print(f"tune: target {target:g} dB: {last['bytes_per_gaussian']:.2f} B/Gaussian (sample), "
              f"{last['fidelity']:.2f} dB after {len(path) - 1} step(s)", file=sys.stderr)
    return tuned


def write_prefix(enc, k: int | None, out: str | os.PathLike, quiet: bool = False, note: str = "") -> int:
    """Write the first ``k`` units of ``enc`` (all when None) to ``out``; print a one-line summary
    (ending with ``note``, if any)."""
    n = len(enc) if k is None else int(k)
    size = enc.write(out, k)
    if size != enc.size_of_prefix(n):  # the promise the format makes; cheap (everything is cached)
        raise AssertionError(f"wrote {size} bytes, size_of_prefix promised {enc.size_of_prefix(n)}")
    if not quiet:
        units = getattr(enc, "unit_label", "Gaussians")  # (an anchor checkpoint's encoder says "anchors")
        per = f", {size / n:.2f} B/{units[:-1]}" if n else ""
        print(f"wrote {out}: {n} {units}, {size} bytes ({size / 1e6:.3f} MB, MB = 10^6 bytes{per}) "
              f"with {enc.codec.name}, {enc.n_chunks(n)} chunk(s) of {enc.chunk_size}, format "
              f"v{getattr(enc, 'format_version', 1)}{note}",
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
