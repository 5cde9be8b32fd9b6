"""Regenerate the bundled demo scenes: recipe YAML -> procedural dataset -> trained PLY + run JSON.

Usage (from the repository root)::

    python -m rave_viewer.train.demo assets/demo_objects.yaml assets/demo_ground.yaml -o trained_scenes/

Each recipe (see ``assets/README.md``) holds ``name``, a ``scene:`` section (arguments of
:func:`rave_viewer.scene.procedural.generate_scene`) and a ``train:`` section (:class:`TrainConfig` fields).
The dataset is generated deterministically into ``--data-root`` (default ``out/datasets/<name>``, git-ignored)
and the model is written to ``<output>/<name>.ply`` with ``<name>.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RaveError, guarded
from .config import TrainConfig, from_dict, read_yaml

#: Recipe ``scene:`` keys -> (type, required); the arguments of ``generate_scene``.
SCENE_KEYS: dict[str, tuple[type, bool]] = {
    "preset": (str, True), "seed": (int, True), "n_views": (int, True), "width": (int, True),
    "height": (int, True), "fov_deg": (float, False), "radius": (float, False),
    "samples_per_pixel": (int, False), "n_points": (int, False),
}


@dataclass
class Recipe:
    """A demo scene: its name, generator parameters and training config."""

    path: Path
    name: str
    description: str
    scene: dict[str, Any]
    train: TrainConfig


def load_recipe(path: str | Path) -> Recipe:
    """Parse and strictly check a recipe file (unknown keys / wrong types raise RaveError naming file and key)."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise RaveError("a recipe must be a mapping with keys name, scene, train", path)
    for key in data:
        if key not in ("name", "description", "scene", "train"):
            raise RaveError(f"unknown recipe key '{key}' (expected name, description, scene, train)", path)
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise RaveError("recipe key 'name' must be a non-empty file name", path)
    desc = data.get("description", "")
    if not isinstance(desc, str):
        raise RaveError("recipe key 'description' must be a string", path)
    scene = data.get("scene")
    if not isinstance(scene, dict):
        raise RaveError("recipe key 'scene' must be a mapping of generator parameters", path)
    for key, value in scene.items():
        if key not in SCENE_KEYS:
            raise RaveError(f"unknown scene key '{key}' (expected {', '.join(SCENE_KEYS)})", path)
        typ = SCENE_KEYS[key][0]
        ok = isinstance(value, typ) or (typ is float and isinstance(value, int))
        if isinstance(value, bool) or not ok:
            expected = {int: "an integer", float: "a number", str: "a string"}[typ]
            raise RaveError(f"scene key '{key}' must be {expected}, got {type(value).__name__} ({value!r})",
                            path)
    missing = [k for k, (_, req) in SCENE_KEYS.items() if req and k not in scene]
    if missing:
        raise RaveError(f"scene key(s) missing: {', '.join(missing)}", path)
    train = data.get("train") or {}
    return Recipe(path, name, desc, dict(scene), from_dict(train, path))


def ensure_dataset(recipe: Recipe, data_root: Path, progress: bool = True) -> Path:
    """The recipe's dataset folder, (re)generated unless an identical one is already there."""
    from ..scene.procedural import generate_scene

    out = data_root / recipe.name
    stamp = out / "recipe_scene.json"
    if stamp.exists():
        try:
            if json.loads(stamp.read_text()) == recipe.scene:
                return out
        except (OSError, ValueError):
            pass
    generate_scene(out, overwrite=True, progress=progress, **recipe.scene)
    from ..fileio import atomic_write_text

    atomic_write_text(stamp, json.dumps(recipe.scene, sort_keys=True) + "\n")
    return out


def build_demo(recipe: Recipe, out_dir: Path, data_root: Path, *, steps: int | None = None,
               progress: bool = True):
    """Generate the dataset, train and write ``out_dir/<name>.ply`` + ``.json``; returns (result, ply path)."""
    from .run import train_folder

    cfg = recipe.train if steps is None else recipe.train.replace(steps=steps)
    data = ensure_dataset(recipe, data_root, progress)
    # the run record also names the recipe, its scene and the command that regenerates it
    record = {"recipe": recipe.name, "scene": recipe.scene,
              "regenerate": f"python -m rave_viewer.train.demo {recipe.path} -o {out_dir}/"}
    return train_folder(data, out_dir / f"{recipe.name}.ply", cfg, config_file=recipe.path, progress=progress,
                        record=record)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rave_viewer.train.demo", description=__doc__.splitlines()[0])
    p.add_argument("recipes", nargs="+", help="recipe YAML files (assets/demo_*.yaml)")
    p.add_argument("-o", "--output", default="trained_scenes", help="folder for <name>.ply + <name>.json")
    p.add_argument("--data-root", default="out/datasets", help="where the generated datasets go (git-ignored)")
    p.add_argument("--steps", type=int, help="override the recipes' step count (quick checks)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return guarded(_run, p.parse_args(argv))


def _run(args) -> int:
    recipes = [load_recipe(r) for r in args.recipes]  # check them all before any work
    for r in recipes:
        result, ply = build_demo(r, Path(args.output), Path(args.data_root), steps=args.steps,
                                 progress=not args.quiet)
        if result.interrupted:
            print(f"interrupted at step {result.steps_done}: checkpoint written to {ply}", file=sys.stderr)
            return 130
        m = result.metrics
        print(f"{r.name}: wrote {ply} ({len(result.gaussians)} Gaussians, test PSNR {m['test_psnr']:.2f} dB, "
              f"SSIM {m['test_ssim']:.4f}, {result.wall_time_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
