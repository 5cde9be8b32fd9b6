"""Preliminary RD of the two backbones through the same RAVE core: nested levels + context ranking, no codec.

Usage (after ``backbones_train.py --save-dir DIR``)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/backbones_levels.py DIR [--levels 8] [--score-every 3]

For DIR/scaffold.scaffold (ScaffoldUnits, unit = anchor) and DIR/3dgs.ply (GaussianUnits, unit = Gaussian) on
the dataset DIR/objects: 8 nested levels (coarsest 10 %, iterative, the authors' way), context-aware ranking,
scored on every ``--score-every``-th training view; then the test PSNR of each level and the level's size.
No fine-tuning and no entropy coding: sizes are raw parameter bytes, float32 and "as the authors store
anchors" (8-bit features, fp16 positions/offsets/scalings; for 3DGS fp16 everything), MLP weights (float32)
counted once. BD-rate / BD-PSNR of Scaffold against 3DGS on those curves. A proxy for the real RD curves of
``rave build`` (which need the codec wiring of issue 17), labelled as such.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--coarsest", type=float, default=0.1)
    ap.add_argument("--score-every", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from rave_viewer import metrics
    from rave_viewer.eval.bjontegaard import bd_psnr, bd_rate
    from rave_viewer.rave.levels import build_levels, level_fractions, level_sizes
    from rave_viewer.rave.ranking import rank
    from rave_viewer.rave.units import GaussianUnits
    from rave_viewer.scaffold import io
    from rave_viewer.scaffold.units import ScaffoldUnits
    from rave_viewer.scene.datasets import load_dataset
    from rave_viewer.scene.ply import read_ply

    torch.set_num_threads(1)
    d = Path(args.dir)
    ds = load_dataset(d / "objects")
    score_cams = ds.train[list(range(0, len(ds.train), args.score_every))]
    start = machine()
    sc = io.load(d / "scaffold.scaffold")
    g = read_ply(d / "3dgs.ply")
    mlp_bytes = sum(t.numel() for t in sc.mlp_tensors().values()) * 4
    k, F = sc.spec.n_offsets, sc.spec.feat_dim
    per_unit = {
        "scaffold": {"float32": (3 + 3 * k + F + 6) * 4, "stored": F * 1 + (3 + 3 * k + 6) * 2, "once": mlp_bytes},
        "3dgs": {"float32": (3 + 4 + 3 + 1 + 3 * (g.shN.shape[1] + 1)) * 4,
                 "stored": (3 + 4 + 3 + 1 + 3 * (g.shN.shape[1] + 1)) * 2, "once": 0},
    }
    curves = {}
    for name, units in (("scaffold", ScaffoldUnits(sc, backend="cpu")), ("3dgs", GaussianUnits(g, backend="cpu"))):
        t0 = time.perf_counter()
        sizes = level_sizes(units.num_units, level_fractions(args.levels, args.coarsest))
        lv = build_levels(units, score_cams, sizes, progress=True)
        ordered = units.select(lv.order)
        rk = rank(ordered, score_cams, sizes, progress=True)
        ranked = ordered.select(rk.perm)
        t_score = time.perf_counter() - t0
        rows = []
        with torch.no_grad():
            for s in sizes:
                img = torch.cat([ranked.render(ds.test[i], s).clamp(0, 1) for i in range(len(ds.test))])
                pu = per_unit[name]
                rows.append({"units": s, "psnr": metrics.mean(metrics.psnr(img, ds.test.images)),
                             "float32_bytes": s * pu["float32"] + pu["once"], "stored_bytes": s * pu["stored"] + pu["once"]})
        curves[name] = {"rows": rows, "score_s": round(t_score, 1), "renders": units.renders}
        print(json.dumps({name: curves[name]}), flush=True)
    end = machine()
    out = {"machine_start": start, "machine_end": end, "args": vars(args), "curves": curves}
    for kind in ("float32_bytes", "stored_bytes"):
        a, b = curves["3dgs"]["rows"], curves["scaffold"]["rows"]
        try:
            out[f"bd_rate_{kind}"] = bd_rate([r[kind] for r in a], [r["psnr"] for r in a],
                                             [r[kind] for r in b], [r["psnr"] for r in b])
        except Exception as e:  # no PSNR overlap
            out[f"bd_rate_{kind}"] = f"n/a ({e})"
        out[f"bd_psnr_{kind}"] = bd_psnr([r[kind] for r in a], [r["psnr"] for r in a],
                                         [r[kind] for r in b], [r["psnr"] for r in b])
    print(f"\n{len(score_cams)} scoring views, {len(ds.test)} test views at {ds.test.width}x{ds.test.height}; "
          f"load {start['load_average_1min']} -> {end['load_average_1min']}\n")
    print("| backbone | level | units | test PSNR (dB) | float32 MB | stored MB (8-bit feat / fp16) |")
    print("|---|---|---|---|---|---|")
    for name, c in curves.items():
        for i, r in enumerate(c["rows"]):
            print(f"| {name} | {i + 1} | {r['units']:,} | {r['psnr']:.2f} | {r['float32_bytes'] / 1e6:.3f} | "
                  f"{r['stored_bytes'] / 1e6:.3f} |")
    for kind in ("float32_bytes", "stored_bytes"):
        v = out[f"bd_rate_{kind}"]
        print(f"BD-rate Scaffold vs 3DGS ({kind}): " + (f"{v:+.1f} %" if isinstance(v, float) else v)
              + f", BD-PSNR {out[f'bd_psnr_{kind}']:+.2f} dB")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
