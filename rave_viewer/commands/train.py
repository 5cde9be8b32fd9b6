"""``rave train``: train a standard 3DGS model on a COLMAP or transforms.json dataset folder."""

from __future__ import annotations

import argparse
import sys

from ..train.config import MAX_SEED, MAX_STEPS, TrainConfig
from ._args import add_force, dataset_files, int_in

HELP = "train a standard 3DGS scene (PLY) or a Scaffold-GS model (.scaffold) on a COLMAP or transforms.json dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    max_down = TrainConfig.__dataclass_fields__["downscale"].metadata["max"]
    p.add_argument("data_dir", nargs="?", help="dataset folder (COLMAP sparse/ + images/, or transforms*.json)")
    p.add_argument("-o", "--output", help="trained model to write (.ply; .scaffold with --model scaffold); its run "
                                          "record goes to the .json beside it")
    p.add_argument("--model", choices=("3dgs", "scaffold"), default="3dgs",
                   help="what to train: 3dgs (standard Gaussians, a PLY) or scaffold (Scaffold-GS: anchors with "
                        "features and k neural Gaussians each, decoded by small MLPs; a .scaffold safetensors file) "
                        "(default 3dgs)")
    p.add_argument("--config", help="YAML file of training options (see --help-config); the flags below override it")
    p.add_argument("--steps", type=int_in(1, MAX_STEPS), metavar="N",
                   help=f"number of training steps, 1..{MAX_STEPS} (default {d.steps})")
    p.add_argument("--downscale", type=int_in(1, max_down), metavar="N",
                   help=f"train on the images at 1/N of their size, 1..{max_down} (default {d.downscale})")
    p.add_argument("--backend", choices=("auto", "cpu", "gsplat"),
                   help=f"renderer: auto (gsplat with CUDA, else cpu), cpu, gsplat (default {d.backend})")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), metavar="S",
                   help=f"random seed, 0..{MAX_SEED} (default {d.seed})")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="read dataset images and point clouds that lie outside the dataset folder (.., absolute "
                        "paths, symlinks); off by default: a shared dataset could otherwise pull any image of this "
                        "machine into your model, and into the .ckpt `rave build` makes of it, which you might "
                        "then publish")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing but errors and warnings (no settings line, progress bar or summary)")
    add_force(p)
    p.add_argument("--help-config", action="store_true",
                   help="print every training option with its default and meaning (as YAML) and exit")


def _backbone(args: argparse.Namespace):
    """(config module, run module, usage) of ``--model``: each module offers the same functions (load_config,
    describe; check_output_path, run_json_path, checkpoint_path, train_folder)."""
    if getattr(args, "model", "3dgs") == "scaffold":
        from ..scaffold import config
        from ..scaffold import train as run_mod

        return config, run_mod, "--model scaffold -o scene.scaffold"
    from ..train import config
    from ..train import run as run_mod

    return config, run_mod, "-o scene.ply"


def check_outputs(args: argparse.Namespace, run_mod) -> None:
    """Refuse, before loading anything, an output of the wrong file type, or outputs (the model, its run JSON,
    the Ctrl-C checkpoint) that would replace an input (the dataset's own files, the config) or a
    symlink/special/read-only file. ``run_mod``: the backbone's run module (see :func:`_backbone`)."""
    from ..fileio import check_output

    run_mod.check_output_path(args.output, force=args.force)
    inputs = [*dataset_files(args.data_dir), args.config]
    for out, flag in ((args.output, "-o/--output"),
                      (run_mod.run_json_path(args.output), "the run record of -o/--output"),
                      (run_mod.checkpoint_path(args.output), "the Ctrl-C checkpoint of -o/--output")):
        check_output(out, *inputs, force=args.force, flag=flag)


def run(args: argparse.Namespace) -> int:
    from ..errors import RaveError

    config, run_mod, usage = _backbone(args)
    if args.help_config:
        sys.stdout.write(config.describe())
        return 0
    if not args.data_dir or not args.output:
        raise RaveError(f"usage: rave train DATA_DIR {usage} [--config cfg.yaml] [--steps N] "
                        "[--backend auto|cpu|gsplat] [--seed S]")
    check_outputs(args, run_mod)
    cfg = config.load_config(args.config)
    overrides = {k: v for k, v in (("steps", args.steps), ("backend", args.backend), ("seed", args.seed),
                                   ("downscale", args.downscale)) if v is not None}
    if overrides:
        cfg = cfg.replace(**overrides)
    result, written = run_mod.train_folder(args.data_dir, args.output, cfg, config_file=args.config,
                                           progress=not args.quiet, force=args.force,
                                           allow_outside_paths=args.allow_outside_paths)
    if result.interrupted:
        print(f"interrupted at step {result.steps_done}/{cfg.steps}: checkpoint written to {written}",
              file=sys.stderr)
        return 130
    if not args.quiet:
        m = result.metrics
        test = "" if m["test_psnr"] is None else f", test PSNR {m['test_psnr']:.2f} dB SSIM {m['test_ssim']:.4f}"
        print(f"wrote {written} ({_units(result)}, train PSNR {m['train_psnr']:.2f} dB{test}, "
              f"{result.wall_time_s:.0f} s on {result.backend})")
    return 0


def _units(result) -> str:
    """What a trained model consists of, for the summary line: Gaussians (3DGS) or anchors (Scaffold-GS)."""
    if hasattr(result, "gaussians"):
        return f"{len(result.gaussians)} Gaussians"
    return f"{len(result.model)} anchors x {result.model.spec.n_offsets} neural Gaussians"
