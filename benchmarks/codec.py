"""Codec benchmark: .rave bytes per Gaussian, PSNR loss and throughput vs the PLY and SPZ, per codec and chunk size.

Usage::

    python benchmarks/codec.py SCENE.ply --data DATASET_DIR [--write]     # a trained scene + its test views
    python benchmarks/codec.py --random 50000                             # no scene yet: random Gaussians

PSNR loss is measured on the dataset's test views (``--data``; PSNR of the original scene's renders vs the
ground truth minus that of the decoded scene). Without ``--data`` the script renders ``--orbit`` synthetic views
around the scene and reports the PSNR of the decoded scene's renders against the original's instead.
SPZ is measured with the ``gsply`` package (``pip install gsply``; a benchmark-only dependency) when installed.
``--write`` stores the markdown report, with machine information, in benchmarks/CODEC.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _machine import machine_line  # noqa: E402

from rave_viewer.codec import CODECS, ProgressiveEncoder, QuantConfig, decode, dequantize  # noqa: E402
from rave_viewer.codec.container import _Layout, _pack_chunk  # noqa: E402
from rave_viewer.scene.gaussians import Gaussians  # noqa: E402


# -- inputs -------------------------------------------------------------------------------------------------
def load_scene(args) -> tuple[Gaussians, str, int]:
    """(scene, description, size in bytes of its uncompressed PLY)."""
    from rave_viewer.scene.ply import read_ply, write_ply

    if args.scene:
        g = read_ply(args.scene)
        return g, f"{args.scene} ({len(g)} Gaussians, SH degree {g.sh_degree})", os.path.getsize(args.scene)
    g = Gaussians.random(args.random, args.sh_degree, seed=0)
    with tempfile.TemporaryDirectory() as d:
        write_ply(g, Path(d) / "s.ply")
        size = os.path.getsize(Path(d) / "s.ply")
    return g, f"Gaussians.random({args.random}, sh_degree={args.sh_degree}, seed=0)", size


def spz_round_trip(g: Gaussians):
    """(bytes, encode s, decode s, decoded Gaussians) of SPZ v3 via gsply, or None when gsply is missing."""
    try:
        import gsply
        import numpy as np
    except ImportError:
        return None
    n = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    qn = g.quats / g.quats.norm(dim=1, keepdim=True)
    data = gsply.GSData(means=n(g.means), scales=n(g.scales), quats=n(qn), opacities=n(g.opacities),
                        sh0=n(g.sh0.reshape(-1, 3)), shN=n(g.shN))  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.spz"
        gsply.write_spz(p, data[:16])  # warm up (numba compiles on first use): time the real work only
        gsply.read_spz(p)
        t = time.perf_counter()
        gsply.write_spz(p, data)
        t_enc = time.perf_counter() - t
        size = os.path.getsize(p)
        t = time.perf_counter()
        back = gsply.read_spz(p)
        t_dec = time.perf_counter() - t
    t_ = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    k = g.shN.shape[1]
    shN = t_(back.shN).reshape(len(g), k, 3) if k else torch.zeros(len(g), 0, 3)
    dec = Gaussians(t_(back.means), t_(back.quats), t_(back.scales), t_(back.opacities).reshape(-1),
                    t_(back.sh0).reshape(-1, 1, 3), shN)  # fmt: skip
    return size, t_enc, t_dec, dec


def views(args, g: Gaussians):
    """(cameras, ground-truth images or None, description) for the PSNR measurement."""
    if args.data:
        from rave_viewer.scene.datasets import load_dataset

        ds = load_dataset(args.data, downscale=args.downscale)
        cams = ds.test if len(ds.test) else ds.train
        idx = list(range(len(cams)))[: args.max_views]
        cams = cams[idx]
        split = "test" if len(ds.test) else "train (no test split)"
        return cams, cams.images, f"{len(cams)} {split} views of {args.data} at {cams.width}x{cams.height}"
    if args.orbit <= 0:
        return None, None, "not measured (no --data, --orbit 0)"
    from rave_viewer.scene.cameras import Cameras, intrinsics, look_at

    lo, hi = g.means.min(0).values, g.means.max(0).values
    c, r = (lo + hi) / 2, float((hi - lo).norm()) * 0.9
    mats = []
    for i in range(args.orbit):
        a = 2 * math.pi * i / args.orbit
        eye = c + torch.tensor([r * math.cos(a), r * math.sin(a), 0.35 * r])
        mats.append(look_at(eye, c))
    K = intrinsics(args.size, args.size, math.radians(60))
    cams = Cameras(torch.stack(mats), K.expand(args.orbit, 3, 3).clone(), args.size, args.size)
    return cams, None, f"{args.orbit} orbit views at {args.size}x{args.size} (PSNR vs the original scene's renders)"


def render_psnr(g: Gaussians, cams, gt, backend: str) -> tuple[float, torch.Tensor]:
    from rave_viewer.metrics import psnr
    from rave_viewer.render import render_cameras

    with torch.no_grad():
        img, _, _ = render_cameras(g, cams, backend=backend)
    img = img.clamp(0, 1)
    return (float(psnr(img, gt).mean()) if gt is not None else float("nan")), img


#: Quantization settings compared in the quality table (the SH rest is the main size/quality knob).
SH_VARIANTS = [
    ("defaults (SH rest 5/4/4 bits)", QuantConfig()),
    ("SH rest 6/5/5 bits", QuantConfig(shN_bits=(6, 5, 5), shN_range=(31 / 32, 15 / 16, 15 / 16))),
    ("SH rest 8/8/8 bits", QuantConfig(shN_bits=(8, 8, 8), shN_range=(1.0, 1.0, 1.0))),
    ("pos 14, rot 7, opacity 7 bits", QuantConfig(pos_bits=14, rot_bits=7, opacity_bits=7)),
]


# -- measurements -------------------------------------------------------------------------------------------
def attribute_breakdown(g: Gaussians, cfg: QuantConfig, codec: str, chunk: int) -> list[tuple[str, float, float]]:
    """(attribute, raw B/Gaussian, compressed B/Gaussian) when each column group is compressed on its own."""
    n = min(len(g), chunk)
    enc = ProgressiveEncoder(g.prefix(n), cfg, codec, chunk, bounds=ProgressiveEncoder(g, cfg).bounds)
    raw, _ = _pack_chunk(enc._morton, enc._cols, enc._layout)
    lay: _Layout = enc._layout
    w = [1 if b <= 8 else 2 for b in lay.bits]
    groups = [("positions (Morton deltas)", None, None), ("rotation index", 0, 1), ("rotation", 1, 4),
              ("log-scales", 4, 7), ("opacity", 7, 8), ("SH DC", 8, 11)]  # fmt: skip
    bands = [("SH degree 1", 11, 20), ("SH degree 2", 20, 35), ("SH degree 3", 35, 56)]
    groups += bands[: g.sh_degree]
    comp = CODECS[codec].compress
    out, mb = [], lay.morton_bytes * n
    for name, a, b in groups:
        if a is None:
            part = raw[:mb]
        else:
            start = mb + sum(w[:a]) * n
            part = raw[start : start + sum(w[a:b]) * n]
        out.append((name, len(part) / n, len(comp(part)) / n))
    return out


def run_codecs(g, cfg, codecs, chunks, repeat: int):
    rows = []
    for codec in codecs:
        for chunk in chunks:
            best_e = best_d = float("inf")
            for _ in range(repeat):
                t = time.perf_counter()
                enc = ProgressiveEncoder(g, cfg, codec, chunk, progress=False)
                data = enc.encode()
                best_e = min(best_e, time.perf_counter() - t)
                t = time.perf_counter()
                res = decode(data)
                best_d = min(best_d, time.perf_counter() - t)
            assert res.gaussians.equal(enc.quantized_prefix())
            rows.append(dict(codec=codec, chunk=chunk, bytes=len(data), enc_s=best_e, dec_s=best_d))
    return rows


# -- report -------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scene", nargs="?", help="3DGS .ply to encode (default: random Gaussians, see --random)")
    p.add_argument("--data", help="dataset folder of the scene: PSNR on its test views")
    p.add_argument("--downscale", type=int, default=1, help="image downscale for --data (default 1)")
    p.add_argument("--max-views", type=int, default=16, help="at most this many test views (default 16)")
    p.add_argument("--random", type=int, default=50000, help="random Gaussians when no scene is given")
    p.add_argument("--sh-degree", type=int, default=3, help="SH degree of the random scene (default 3)")
    p.add_argument("--orbit", type=int, default=4, help="synthetic views without --data (default 4; 0 = none)")
    p.add_argument("--size", type=int, default=96, help="image size of the synthetic views (default 96)")
    p.add_argument("--backend", default="auto", help="renderer backend (default auto)")
    p.add_argument("--codecs", nargs="+", default=sorted(CODECS), help="codecs (default all)")
    p.add_argument("--chunk-sizes", nargs="+", type=int, default=[1024, 4096, 16384], help="chunk sizes")
    p.add_argument("--repeat", type=int, default=1, help="timing repeats, best kept (default 1)")
    p.add_argument("--write", action="store_true", help="write the report to benchmarks/CODEC.md")
    args = p.parse_args(argv)

    g, scene_desc, ply_bytes = load_scene(args)
    n = len(g)
    cfg = QuantConfig()
    cmd = " ".join(argv or sys.argv[1:])
    lines = ["# .rave codec benchmark", "", f"Command: `python benchmarks/codec.py {cmd}`", "",
             f"Machine: {machine_line(('numpy', 'zstandard', 'brotli', 'gsply'))}", "",
             f"Scene: {scene_desc}; PLY {ply_bytes} bytes ({ply_bytes / n:.1f} B/Gaussian)", "",
             f"Default quantization: `{cfg.to_dict()}`", "",
             "Bytes are exact file sizes; MB = 10^6 bytes. Throughput = Gaussians per second over the whole file "
             "(encode includes quantization and compressing every chunk, using up to 8 threads).", ""]  # fmt: skip

    # sizes and throughput
    rows = run_codecs(g, cfg, args.codecs, args.chunk_sizes, args.repeat)
    spz = spz_round_trip(g)
    lines += ["## Size and throughput", "",
              "| format | chunk | bytes | B/Gaussian | PLY / size | encode (MG/s) | decode (MG/s) |",
              "|---|---:|---:|---:|---:|---:|---:|",
              f"| PLY (float32) | - | {ply_bytes} | {ply_bytes / n:.2f} | 1.0 | - | - |"]  # fmt: skip
    for r in rows:
        enc_rate, dec_rate = n / r["enc_s"] / 1e6, n / r["dec_s"] / 1e6
        lines.append(f"| .rave {r['codec']} | {r['chunk']} | {r['bytes']} | {r['bytes'] / n:.2f} | "
                     f"{ply_bytes / r['bytes']:.1f} | {enc_rate:.3f} | {dec_rate:.3f} |")  # fmt: skip
    if spz is None:
        lines.append("| SPZ | - | not measured: `gsply` is not installed (`pip install gsply`) | | | | |")
        print("note: SPZ not measured: the gsply package is not installed (pip install gsply)", file=sys.stderr)
    else:
        s_bytes, s_e, s_d, _ = spz
        lines.append(f"| SPZ v3 (gsply, gzip) | - | {s_bytes} | {s_bytes / n:.2f} | {ply_bytes / s_bytes:.1f} | "
                     f"{n / s_e / 1e6:.3f} | {n / s_d / 1e6:.3f} |")  # fmt: skip

    # where the bytes go
    codec0 = "lzma" if "lzma" in args.codecs else args.codecs[0]
    chunk0 = 4096 if 4096 in args.chunk_sizes else args.chunk_sizes[0]
    lines += ["", f"## Where the bytes go ({codec0}, first chunk of {min(n, chunk0)}, each attribute compressed alone)",
              "", "| attribute | raw B/Gaussian | compressed B/Gaussian |", "|---|---:|---:|"]  # fmt: skip
    for name, raw, comp in attribute_breakdown(g, cfg, codec0, chunk0):
        lines.append(f"| {name} | {raw:.2f} | {comp:.2f} |")

    # quality
    cams, gt, vdesc = views(args, g)
    lines += ["", "## Quality", "", f"Views: {vdesc}.", ""]
    if cams is not None:
        from rave_viewer.metrics import psnr

        base, ref = render_psnr(g, cams, gt, args.backend)
        codec0 = "lzma" if "lzma" in args.codecs else args.codecs[0]
        variants = []  # (name, bytes or None, decoded scene)
        for label, c in SH_VARIANTS:
            enc = ProgressiveEncoder(g, c, codec0, chunk0, progress=False)
            variants.append((f".rave {label}", enc.size_of_prefix(n), dequantize(enc.quantized)))
        if spz is not None:
            variants.append(("SPZ v3 (gsply)", spz[0], spz[3]))
        head = "| scene | B/Gaussian | PSNR vs original renders (dB) |"
        if gt is not None:
            head += " PSNR vs ground truth (dB) | loss vs original (dB) |"
            lines += [head, "|---|---:|---:|---:|---:|", f"| original (PLY) | {ply_bytes / n:.2f} | - | {base:.3f} | - |"]
        else:
            lines += [head, "|---|---:|---:|"]
        for name, size, dec in variants:
            v, img = render_psnr(dec, cams, gt, args.backend)
            row = f"| {name} | {size / n:.2f} | {float(psnr(img, ref).mean()):.2f} |"
            lines.append(row + (f" {v:.3f} | {base - v:.3f} |" if gt is not None else ""))
        lines += ["", f"(.rave rows: {codec0}, chunk {chunk0}; every codec and chunk size decodes to the same values.)"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        out = ROOT / "benchmarks" / "CODEC.md"
        from rave_viewer.fileio import atomic_write_text

        atomic_write_text(out, text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
