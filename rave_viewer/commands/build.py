"""`rave build`: turn a trained 3DGS PLY and its dataset into a rate-adaptive RAVE checkpoint (.ckpt)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._args import MAX_STEPS, add_force, dataset_files, float_in, int_in

MAX_LEVELS = 256  # levels / anchors (each costs renders at build time)

HELP = "build a rate-adaptive RAVE checkpoint (.ckpt) from a trained .ply and its dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..codec.container import MAX_CHUNK_SIZE as MAX_CHUNK

    p.add_argument("ply", nargs="?", help="trained 3DGS model (.ply)")
    p.add_argument("--data", metavar="DATA_DIR",
                   help="dataset folder the model was trained on (COLMAP or transforms.json; required)")
    p.add_argument("-o", "--output", metavar="OUT.ckpt", help="checkpoint to write (atomically; required)")
    p.add_argument("--config", metavar="rave.yaml", help="YAML file of build options (see --help-config)")
    p.add_argument("--ranking", choices=("context", "global"),
                   help="order inside each level interval: context (paper, default) or global (ablation)")
    p.add_argument("--anchors", type=int_in(2, MAX_LEVELS), metavar="N",
                   help=f"naive multi-anchor ablation: N levels (2..{MAX_LEVELS}), no interpolation (selection "
                        "snaps to levels)")
    p.add_argument("--no-finetune", action="store_true", help="skip the stochastic-level QAT fine-tuning")
    p.add_argument("--steps", type=int_in(0, MAX_STEPS), metavar="N",
                   help=f"fine-tuning steps, 0..{MAX_STEPS} (default: 10 %% of the model's training steps from "
                        "its run record scene.json, else 3000)")
    p.add_argument("--levels", type=int_in(2, MAX_LEVELS), metavar="L",
                   help=f"number of levels, 2..{MAX_LEVELS} (default 8)")
    p.add_argument("--coarsest", type=float_in(0.0, 1.0, lo_open=True), metavar="F",
                   help="fraction of Gaussians in G_1, in (0, 1] (default 0.1)")
    p.add_argument("--chunk-size", type=int_in(1, MAX_CHUNK), metavar="N",
                   help=f"Gaussians per .rave chunk, 1..{MAX_CHUNK} (default 4096)")
    p.add_argument("--backend", choices=("auto", "cpu", "gsplat", "reference"), help="renderer (default auto)")
    p.add_argument("--help-config", action="store_true", help="print every build option with its default and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    add_force(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import RaveError
    from ..fileio import check_output
    from ..rave.build import build
    from ..rave.config import BuildConfig, describe, load_config
    from ..rave.selection import format_bytes

    if args.help_config:
        print(describe(), end="")
        return 0
    missing = [name for name, v in (("the model .ply", args.ply), ("--data DATA_DIR", args.data),
                                    ("-o OUT.ckpt", args.output)) if not v]
    if missing:
        raise RaveError(f"rave build needs {', '.join(missing)}")
    inputs = [args.ply, Path(args.ply).with_suffix(".json"), *dataset_files(args.data), args.config]  # + run record
    check_output(args.output, *inputs, force=args.force)
    cfg = load_config(args.config) if args.config else BuildConfig()
    cfg = cfg.replace(
        ranking=args.ranking, anchors=args.anchors, steps=args.steps, num_levels=args.levels,
        coarsest_fraction=args.coarsest, chunk_size=args.chunk_size, backend=args.backend,
        finetune=False if args.no_finetune else None,
    )
    ckpt = build(args.ply, args.data, args.output, cfg, progress=not args.quiet)
    if not args.quiet:
        r0, r1 = ckpt.rate_range()
        ps = ckpt.rd["psnr"]
        print(f"wrote {args.output}: {len(ckpt):,} Gaussians, {ckpt.num_levels} levels, rates "
              f"{format_bytes(r0)} .. {format_bytes(r1)} (MB = 10^6 bytes), test PSNR {min(ps):.2f}-{max(ps):.2f} dB, "
              f"built in {ckpt.meta.get('total_seconds', 0):.1f} s", file=sys.stderr)
    return 0
