"""`rave decode`: a .rave file (complete or cut short) or a .ckpt back into a standard 3DGS PLY.

Gaussian streams decode to their Gaussians. Anchor (Scaffold-GS) streams and checkpoints decode to anchors,
whose neural Gaussians depend on the viewpoint: the PLY is ONE snapshot of them (see :data:`SNAPSHOT_HELP`),
and ``--anchors`` writes the anchor model itself (a ``.scaffold`` file, exact).
"""

from __future__ import annotations

import argparse
import sys
import warnings

HELP = ("decode a .rave file (Gaussians or Scaffold-GS anchors; a truncated file yields its complete chunks, with "
        "a warning) or a .ckpt into a 3DGS PLY")
MAX_RATIO_FLAG = 1e12  # largest --max-ratio accepted (0 lifts the limit)
SNAPSHOT_HELP = (
    "Anchor streams: Scaffold-GS decodes each anchor's k neural Gaussians from the viewing direction and distance, "
    "so a PLY (fixed Gaussians) is one snapshot, exact only for the viewpoint it was decoded for. By default each "
    "anchor is decoded as seen from a virtual camera at the view distance D outside it, on the line from the scene "
    "centre (median anchor position) through the anchor, looking back at the centre (as an orbiting capture sees "
    "it); D defaults to the median distance of the anchors to that centre. --camera decodes every anchor for one "
    "camera position instead (exact there). Colours, opacities and shapes are frozen at that viewpoint; neural "
    "Gaussians with opacity <= 0 for it are left out.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..codec.anchors import DEFAULT_MAX_ANCHORS
    from ..codec.container import DEFAULT_MAX_GAUSSIANS, DEFAULT_MAX_RATIO, MAX_GAUSSIANS
    from ._args import add_force, float_in, int_in

    p.epilog = SNAPSHOT_HELP
    p.add_argument("input", help="input .rave file (Gaussians or anchors) or .ckpt (all its units)")
    p.add_argument("-o", "--output", metavar="OUT.ply", help="output PLY (written atomically); required unless "
                   "--anchors is given")
    p.add_argument("--anchors", metavar="OUT.scaffold", help="anchor inputs: also write the decoded anchor model "
                   "(safetensors .scaffold, exact: anchors, spec, MLP weights)")
    p.add_argument("--view-distance", type=float_in(0, 1e30, lo_open=True), metavar="D",
                   help="anchor inputs: distance of each anchor's virtual camera; when not given, the median "
                        "distance of the anchors to the scene centre (see below)")
    p.add_argument("--camera", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="anchor inputs: decode every anchor for one camera at this position instead")
    p.add_argument("--strict", action="store_true", help="fail on a truncated file instead of decoding its prefix")
    p.add_argument("--max-gaussians", type=int_in(0, MAX_GAUSSIANS), default=DEFAULT_MAX_GAUSSIANS, metavar="N",
                   help=f"refuse Gaussian streams of more Gaussians (default {DEFAULT_MAX_GAUSSIANS}; 0: no limit)")
    p.add_argument("--max-anchors", type=int_in(0, MAX_GAUSSIANS), default=DEFAULT_MAX_ANCHORS, metavar="N",
                   help=f"refuse anchor streams of more anchors (default {DEFAULT_MAX_ANCHORS}; 0: no limit)")
    p.add_argument("--max-ratio", type=float_in(0, MAX_RATIO_FLAG), default=DEFAULT_MAX_RATIO, metavar="R",
                   help=f"refuse streams that would decompress to more than R bytes per byte of file, i.e. "
                        f"decompression bombs (default {DEFAULT_MAX_RATIO:g}; real scenes stay below 25; 0: no "
                        f"limit)")  # fmt: skip
    add_force(p)
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")


def _unit_of(path: str) -> str:
    """"anchors", "gaussians" (a .rave stream of them) or "ckpt" (anything else: the loaders name the problem)."""
    from ..codec.unit_type import unit_type_of

    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        head = b""
    if head[:4] == b"RAVE":
        return unit_type_of(head) or "gaussians"  # an unknown unit: the Gaussian reader says what is wrong
    return "ckpt" if str(path).lower().endswith(".ckpt") else "gaussians"


def _anchor_model(args: argparse.Namespace, unit: str):
    """(ScaffoldModel of the decoded anchors, what it came from) of an anchor stream or checkpoint."""
    from ..codec.anchors import decode_anchors
    from ..codec.container import RaveStreamWarning
    from ..errors import RaveError
    from ..rave.anchor_checkpoint import scaffold_model

    if unit == "ckpt":
        from ..rave.checkpoint import load_checkpoint

        return load_checkpoint(args.input), "checkpoint"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RaveStreamWarning)  # reported below as one line
        res = decode_anchors(args.input, strict=args.strict, max_anchors=args.max_anchors or None,
                             max_ratio=args.max_ratio or None)
    if res.message:
        print(f"warning: {args.input}: {res.message}", file=sys.stderr)
    if res.n_decoded == 0:
        raise RaveError("no complete chunk to decode: the stream holds 0 anchors", args.input)
    return scaffold_model(res.anchors, res.spec, res.mlps, args.input), f"{res.info.codec} stream"


