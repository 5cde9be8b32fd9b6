"""Scaffold-GS vs our 3DGS at equal training steps: test PSNR, training cost and model size split (issue 17).

Usage (from the repository root; ~10-20 min on a loaded 2-core CPU at the defaults)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/backbones_train.py [--size 64] [--steps 1500]

The data is demo_objects' procedural scene (preset objects, seed 0, 96 views, 10,000 surface points) rendered at
``--size`` pixels. Three runs with the same seed and steps on the CPU backend: Scaffold-GS with its defaults
(rave_viewer.scaffold.config), 3DGS with the demo_objects recipe's training settings (SH degree 2, 20,000 sky
points, grow_grad2d 0.0008) and 3DGS with the same settings but no sky points (the init Scaffold gets).
Prints a markdown table and writes the figures as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402


def scaffold_sizes(model) -> dict[str, int]:
    """Bytes (float32) of each part of a Scaffold model."""
    p = model.params
    mlp = sum(t.numel() for t in model.mlp_tensors().values()) * 4
    return {"positions": p["anchor"].numel() * 4, "offsets": p["offset"].numel() * 4,
            "features": p["anchor_feat"].numel() * 4, "scalings": p["scaling"].numel() * 4, "mlps": mlp}


def gaussian_sizes(g) -> dict[str, int]:
    return {"positions": g.means.numel() * 4, "rotations+scales+opacity": (g.quats.numel() + g.scales.numel()
                                                                            + g.opacities.numel()) * 4,
            "colour (SH)": (g.sh0.numel() + g.shN.numel()) * 4}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--views", type=int, default=96)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--only", choices=("scaffold", "3dgs", "3dgs-nosky"), action="append")
    ap.add_argument("--save-dir", default=None, help="keep the trained models (NAME.scaffold / NAME.ply) and the "
                    "dataset here")
    args = ap.parse_args()

    from rave_viewer.scaffold.config import ScaffoldConfig
    from rave_viewer.scaffold.io import to_bytes
    from rave_viewer.scaffold.train import train as train_scaffold
    from rave_viewer.scene.datasets import load_dataset
    from rave_viewer.scene.procedural import generate_scene
    from rave_viewer.train.config import TrainConfig
    from rave_viewer.train.trainer import train as train_3dgs

    torch.set_num_threads(1)
    start = machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(args.save_dir) if args.save_dir else None
        data = generate_scene((keep or Path(tmp)) / "objects", overwrite=True, preset="objects", seed=0, n_views=args.views, width=args.size,
                              height=args.size, n_points=10_000, progress=False)
        ds = load_dataset(data)
        runs = args.only or ["scaffold", "3dgs", "3dgs-nosky"]
        for name in runs:
            t0 = time.perf_counter()
            if name == "scaffold":
                r = train_scaffold(ds, ScaffoldConfig(steps=args.steps, backend="cpu", eval_every=args.eval_every),
                                   progress=True)
                sizes = scaffold_sizes(r.model)
                count = f"{len(r.model):,} anchors ({len(r.model) * r.model.spec.n_offsets:,} neural Gaussians max)"
                file_bytes = len(to_bytes(r.model))
                extra = {"initial_anchors": r.num_initial, "grown": r.grown, "pruned": r.pruned,
                         "voxel_size": r.model.spec.voxel_size}
                if keep:
                    from rave_viewer.scaffold.io import save

                    save(r.model, keep / f"{name}.scaffold")
            else:
                cfg = TrainConfig(steps=args.steps, backend="cpu", eval_every=args.eval_every, sh_degree=2, init="points",
                                  init_sky_points=20_000 if name == "3dgs" else 0, init_sky_radius=3.0,
                                  grow_grad2d=0.0008)
                r = train_3dgs(ds, cfg, progress=True)
                sizes = gaussian_sizes(r.gaussians)
                count = f"{len(r.gaussians):,} Gaussians"
                file_bytes = sum(sizes.values())
                extra = {"initial_gaussians": r.num_initial}
                if keep:
                    from rave_viewer.scene.ply import write_ply

                    write_ply(r.gaussians, keep / f"{name}.ply")
            wall = time.perf_counter() - t0
            rows.append({"model": name, "steps": args.steps, "test_psnr": r.metrics["test_psnr"],
                         "test_ssim": r.metrics["test_ssim"], "init_test_psnr": r.metrics["init_test_psnr"],
                         "train_psnr": r.metrics["train_psnr"], "wall_s": round(wall, 1),
                         "cpu_s": round(r.cpu_time_s, 1), "s_per_step": round(r.wall_time_s / args.steps, 4),
                         "count": count, "float32_bytes": sum(sizes.values()), "file_bytes": file_bytes,
                         "size_split": sizes, "history": r.history, **extra})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "history"}), flush=True)
    end = machine()
    print(f"\nScene: objects seed 0, {args.views} views ({len(ds.train)} train / {len(ds.test)} test) at "
          f"{args.size}x{args.size}, {args.steps} steps, cpu backend, 1 torch thread. Machine: {start['cpu']}, "
          f"{start['cores']} cores, load {start['load_average_1min']} -> {end['load_average_1min']}.\n")
    print("| model | test PSNR (dB) | SSIM | init PSNR | s/step (wall) | CPU s | units | float32 MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['test_psnr']:.2f} | {r['test_ssim']:.4f} | {r['init_test_psnr']:.2f} | "
              f"{r['s_per_step']:.3f} | {r['cpu_s']:.0f} | {r['count']} | {r['float32_bytes'] / 1e6:.3f} |")
    print("\nSize split (float32 bytes):")
    for r in rows:
        total = r["float32_bytes"]
        print(f"- {r['model']}: " + ", ".join(f"{k} {v / 1e3:.1f} kB ({100 * v / total:.1f} %)"
                                              for k, v in r["size_split"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine_start": start, "machine_end": end, "args": vars(args),
                                               "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
