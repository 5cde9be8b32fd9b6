"""`rave build`: turn a trained model (3DGS .ply or Scaffold-GS .scaffold) and its dataset into a rate-adaptive
RAVE checkpoint (.ckpt)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..rave.config import (MAX_CHUNK_SIZE, MAX_LEVELS, MAX_RIG_VIEWS, MAX_STEPS, QUALITIES, RIG_SHAPES, RIG_UPS,
                           BuildConfig)
from ._args import add_force, dataset_files, float_in, int_in

HELP = ("build a rate-adaptive RAVE checkpoint (.ckpt) from a trained model (3DGS .ply: Gaussians ranked; "
        "Scaffold-GS .scaffold: anchors ranked) and its dataset, or without one "
        "from the model's own renders on a camera rig around it")

#: Help text of --allow-outside-paths (also used by ``rave train``).
OUTSIDE_PATHS_HELP = ("read dataset images and point clouds that lie outside the dataset folder (.., absolute "
                      "paths, symlinks); off by default: a shared dataset could otherwise pull any image of this "
                      "machine into the output (a .ckpt stores its test images), which you might then publish")


#: --downscale's default in words (rave/build.py training_resolution).
DOWNSCALE_RULE = "the factor the model was trained at, from its run record scene.json beside scene.ply, else 1"


def views_rule() -> str:
    """--views' default in words (rave/budget.py)."""
    from ..rave import budget

    return (f"every view up to {budget.REFERENCE_GAUSSIANS:,} Gaussians, above that {budget.VIEWS} x sqrt of "
            f"{budget.REFERENCE_GAUSSIANS:,}/N rounded to 8, at least 16, e.g. {budget.view_cap(10**6)} at 1M")


def side_rule() -> str:
    """--max-side's default in words (rave/budget.py)."""
    from ..rave import budget

    return (f"the resolution the model was trained at, from its run record, else the photos' or the rig's, at "
            f"most {budget.side_cap(10**6)}")


def default_steps_text() -> str:
    """The rule for the default fine-tuning length, in words (what :class:`~rave_viewer.rave.build.Builder` does)."""
    from ..rave.build import DEFAULT_STEPS

    d = BuildConfig()
    return (f"{100 * d.finetune_fraction:g} %% of the model's training steps from its run record scene.json "
            f"beside scene.ply, rounded, at least {d.min_steps}; {DEFAULT_STEPS} without a record")


