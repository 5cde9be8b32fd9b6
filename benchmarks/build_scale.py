"""`rave build` at scale: seconds per stage and peak RSS for scenes of N Gaussians, without a dataset.

Usage:  python benchmarks/build_scale.py [--sizes 100000 300000] [--repeats 1] [--steps 50] [--rig-views 16] [--rig-size 128]
                                         [--json out.json] [--keep DIR]

The scene of N Gaussians is trained_scenes/demo_objects.ply (33,097 Gaussians, SH2) replicated ceil(N / 33,097)
times and cut to N at random: each copy's means are jittered by N(0, 0.5 * its own mean scale), its scales
shrunk by k^(1/3) (k copies fill about the volume of one, as in a denser capture of the same objects), and
opacities and colours kept. The build is self-distillation (no dataset) run as a subprocess of this script:
`rave build scene.ply -o out.ckpt --rig-views V --rig-size S --steps T --quiet`. Seconds per stage come from
the .ckpt's meta["stages"] (`rave info --json`), peak RSS (ru_maxrss) and CPU time from a small
wrapper process that runs only the build. Then, per stage, a line
a + b*N through the two largest sizes is extrapolated to 1M (labelled as such) unless 1M was run. Prints markdown with the
machine and its load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _machine import machine_line

SOURCE = ROOT / "trained_scenes" / "demo_objects.ply"
STAGES = ("rig", "levels", "finetune", "ranking", "rates", "rd")


def make_scene(n: int, path: Path, seed: int = 0) -> None:
    """demo_objects replicated and jittered to exactly ``n`` Gaussians, written as a PLY (see the docstring)."""
    import torch

    from rave_viewer.scene.gaussians import Gaussians
    from rave_viewer.scene.ply import read_ply, write_ply

    src = read_ply(SOURCE)
    k = math.ceil(n / len(src))
    g = torch.Generator().manual_seed(seed)
    parts = []
    for i in range(k):
        c = src.map(lambda t: t.clone())
        if k > 1:
            sigma = c.scales.exp().mean(dim=1, keepdim=True) * 0.5
            c.means += torch.randn(c.means.shape, generator=g) * sigma if i else 0
            c.scales -= math.log(k) / 3
        parts.append(c)
    keys = [name for name, _ in src.items()]
    full = Gaussians(**{key: torch.cat([getattr(p, key) for p in parts]) for key in keys})
    idx = torch.randperm(len(full), generator=g)[:n].sort().values
    write_ply(full.map(lambda t: t[idx].contiguous()), path)


def make_tool_scene(n: int, path: Path, seed: int = 0) -> None:
    """:func:`make_scene` at SH degree 3, written as gsplat's exporter writes (plyfile; x y z f_dc_* f_rest_*
    opacity scale_* rot_*, no normals): the "PLY written by another tool" of issue 14. The 5 added degree-3
    coefficients per channel are small random values (the scene keeps its look, the file its full SH3 size)."""
    import numpy as np
    import torch
    from plyfile import PlyData, PlyElement

    from rave_viewer.scene.ply import read_ply

    tmp = path.with_suffix(".sh2.ply")
    make_scene(n, tmp, seed)
    g = read_ply(tmp)
    tmp.unlink()
    rng = torch.Generator().manual_seed(seed + 1)
    k3 = 15 - g.shN.shape[1]
    shN = torch.cat([g.shN, 0.02 * torch.randn(len(g), k3, 3, generator=rng)], dim=1)  # [N, 15, 3]
    cols = {"x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2]}
    cols.update({f"f_dc_{c}": g.sh0[:, 0, c] for c in range(3)})
    rest = shN.transpose(1, 2).reshape(len(g), 45)  # channel-major, as every 3DGS tool writes it
    cols.update({f"f_rest_{i}": rest[:, i] for i in range(45)})
    cols["opacity"] = g.opacities
    cols.update({f"scale_{i}": g.scales[:, i] for i in range(3)})
    cols.update({f"rot_{i}": g.quats[:, i] for i in range(4)})
    arr = np.empty(len(g), dtype=[(k, "<f4") for k in cols])
    for k, v in cols.items():
        arr[k] = v.detach().numpy().astype(np.float32)
    PlyData([PlyElement.describe(arr, "vertex")], byte_order="<").write(str(path))


# Runs the build as its own child and prints that child's rusage. ru_maxrss of a child forked from this (big:
# torch, scenes) process would start at this process's RSS (Linux keeps the pre-exec high-water mark), so the
# build is forked from this small wrapper instead.
WRAPPER = """import json, resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.call(sys.argv[2:])
u = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"rc": rc, "wall_s": time.perf_counter() - t0, "cpu_s": u.ru_utime + u.ru_stime,
           "maxrss_kib": u.ru_maxrss}, open(sys.argv[1], "w"))
