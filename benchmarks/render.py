"""Render speed and memory: compiled CPU rasterizer vs the dense torch oracle, one fresh process per config.

Usage:  python benchmarks/render.py            # full table (markdown) on stdout
        python benchmarks/render.py --quick    # 10k Gaussians only
        --oracle-max-pairs P: run the dense oracle up to P pixel x Gaussian pairs, extrapolate beyond (linear)
Each config runs in its own subprocess so its peak RSS (ru_maxrss) is its own; "base" is the RSS after
imports and scene creation, so peak - base is what rendering added.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _machine import machine_line  # noqa: E402

SIZES = [10_000, 100_000, 1_000_000]
RESOLUTIONS = [256, 512]


def make_scene(n: int, seed: int = 0):
    """Random Gaussians filling a camera's view at depth 2-6, a few pixels wide at 512^2 (like a trained scene)."""
    import torch

    from rave_viewer.scene.gaussians import Gaussians

    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g) * 4 + 2
    xy = (torch.rand(n, 2, generator=g) * 2 - 1) * z[:, None] * math.tan(math.radians(30))
    return Gaussians(
        means=torch.cat([xy, z[:, None]], dim=1),
        quats=torch.randn(n, 4, generator=g),
        scales=torch.log(torch.exp(torch.rand(n, 3, generator=g) * math.log(8)) * 0.004),  # 4-32 mm
        opacities=torch.randn(n, generator=g) * 1.5,
        sh0=torch.randn(n, 1, 3, generator=g) * 0.5,
        shN=torch.randn(n, 15, 3, generator=g) * 0.1,
    )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(n: int, res: int, backend: str, backward: bool, repeats: int, threads: int) -> dict:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)

    from rave_viewer.render import render
    from rave_viewer.scene.cameras import intrinsics

    if backend == "cpu":  # build/load outside the timings
        from rave_viewer.render.cpu import load_extension

        load_extension()
    g = make_scene(n)
    vm, K = torch.eye(4)[None], intrinsics(res, res, math.radians(60))[None]
    base = rss_mb()
    out = {"n": n, "res": res, "backend": backend, "base_mb": base}
    runs = []
    for i in range(repeats + 1):  # the first run warms up (skipped when repeats == 0)
        params = g.map(lambda t: t.clone().requires_grad_(backward))
        c0, t0 = time.process_time(), time.perf_counter()
        with torch.set_grad_enabled(backward):
            img, alpha, info = render(params, vm, K, res, res, backend=backend)
        c1, t1 = time.process_time(), time.perf_counter()
        if backward:
            (img.sum() + alpha.sum()).backward()
        c2, t2 = time.process_time(), time.perf_counter()
        if i > 0 or repeats == 0:
            runs.append((t1 - t0, t2 - t1, c1 - c0, c2 - c1))
        out["visible"] = int((info["radii"] > 0).all(-1).sum())
        out["mean_alpha"] = float(alpha.detach().mean())
        del img, alpha, info, params
    best = min(runs, key=lambda r: r[0] + r[1])  # least disturbed run (the machine may be shared)
    out.update(fwd_s=best[0], fwd_cpu_s=best[2])
    if backward:
        out.update(bwd_s=best[1], bwd_cpu_s=best[3])
    out["peak_mb"] = rss_mb()
    return out


def spawn(n, res, backend, backward, repeats, threads=0, timeout=7200) -> dict | None:
    cmd = [sys.executable, __file__, "--one", str(n), str(res), backend, str(int(backward)), str(repeats), str(threads)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None
    if p.returncode != 0:
        print(p.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help="torch/OpenMP threads in the children (0: default)")
    ap.add_argument("--quick", action="store_true", help="10k Gaussians only")
    ap.add_argument(
        "--oracle-max-pairs", type=float, default=3e9,
        help="run the dense oracle only up to this many pixel x Gaussian pairs; larger ones are extrapolated",
    )
    args = ap.parse_args()
    if args.one:
        n, res, backend, backward, repeats, threads = args.one
        print(json.dumps(run_one(int(n), int(res), backend, bool(int(backward)), int(repeats), int(threads))))
        return

    sizes = SIZES[:1] if args.quick else SIZES
    threads = f", {args.threads} thread(s) used" if args.threads else ""
    print(f"Machine: {machine_line()}{threads} (before the run)\n")
    print(
        "| Gaussians | image | backend | forward ms (CPU s) | backward ms (CPU s) | bwd/fwd | FPS | "
        "peak RSS MB | added MB | visible |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    oracle_rate = None  # seconds per pixel-Gaussian pair, from the largest measured oracle run
    for n in sizes:
        for res in RESOLUTIONS:
            r = spawn(n, res, "cpu", True, 5 if n < 1_000_000 else 3, args.threads)
            if r is None:
                print(f"| {n:,} | {res}² | cpu | failed | | | | | | |")
            else:
                fwd, bwd = r["fwd_s"] * 1e3, r["bwd_s"] * 1e3
                print(
                    f"| {n:,} | {res}² | cpu | {fwd:.0f} ({r['fwd_cpu_s']:.2f}) | {bwd:.0f} ({r['bwd_cpu_s']:.2f}) | "
                    f"{bwd / fwd:.2f} | {1e3 / fwd:.1f} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['base_mb']:.0f} | "
                    f"{r['visible']:,} |",
                    flush=True,
                )
            pairs = n * res * res
            o = spawn(n, res, "reference", False, 0, args.threads) if pairs <= args.oracle_max_pairs else None
            if o is not None:
                oracle_rate = o["fwd_s"] / pairs
                speedup = f" = {o['fwd_s'] * 1e3 / fwd:.0f}x cpu" if r else ""
                print(
                    f"| {n:,} | {res}² | reference | {o['fwd_s'] * 1e3:.0f} ({o['fwd_cpu_s']:.1f}){speedup} | n/a | | "
                    f"{1 / o['fwd_s']:.3f} | {o['peak_mb']:.0f} | {o['peak_mb'] - o['base_mb']:.0f} | "
                    f"{o['visible']:,} |",
                    flush=True,
                )
            elif oracle_rate is not None:
                est = oracle_rate * pairs
                speedup = f" = {est * 1e3 / fwd:.0f}x cpu" if r else ""
                print(f"| {n:,} | {res}² | reference | ~{est * 1e3:.0f} extrapolated{speedup} | n/a | | | | | |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
