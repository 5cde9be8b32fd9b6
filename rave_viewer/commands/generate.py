"""`rave generate`: write a seeded procedural test scene (images, transforms, points3d.ply) to train on."""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path

from ..errors import RaveError
from ._args import MAX_SEED, MAX_SIZE, MAX_VIEWS, add_force, float_in, int_in

HELP = "render a seeded procedural scene into a NeRF-style dataset (images/, transforms_*.json, points3d.ply)"

GENERATOR = "rave_viewer.scene.procedural"  # the "generator" entry of the scene.json it writes


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..scene.procedural import PRESETS

    p.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created; must be empty unless --overwrite)")
    p.add_argument("--preset", choices=PRESETS, default="objects",
                   help="objects: textured spheres and boxes; ground: tiled ground, solids, poles, wire ring, fence")
    p.add_argument("--views", type=int_in(2, MAX_VIEWS), default=64,
                   help=f"number of views, 2..{MAX_VIEWS}; every 8th (0, 8, ...) is a test view")
    p.add_argument("--size", type=int_in(16, MAX_SIZE), default=128,
                   help=f"image width and height in pixels, 16..{MAX_SIZE}")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0,
                   help=f"seed fixing the scene, cameras and pixel jitter, 0..{MAX_SEED}")
    p.add_argument("--fov", type=float_in(1.0, 150.0), default=50.0,
                   help="horizontal field of view in degrees, 1..150")
    p.add_argument("--radius", type=float_in(0.0, 1e6, lo_open=True), default=None,
                   help="camera distance from the scene centre, > 0 and <= 1e6 (default: the preset's)")
    p.add_argument("--spp", type=int_in(1, 256), default=4, help="jittered samples per pixel (anti-aliasing), 1..256")
    p.add_argument("--points", type=int_in(0, 10_000_000), default=10000,
                   help="initial points sampled on surfaces for points3d.ply, 0..10000000")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty OUT_DIR written by `rave generate` (any other folder also needs --force)")
    add_force(p)


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
    from ..scene.procedural import generate_scene

    check_out_dir(Path(args.out_dir), args.overwrite, args.force)
    out = generate_scene(args.out_dir, preset=args.preset, n_views=args.views, width=args.size, height=args.size,
                         seed=args.seed, fov_deg=args.fov, radius=args.radius, samples_per_pixel=args.spp,
                         n_points=args.points, overwrite=args.overwrite)
    recipe = json.loads((out / "scene.json").read_text())
    print(f"wrote {out}: {recipe['n_views']} views {recipe['width']}x{recipe['height']} "
          f"({recipe['n_train']} train, {recipe['n_test']} test), {recipe['n_points']} points in points3d.ply")
    return 0