"""


def run_build(ply: Path, out: Path, args) -> dict:
    """One `rave build` subprocess: wall seconds, its own peak RSS (MiB) and the checkpoint's meta."""
    effort = [] if args.defaults else ["--rig-views", str(args.rig_views), "--rig-size", str(args.rig_size),
                                       "--steps", str(args.steps)]
    cmd = [str(Path(sys.executable).parent / "rave"), "build", str(ply), "-o", str(out), *effort,
           "--quiet", "--force"]  # fmt: skip
    usage_file = out.with_suffix(".usage.json")
    subprocess.run([sys.executable, "-S", "-c", WRAPPER, str(usage_file), *cmd], cwd=ROOT, check=True)
    usage = json.loads(usage_file.read_text())
    if usage["rc"]:
        raise RuntimeError(f"{' '.join(cmd)} exited with {usage['rc']}")
    info = subprocess.run([str(Path(sys.executable).parent / "rave"), "info", "--json", str(out)], cwd=ROOT,
                          check=True, capture_output=True, text=True)  # fmt: skip
    meta = json.loads(info.stdout)
    return {"wall_s": round(usage["wall_s"], 1), "cpu_s": round(usage["cpu_s"], 1),
            "peak_rss_mib": round(usage["maxrss_kib"] / 1024, 1),
            "stages": {k: v["seconds"] for k, v in meta["stages"].items()},
            "renders": {k: v["renders"] for k, v in meta["stages"].items()}, "total_seconds": meta.get("total_seconds"),
            "effort": {k: (meta.get("config") or {}).get(k) for k in ("views", "max_side", "steps")},
            "cmd": " ".join(["rave", *cmd[1:]])}  # fmt: skip


def fit(ns: list[int], ys: list[float], n: int) -> float:
    """The line through the last two points, at ``n``."""
    (n0, n1), (y0, y1) = ns[-2:], ys[-2:]
    return y0 + (y1 - y0) / (n1 - n0) * (n - n0)


