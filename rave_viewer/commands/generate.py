"""`rave generate`: write a seeded procedural test scene (images, transforms, points3d.ply) to train on."""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
from pathlib import Path

from ..errors import RaveError, shown
from ._args import MAX_SEED, MAX_SIZE, MAX_VIEWS, add_force, float_in, int_in

HELP = "render a seeded procedural scene into a NeRF-style dataset (images/, transforms_*.json, points3d.ply)"

GENERATOR = "rave_viewer.scene.procedural"  # the "generator" entry of the scene.json it writes


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..scene.procedural import CAPTURES, HARD_CAPTURE, PRESETS

    hard = HARD_CAPTURE
    p.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created; must be empty unless --overwrite)")
    p.add_argument("--preset", choices=PRESETS, default="objects",
                   help="objects: textured spheres and boxes; ground: tiled ground, solids, poles, wire ring, fence")
    p.add_argument("--capture", choices=tuple(CAPTURES), default="clean",
                   help="clean: ideal pinhole photos; hard: like a phone capture (lens distortion "
                        f"{','.join(f'{v:g}' for v in hard['distortion'])}, noise {hard['noise']:g}, "
                        f"{hard['n_views']} views, fov {hard['fov_deg']:g}, no point cloud); other flags override it")
    p.add_argument("--views", type=int_in(2, MAX_VIEWS), default=64, action=_Given,
                   help=f"number of views, 2..{MAX_VIEWS} (default 64); every 8th (0, 8, ...) is a test view")
    p.add_argument("--size", type=int_in(16, MAX_SIZE), default=128,
                   help=f"image width and height in pixels, 16..{MAX_SIZE}")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0,
                   help=f"seed fixing the scene, cameras and pixel jitter, 0..{MAX_SEED}")
    p.add_argument("--fov", type=float_in(1.0, 150.0), default=50.0, action=_Given,
                   help="horizontal field of view in degrees, 1..150 (default 50)")
    p.add_argument("--radius", type=float_in(0.0, 1e6, lo_open=True), default=None,
                   help="camera distance from the scene centre, > 0 and <= 1e6 (default: the preset's)")
    p.add_argument("--spp", type=int_in(1, 256), default=4, help="jittered samples per pixel (anti-aliasing), 1..256")
    p.add_argument("--points", type=int_in(0, 10_000_000), default=10000, action=_Given,
                   help="initial points sampled on surfaces for points3d.ply, 0..10000000 (default 10000; "
                        "0: no points3d.ply)")
    p.add_argument("--distortion", type=_coefficients, default=None, metavar="K1,K2,P1,P2[,K3]", action=_Given,
                   help="render through a lens with this OpenCV distortion (written to the transforms files "
                        "and COLMAP cameras), e.g. --distortion=-0.12,0.03,0.002,-0.0015 (with '=' when it starts "
                        "with a minus sign); 0,0,0,0 for none")
    p.add_argument("--noise", type=float_in(0.0, 1.0), default=0.0, metavar="SIGMA", action=_Given,
                   help="Gaussian photo noise, standard deviation in 0..1 of the pixel range (default 0)")
    p.add_argument("--colmap", action="store_true",
                   help="also write the cameras, poses and points as a COLMAP model in sparse/0/")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty OUT_DIR written by `rave generate` (any other folder also needs --force)")
    add_force(p)


class _Given(argparse._StoreAction):
    """A store action that also records the flag as given (``args.given``), so --capture fills in the rest."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


def _coefficients(text: str) -> tuple[float, ...]:
    """argparse ``type=``: 4 or 5 finite comma-separated numbers (OpenCV's k1,k2,p1,p2[,k3])."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except (TypeError, ValueError, OverflowError):
        vals = ()
    if len(vals) not in (4, 5) or not all(math.isfinite(v) and abs(v) <= 10.0 for v in vals):
        raise argparse.ArgumentTypeError(
            f"must be 4 or 5 comma-separated numbers within -10..10 (k1,k2,p1,p2[,k3]), got {shown(text, quote=False)}")
    return vals


def _is_generated(folder: Path) -> bool:
    """Whether ``folder`` holds a dataset written by `rave generate` (its scene.json says so)."""
    try:
        return json.loads((folder / "scene.json").read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def check_out_dir(out: Path, overwrite: bool, force: bool) -> None:
    """Refuse an OUT_DIR whose replacement would lose something, before any rendering."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    except OSError as e:
        raise RaveError(f"OUT_DIR: cannot use this path: {e.strerror or e}", out) from None
    if stat.S_ISLNK(st.st_mode) and not force:
        raise RaveError(f"OUT_DIR is a symbolic link (to {os.readlink(out)}); refusing to replace it "
                        "(--force replaces the link, never its target)", out)
    if not out.is_dir():
        raise RaveError("OUT_DIR exists and is not a directory", out)
    try:
        here = Path.cwd().resolve()
        if out.resolve() == here or out.resolve() in here.parents:
            raise RaveError("OUT_DIR is the current folder or one above it; choose a new folder", out)
    except OSError:
        pass
    if not stat.S_ISLNK(st.st_mode) and not st.st_mode & 0o222 and not force:
        raise RaveError("OUT_DIR is read-only; refusing to replace it (--force does)", out)
    if overwrite and not force and any(out.iterdir()) and not _is_generated(out):
        raise RaveError("OUT_DIR is not a dataset written by `rave generate` (no scene.json from it); "
                        "--overwrite replaces only those, add --force to replace this folder", out)


def run(args: argparse.Namespace) -> int:
    from ..scene.procedural import CAPTURES, generate_scene

    check_out_dir(Path(args.out_dir), args.overwrite, args.force)
    flags = {"n_views": "views", "fov_deg": "fov", "n_points": "points", "distortion": "distortion", "noise": "noise"}
    given = getattr(args, "given", set())
    opts = {key: getattr(args, dest) for key, dest in flags.items()}  # the flags (or their defaults) ...
    # ... unless the capture preset sets it and the flag was not given
    opts.update({k: v for k, v in CAPTURES[args.capture].items() if flags.get(k, k) not in given})
    out = generate_scene(args.out_dir, preset=args.preset, width=args.size, height=args.size, seed=args.seed,
                         radius=args.radius, samples_per_pixel=args.spp, overwrite=args.overwrite,
                         colmap=args.colmap, **opts)
    recipe = json.loads((out / "scene.json").read_text())
    points = f"{recipe['n_points']} points in points3d.ply" if recipe["point_cloud"] else "no point cloud"
    extra = "".join([f", lens {' '.join(f'{k}={v:g}' for k, v in recipe['distortion'].items() if v)}"
                     if recipe["distortion"] else "", f", noise {recipe['noise']:g}" if recipe["noise"] else "",
                     ", COLMAP model in sparse/0" if recipe["colmap"] else ""])
    print(f"wrote {out}: {recipe['n_views']} views {recipe['width']}x{recipe['height']} "
          f"({recipe['n_train']} train, {recipe['n_test']} test), {points}{extra}")
    return 0
