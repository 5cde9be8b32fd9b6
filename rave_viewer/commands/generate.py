"""`rave generate`: write a seeded procedural test scene (images, transforms, points3d.ply) to train on."""

from __future__ import annotations

import argparse
import json

from ..errors import RaveError

HELP = "render a seeded procedural scene into a NeRF-style dataset (images/, transforms_*.json, points3d.ply)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..scene.procedural import PRESETS

    p.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created; must be empty unless --overwrite)")
    p.add_argument("--preset", choices=PRESETS, default="objects",
                   help="objects: textured spheres and boxes; ground: tiled ground, solids, poles, wire ring, fence")
    p.add_argument("--views", type=int, default=64, help="number of views; every 8th (0, 8, ...) is a test view")
    p.add_argument("--size", type=int, default=128, help="image width and height in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed fixing the scene, cameras and pixel jitter")
    p.add_argument("--fov", type=float, default=50.0, help="horizontal field of view in degrees")
    p.add_argument("--radius", type=float, default=None, help="camera distance from the scene centre (preset default)")
    p.add_argument("--spp", type=int, default=4, help="jittered samples per pixel (anti-aliasing)")
    p.add_argument("--points", type=int, default=10000, help="initial points sampled on surfaces for points3d.ply")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")


def run(args: argparse.Namespace) -> int:
    from ..scene.procedural import generate_scene

    if args.size < 16:
        raise RaveError(f"--size must be at least 16, got {args.size}")
    out = generate_scene(args.out_dir, preset=args.preset, n_views=args.views, width=args.size, height=args.size,
                         seed=args.seed, fov_deg=args.fov, radius=args.radius, samples_per_pixel=args.spp,
                         n_points=args.points, overwrite=args.overwrite)
    recipe = json.loads((out / "scene.json").read_text())
    print(f"wrote {out}: {recipe['n_views']} views {recipe['width']}x{recipe['height']} "
          f"({recipe['n_train']} train, {recipe['n_test']} test), {recipe['n_points']} points in points3d.ply")
    return 0