def best(runs: list[dict]) -> dict:
    """One row from repeated builds of one size: per-stage and total minimum (least disturbed), peak RSS max."""
    stages = {k: min(r["stages"].get(k, 0.0) for r in runs) for k in runs[0]["stages"]}
    return {"n": runs[0]["n"], "stages": stages, "total_seconds": min(r["total_seconds"] or 0 for r in runs),
            "wall_s": min(r["wall_s"] for r in runs), "wall_all": [r["wall_s"] for r in runs],
            "cpu_s": min(r["cpu_s"] for r in runs), "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "renders": runs[0]["renders"], "cmd": runs[0]["cmd"]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000])
    ap.add_argument("--repeats", type=int, default=1, help="builds per size (the table shows per-stage minima)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rig-views", type=int, default=16)
    ap.add_argument("--rig-size", type=int, default=128)
    ap.add_argument("--defaults", action="store_true",
                    help="build at rave build's own defaults (views, side, steps by scene size; ignores the three "
                         "options above)")
    ap.add_argument("--json", type=Path, help="write every build's numbers here (rewritten after each build)")
    ap.add_argument("--keep", type=Path, help="write scenes and checkpoints here (default: a temporary folder)")
    ap.add_argument("--layout", choices=("ours", "gsplat-sh3"), default="ours",
                    help="scene file: ours (write_ply, SH2 as demo_objects) or gsplat-sh3 (SH degree 3, gsplat's "
                         "property order, no normals, written with plyfile)")
    ap.add_argument("--make-scene", nargs=2, metavar=("N", "PLY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_scene:
        (make_tool_scene if args.layout == "gsplat-sh3" else make_scene)(int(args.make_scene[0]),
                                                                         Path(args.make_scene[1]))
        return

    line_before = machine_line()
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for rep in range(args.repeats):  # all sizes once, then again: load changes hit every size alike
            for n in sorted(args.sizes):
                ply = work / (f"scene_{n}.ply" if args.layout == "ours" else f"scene_{n}_{args.layout}.ply")
                if not ply.exists():
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, __file__, "--make-scene", str(n), str(ply), "--layout",
                                    args.layout], check=True)  # fmt: skip
                    print(f"made {ply.name} ({n:,} Gaussians) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
                r = run_build(ply, ply.with_suffix(".ckpt"), args)
                r.update(n=n, repeat=rep, load_after=os.getloadavg()[0])
                runs.append(r)
                print(f"{n:,} (run {rep + 1}): {r['wall_s']} s wall, {r['cpu_s']} s CPU, {r['peak_rss_mib']} MiB peak "
                      f"RSS, stages {r['stages']}", file=sys.stderr)  # fmt: skip
                if args.json:
                    args.json.write_text(json.dumps({"machine_before": line_before, "settings": vars(args),
                                                     "runs": runs}, indent=1, default=str))  # fmt: skip
    rows = [best([r for r in runs if r["n"] == n]) for n in sorted(args.sizes)]

    stages = [s for s in STAGES if any(s in r["stages"] for r in rows)]
    stages += [s for r in rows for s in r["stages"] if s not in stages]
    effort = ("the defaults (views, side, steps by scene size)" if args.defaults else
              f"--rig-views {args.rig_views} --rig-size {args.rig_size} --steps {args.steps}")
    print(f"`rave build` without a dataset: {effort}; scene: demo_objects replicated + jittered to N; {args.repeats} build(s) per size, "
          "stage seconds = minimum over them\n")
    print(f"Machine before: {line_before}\n\nMachine after: {machine_line()}\n")
    head = ["N"] + [f"{s} (s)" for s in stages] + ["total (s)", "wall (s)", "CPU user+sys (s)", "peak RSS (MiB)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def cells(vals: dict) -> list[str]:
        return [f"{vals[s]:.1f}" for s in stages] + [f"{vals[k]:.1f}" for k in ("total", "wall", "cpu")] + [
            f"{vals['rss']:.0f}"]

    vals = [{**{s: r["stages"].get(s, 0.0) for s in stages}, "total": r["total_seconds"], "wall": r["wall_s"],
             "cpu": r["cpu_s"], "rss": r["peak_rss_mib"]} for r in rows]  # fmt: skip
    for r, v in zip(rows, vals):
        print("| " + " | ".join([f"{r['n']:,}"] + cells(v)) + " |")
    for a, b, va, vb in zip(rows, rows[1:], vals, vals[1:]):
        ratio = {k: vb[k] / max(va[k], 1e-9) for k in va}
        print("| " + " | ".join([f"ratio {b['n']:,} / {a['n']:,} (N x{b['n'] / a['n']:g})"]
                                + [f"{ratio[s]:.2f}" for s in stages]
                                + [f"{ratio[k]:.2f}" for k in ("total", "wall", "cpu", "rss")]) + " |")  # fmt: skip
    if len(rows) >= 2 and 1_000_000 not in args.sizes:
        ns = [r["n"] for r in rows]
        ext = {k: fit(ns, [v[k] for v in vals], 1_000_000) for k in vals[0]}
        print("| " + " | ".join(["1,000,000 (extrapolated: line through the two largest)"] + cells(ext)) + " |")
    print("\nwall per build: " + "; ".join(f"{r['n']:,}: {r['wall_all']}" for r in rows))
    print("renders per stage: " + "; ".join(f"{r['n']:,}: {r['renders']}" for r in rows))
    print(f"command: {rows[0]['cmd'] if rows else ''}")


if __name__ == "__main__":
    main()