def run(args: argparse.Namespace) -> int:
    from ..errors import RaveError
    from ..fileio import check_output
    from ..scene.ply import write_ply

    if args.output is None and args.anchors is None:
        raise RaveError("give -o/--output OUT.ply (and/or --anchors OUT.scaffold for anchor inputs)")
    for out, flag in ((args.output, "-o/--output"), (args.anchors, "--anchors")):
        if out is not None:
            check_output(out, args.input, force=args.force, flag=flag)
    unit = _unit_of(args.input)
    if unit == "gaussians":
        if args.anchors is not None or args.view_distance is not None or args.camera is not None:
            raise RaveError("--anchors, --view-distance and --camera apply to anchor streams; this is a "
                            "Gaussian .rave stream", args.input)
        return _run_gaussians(args)
    model, source = _anchor_model(args, unit)
    if unit == "ckpt" and not hasattr(model, "decoded_anchors"):  # a Gaussian checkpoint: its decoded Gaussians
        if args.anchors is not None or args.output is None:
            raise RaveError("--anchors applies to anchor inputs; this is a Gaussian checkpoint", args.input)
        g = model.decoded_gaussians()
        write_ply(g, args.output)
        if not args.quiet:
            print(f"wrote {args.output}: {len(g)} Gaussians (SH degree {g.sh_degree}, decoded checkpoint)",
                  file=sys.stderr)
        return 0
    if unit == "ckpt":
        model = model.model(decoded=True)
    if args.anchors is not None:
        from ..scaffold import io

        io.save(model, args.anchors, extra={"decoded_from": str(args.input)})
        if not args.quiet:
            print(f"wrote {args.anchors}: {len(model)} anchors (decoded {source})", file=sys.stderr)
    if args.output is not None:
        from ..scaffold.model import snapshot_gaussians  # (lazily: importing the CLI stays light)

        g, dist = snapshot_gaussians(model, view_distance=args.view_distance, camera=args.camera)
        write_ply(g, args.output)
        if not args.quiet:
            how = (f"one camera at {tuple(args.camera)}" if dist is None
                   else f"each anchor seen from {dist:.4g} outside it")
            print(f"wrote {args.output}: {len(g)} neural Gaussians of {len(model)} anchors (SH degree 0, a "
                  f"snapshot: {how})", file=sys.stderr)
    return 0


def _run_gaussians(args: argparse.Namespace) -> int:
    from ..codec.container import RaveStreamWarning, decode
    from ..errors import RaveError
    from ..scene.ply import write_ply

    if args.output is None:
        raise RaveError("give -o/--output OUT.ply", args.input)
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