def chunk_defaults() -> str:
    """Each backbone's default chunk size in words: "4096 Gaussians or 512 anchors"."""
    from ..rave.backbone import backbone_classes

    return " or ".join(f"{c.default_chunk_size} {c.unit_label}" for c in backbone_classes())


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = BuildConfig()
    max_down = BuildConfig.__dataclass_fields__["downscale"].metadata["max"]
    p.add_argument("ply", nargs="?", metavar="MODEL",
                   help="trained model: a 3DGS .ply (the ranked unit is the Gaussian) or a Scaffold-GS .scaffold "
                        "from `rave train --model scaffold` (the ranked unit is the anchor: 8-bit features and "
                        "fp16 geometry, MLP weights once in the stream header; --quality and the 3DGS learning "
                        "rates do not apply, the fine-tuning uses Scaffold-GS's end-of-training rates)")
    p.add_argument("--data", metavar="DATA_DIR",
                   help="dataset folder the model was trained on (COLMAP or transforms.json); without it the "
                        "build self-distils: a camera rig around the scene (--rig-*) or --cameras, with the full "
                        "model's renders as targets, and the RD table is PSNR vs the full model")
    p.add_argument("--cameras", metavar="FILE",
                   help="without --data: camera poses to use instead of the rig (transforms.json style: "
                        "frames[].transform_matrix, camera_angle_x or fl_x/fl_y, w/h; no images needed)")
    p.add_argument("--rig-views", type=int_in(1, MAX_RIG_VIEWS), metavar="N",
                   help=f"without --data: rig views, 1..{MAX_RIG_VIEWS}; every 8th is held out for the RD table "
                        "(default 64; above 250,000 Gaussians enough for --views' default to remain after the "
                        "held-out ones)")
    p.add_argument("--rig-size", type=int_in(16, 4096), metavar="PX",
                   help="without --data: rig image side in pixels, 16..4096, also the cap for --cameras images "
                        "(default: sqrt(Gaussians) rounded to 32, within 128..512; at most --max-side's default)")
    p.add_argument("--rig-fov", type=float_in(1.0, 170.0), metavar="DEG",
                   help=f"without --data: rig field of view in degrees, 1..170 (default {d.rig_fov:g})")
    p.add_argument("--rig-shape", choices=RIG_SHAPES,
                   help="without --data: cameras on a sphere or a hemisphere (default auto: hemisphere for flat "
                        "scenes)")
    p.add_argument("--rig-up", choices=RIG_UPS,
                   help="without --data: the hemisphere's up axis (default auto: thinnest axis, away from a "
                        "ground plane)")
    p.add_argument("-o", "--output", metavar="OUT.ckpt", help="checkpoint to write (atomically; required)")
    p.add_argument("--config", metavar="rave.yaml", help="YAML file of build options (see --help-config); the "
                                                          "flags below override it")
    p.add_argument("--ranking", choices=("context", "global"),
                   help=f"order inside each level interval: context (paper) or global (ablation) (default "
                        f"{d.ranking})")
    p.add_argument("--anchors", type=int_in(2, MAX_LEVELS), metavar="N",
                   help=f"naive multi-anchor ablation: N levels (2..{MAX_LEVELS}), no interpolation (selection "
                        "snaps to levels)")
    p.add_argument("--no-finetune", action="store_true", help="skip the stochastic-level QAT fine-tuning")
    p.add_argument("--steps", type=int_in(0, MAX_STEPS), metavar="N",
                   help=f"fine-tuning steps, 0..{MAX_STEPS} (default: {default_steps_text()})")
    p.add_argument("--levels", type=int_in(2, MAX_LEVELS), metavar="L",
                   help=f"number of levels, 2..{MAX_LEVELS} (default {d.num_levels})")
    p.add_argument("--coarsest", type=float_in(0.0, 1.0, lo_open=True), metavar="F",
                   help=f"fraction of Gaussians in G_1, in (0, 1] (default {d.coarsest_fraction})")
    p.add_argument("--quality", choices=QUALITIES,
                   help=f"codec quality preset of the stream, as in rave encode --quality: bit depths, fitted ranges "
                        f"and SH-rest codebook, also used by the QAT fine-tuning and the RD table (default "
                        f"{d.quality})")
    p.add_argument("--chunk-size", type=int_in(1, MAX_CHUNK_SIZE), metavar="N",
                   help=f"units per .rave chunk, 1..{MAX_CHUNK_SIZE} (default: the backbone's, {chunk_defaults()})")
    p.add_argument("--downscale", type=int_in(1, max_down), metavar="N",
                   help=f"load the dataset's images at 1/N of their size, 1..{max_down} (default: {DOWNSCALE_RULE})")
    p.add_argument("--views", type=int_in(1, 100_000), metavar="N",
                   help="score and fine-tune on N evenly spaced training (or rig) views (default: "
                        f"{views_rule()}; printed at start)")
    p.add_argument("--max-side", type=int_in(1, 16384), metavar="PX",
                   help="score, fine-tune and measure the RD table at this long side in pixels (default: "
                        f"{side_rule()}; printed at start)")
    p.add_argument("--backend", choices=("auto", "cpu", "gsplat", "reference"),
                   help=f"renderer (default {d.backend})")
    p.add_argument("--allow-outside-paths", action="store_true", help=OUTSIDE_PATHS_HELP)
    p.add_argument("--help-config", action="store_true", help="print every build option with its default and exit")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing but errors and warnings (no settings line, progress bars or summary)")
    add_force(p)


def start_line(b, given_steps: int | None) -> str:
    """What a build is about to do: model size, views and their resolution, levels, fine-tuning steps."""
    c = b.cfg
    tr, te = b.train, b.test
    if getattr(b, "targets", "photos") == "self":
        test = f"{len(te)} held-out views; targets: the full model's renders"
    elif b.rd_split == "test":
        test = f"{len(te)} test views" + (f" at {te.width}x{te.height}" if (te.width, te.height) !=
                                          (tr.width, tr.height) else "")
    else:
        test = f"no test views: the RD table uses {len(te)} of the training views"
    down = f", downscale {c.downscale}" if (c.downscale or 1) > 1 else ""
    if not c.finetune or c.steps <= 0:
        ft = "no fine-tuning"
    elif given_steps is not None:
        ft = f"{c.steps:,} fine-tuning steps"
    elif b.train_steps:
        ft = (f"{c.steps:,} fine-tuning steps ({100 * c.finetune_fraction:g} % of the model's {b.train_steps:,} "
              f"training steps, at least {c.min_steps})")
    else:
        ft = f"{c.steps:,} fine-tuning steps (no run record beside the model: the default)"
    effort = getattr(b, "effort", None)
    if given_steps is None and effort is not None and effort.why.get("steps") and c.finetune and c.steps > 0:
        ft += f", {effort.why['steps']}"
    levels = f"{c.anchors} anchors" if c.anchors else f"{len(b.sizes)} levels"
    return (f"building from {len(b.backbone):,} {b.backbone.unit_label} and {len(tr)} views at {tr.width}x{tr.height} "
            f"({test}{down}): {levels}, {ft}, backend {c.backend}")


def announce_build(b, given_steps: int | None) -> None:
    """The start-of-build lines on stderr: the effort chosen by scene size (budget.py), then the settings."""
    effort = getattr(b, "effort", None)
    if effort is not None:
        print(effort.line(finetune=bool(b.cfg.finetune and b.cfg.steps)), file=sys.stderr, flush=True)
    print(start_line(b, given_steps), file=sys.stderr, flush=True)


def psnr_label(meta: dict | None) -> str:
    """"PSNR vs the full model" for a self-distilled checkpoint (rig renders as targets), else "test PSNR"."""
    return "PSNR vs the full model" if isinstance(meta, dict) and meta.get("targets") == "self" else "test PSNR"


def run(args: argparse.Namespace) -> int:
    from ..errors import RaveError
    from ..fileio import check_output
    from ..rave.build import build
    from ..rave.config import describe, load_config
    from ..rave.selection import format_bytes

    if args.help_config:
        print(describe(), end="")
        return 0
    missing = [name for name, v in (("the model (.ply or .scaffold)", args.ply), ("-o OUT.ckpt", args.output)) if not v]
    if missing:
        raise RaveError(f"rave build needs {', '.join(missing)}")
    if args.cameras and args.data:
        raise RaveError("--cameras is for builds without --data (a dataset brings its own cameras)", args.cameras)
    if not args.data and (args.downscale is not None or args.allow_outside_paths):
        flag = "--downscale" if args.downscale is not None else "--allow-outside-paths"
        raise RaveError(f"{flag} applies to --data photos; without --data the rig renders at --rig-size")
    inputs = [args.ply, Path(args.ply).with_suffix(".json"), *dataset_files(args.data), args.config,
              args.cameras]  # + run record
    check_output(args.output, *inputs, force=args.force)
    cfg = load_config(args.config) if args.config else BuildConfig()
    cfg = cfg.replace(
        ranking=args.ranking, anchors=args.anchors, steps=args.steps, num_levels=args.levels,
        coarsest_fraction=args.coarsest, quality=args.quality, chunk_size=args.chunk_size, backend=args.backend,
        downscale=args.downscale, finetune=False if args.no_finetune else None,
        rig_views=args.rig_views, rig_size=args.rig_size, rig_fov=args.rig_fov, rig_shape=args.rig_shape,
        rig_up=args.rig_up, views=args.views, max_side=args.max_side,
    )
    announce = None if args.quiet else (lambda b: announce_build(b, cfg.steps))
    ckpt = build(args.ply, args.data, args.output, cfg, progress=not args.quiet,
                 allow_outside_paths=args.allow_outside_paths, on_start=announce, cameras=args.cameras)
    if not args.quiet:
        r0, r1 = ckpt.rate_range()
        ps = ckpt.rd["psnr"]
        unit = getattr(ckpt, "unit_label", "Gaussians")
        print(f"wrote {args.output}: {len(ckpt):,} {unit}, {ckpt.num_levels} levels, rates "
              f"{format_bytes(r0)} .. {format_bytes(r1)} (MB = 10^6 bytes), {psnr_label(ckpt.meta)} "
              f"{min(ps):.2f}-{max(ps):.2f} dB, "
              f"built in {ckpt.meta.get('total_seconds', 0):.1f} s", file=sys.stderr)
    warn_if_falling(ckpt, args.output)
    return 0


def warn_if_falling(ckpt, out) -> None:
    """Say (one warning line) when higher levels are worse on the held-back views, and what to ship instead."""
    import warnings

    from ..rave.selection import falling_levels, format_bytes, pareto_levels

    rd = getattr(ckpt, "rd", None) or {}
    if len(rd.get("count", [])) < 2 or "psnr" not in rd:
        return
    falls = falling_levels(ckpt.level_sizes, rd)
    if not falls:
        return
    front = pareto_levels(ckpt.level_sizes, rd)
    best = front[-1]
    unit = getattr(ckpt, "unit_label", "Gaussians")
    where = ", ".join(f"G_{l}->G_{l + 1} {a:.2f}->{b:.2f} dB" for l, a, b in falls)
    warnings.warn(
        f"{out}: the RD curve on the held-back views falls as the rate rises ({where}): the model's extra {unit} "
        f"hurt unseen views (floaters, view-specific {unit}). Pareto front: levels {', '.join(map(str, front))}; "
        f"the best picture is G_{best} at {format_bytes(ckpt.level_rates[best - 1])} "
        f"(rave encode --rate {ckpt.level_rates[best - 1]})",
        stacklevel=2,
    )
