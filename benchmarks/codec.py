"""Codec benchmark: .rave presets vs SPZ (gsply) and SOG / compressed.ply (splat-transform) on several scenes.

Usage::

    python benchmarks/codec.py [--write] [--views 16] [--size 512] [PLY ...]

Scenes: trained_scenes/demo_objects.ply (SH2), demo_ground.ply (SH2), and PLYs this script writes itself in
other tools' layouts from the demo models (under out/bench_codec/): an SH0 scene of ~48k Gaussians (SuperSplat-like
property order, no normals), an SH3 scene of ~9k (gsplat-like order; band 3 synthesised, see ``_add_band3``) and an
SH3 scene of ~131k (INRIA order; demo_objects replicated 4x, shifted); plus any PLY given.

For each scene and format: bytes, bytes/Gaussian, PLY/size, PSNR and SSIM of the decoded scene's renders against
the original's on ``--views`` orbit views at ``--size``^2, encode and decode speed in MB/s of PLY-equivalent data
(the input PLY's bytes over the time), and one PNG of every RD point (benchmarks/codec_rd.png). The acceptance
figure: the .rave RD points interpolated in log-rate to each competitor's PSNR, i.e. the bytes .rave needs for the
same fidelity, and the saving against the competitor. SOG / compressed.ply need ``npx`` and the npm package
``@playcanvas/splat-transform`` (installed into benchmarks/.npm: ``npm install --prefix benchmarks/.npm
@playcanvas/splat-transform@3.7``); the table says so when they are missing.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _machine import machine_line  # noqa: E402

from rave_viewer.codec import ProgressiveEncoder, decode  # noqa: E402
from rave_viewer.codec.presets import PRESETS, preset  # noqa: E402
from rave_viewer.scene.gaussians import Gaussians  # noqa: E402
from rave_viewer.scene.ply import read_ply  # noqa: E402

SPLAT_TRANSFORM = ROOT / "benchmarks" / ".npm" / "node_modules" / ".bin" / "splat-transform"
OUT = ROOT / "out" / "bench_codec"


# -- scenes in other tools' layouts --------------------------------------------------------------------------
def _write_layout(g: Gaussians, path: Path, order: str) -> None:
    """Write ``g`` as a 3DGS PLY with the properties in another tool's order ("inria", "gsplat", "supersplat")."""
    from plyfile import PlyData, PlyElement

    n, k = len(g), g.shN.shape[1]
    a = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    rest = a(g.shN).transpose(0, 2, 1).reshape(n, -1)  # INRIA: channel-major f_rest
    cols = {"x": a(g.means[:, 0]), "y": a(g.means[:, 1]), "z": a(g.means[:, 2])}
    normals = {f"n{c}": np.zeros(n, np.float32) for c in "xyz"}
    dc = {f"f_dc_{i}": a(g.sh0[:, 0, i]) for i in range(3)}
    fr = {f"f_rest_{i}": rest[:, i] for i in range(3 * k)}
    op = {"opacity": a(g.opacities)}
    sc = {f"scale_{i}": a(g.scales[:, i]) for i in range(3)}
    ro = {f"rot_{i}": a(g.quats[:, i]) for i in range(4)}
    groups = {"inria": [cols, normals, dc, fr, op, sc, ro], "gsplat": [cols, op, sc, ro, dc, fr],
              "supersplat": [cols, dc, fr, sc, ro, op]}[order]
    merged = {k_: v for d in groups for k_, v in d.items()}
    arr = np.empty(n, dtype=[(k_, "f4") for k_ in merged])
    for k_, v in merged.items():
        arr[k_] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))


def _add_band3(g: Gaussians, seed: int = 0) -> Gaussians:
    """SH degree 3 from degree <= 2: band 3 = a fixed random linear mix of bands 1-2 (so it is correlated with
    them, as fitted SH are) plus 20 % independent noise, at 0.6x the RMS of band 2."""
    gen = torch.Generator().manual_seed(seed)
    g2 = g.with_sh_degree(2) if g.sh_degree != 2 else g
    low = g2.shN  # [N, 8, 3]
    mix = torch.randn(8, 7, generator=gen) / math.sqrt(8)
    b3 = torch.einsum("nkc,kj->njc", low, mix)
    b3 = b3 + 0.2 * b3.std() * torch.randn(b3.shape, generator=gen)
    rms2 = float(low[:, 3:].pow(2).mean().sqrt())
    b3 = b3 * (0.6 * rms2 / max(float(b3.pow(2).mean().sqrt()), 1e-12))
    return Gaussians(g2.means, g2.quats, g2.scales, g2.opacities, g2.sh0, torch.cat([low, b3], 1))


def make_scenes() -> list[tuple[str, Path]]:
    objects = read_ply(ROOT / "trained_scenes" / "demo_objects.ply")
    ground = read_ply(ROOT / "trained_scenes" / "demo_ground.ply")
    scenes = [("demo_objects (SH2)", ROOT / "trained_scenes" / "demo_objects.ply"),
              ("demo_ground (SH2)", ROOT / "trained_scenes" / "demo_ground.ply")]
    sh0 = OUT / "sh0_ground_supersplat.ply"
    if not sh0.exists():
        _write_layout(ground.with_sh_degree(0), sh0, "supersplat")
    scenes.append((f"SH0 {len(ground) // 1000}k (SuperSplat order)", sh0))
    small = OUT / "sh3_9k_gsplat.ply"
    if not small.exists():
        idx = torch.randperm(len(objects), generator=torch.Generator().manual_seed(1))[:9000].sort().values
        _write_layout(_add_band3(objects.map(lambda t: t[idx])), small, "gsplat")
    scenes.append(("SH3 9k (gsplat order)", small))
    big = OUT / "sh3_131k_inria.ply"
    if not big.exists():
        ext = (objects.means.max(0).values - objects.means.min(0).values) * 1.05
        parts = []
        for i in range(4):
            off = torch.tensor([(i % 2) * float(ext[0]), (i // 2) * float(ext[1]), 0.0])
            parts.append(objects.map(lambda t: t.clone()))
            parts[-1] = Gaussians(parts[-1].means + off, *[getattr(parts[-1], f) for f in
                                                            ("quats", "scales", "opacities", "sh0", "shN")])
        _write_layout(_add_band3(Gaussians.cat(parts)), big, "inria")
    scenes.append(("SH3 131k (INRIA order)", big))
    return scenes


# -- views and metrics ----------------------------------------------------------------------------------------
def orbit(g: Gaussians, n: int, size: int):
    from rave_viewer.scene.cameras import Cameras, intrinsics, look_at

    m = g.means.detach()
    lo, hi = torch.quantile(m, 0.01, dim=0), torch.quantile(m, 0.99, dim=0)
    c, r = (lo + hi) / 2, float((hi - lo).norm()) * 0.85
    mats = []
    for i in range(n):
        a = 2 * math.pi * i / n
        elev = 0.25 + 0.2 * math.sin(3 * a)
        mats.append(look_at(c + torch.tensor([r * math.cos(a), r * math.sin(a), elev * r]), c))
    K = intrinsics(size, size, math.radians(55))
    return Cameras(torch.stack(mats), K.expand(n, 3, 3).clone(), size, size)


def render(g: Gaussians, cams) -> torch.Tensor:
    from rave_viewer.render import render_cameras

    out = []
    with torch.no_grad():
        for i in range(0, len(cams), 4):
            out.append(render_cameras(g, cams[list(range(i, min(i + 4, len(cams))))])[0].clamp(0, 1))
    return torch.cat(out)


def fidelity(img: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    from rave_viewer.metrics import psnr, ssim

    p = psnr(img, ref).clamp(max=100.0)
    return float(p.mean()), float(ssim(img, ref).mean())


# -- formats --------------------------------------------------------------------------------------------------
def rave_round_trip(g: Gaussians, quality: str, encodes: int = 1):
    """(bytes, encode s, decode s, decoded) of preset ``quality``, sorted spatially as `rave encode` does for a
    PLY; encode time: best of ``encodes`` (decode: best of 3)."""
    def run():
        return ProgressiveEncoder(g, preset(quality), progress=False, spatial_order=True).encode()

    t_enc = min(_timed(run) for _ in range(encodes))
    data = run()
    t_dec = min(_timed(lambda: decode(data)) for _ in range(3))
    return len(data), t_enc, t_dec, decode(data).gaussians


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def spz_round_trip(g: Gaussians):
    """(bytes, encode s, decode s, decoded, version) of SPZ via gsply, or None when gsply is missing."""
    try:
        import gsply
    except ImportError:
        return None
    n = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    qn = g.quats / g.quats.norm(dim=1, keepdim=True)
    data = gsply.GSData(means=n(g.means), scales=n(g.scales), quats=n(qn), opacities=n(g.opacities),
                        sh0=n(g.sh0.reshape(-1, 3)), shN=n(g.shN))  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.spz"
        gsply.write_spz(p, data[:16])  # warm up (numba compiles on first use)
        gsply.read_spz(p)
        t_enc = _timed(lambda: gsply.write_spz(p, data))
        size = os.path.getsize(p)
        version = struct.unpack_from("<I", gzip.decompress(p.read_bytes())[:8], 4)[0]
        t_dec = min(_timed(lambda: gsply.read_spz(p)) for _ in range(3))
        back = gsply.read_spz(p)
    t_ = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    k = g.shN.shape[1]
    shN = t_(back.shN).reshape(len(g), k, 3) if k else torch.zeros(len(g), 0, 3)
    dec = Gaussians(t_(back.means), t_(back.quats), t_(back.scales), t_(back.opacities).reshape(-1),
                    t_(back.sh0).reshape(-1, 1, 3), shN)  # fmt: skip
    return size, t_enc, t_dec, dec, version


def splat_transform_round_trip(ply: Path, ext: str, sh_iterations: int | None = None, workers: int = 2):
    """(bytes, encode s, decode s, decoded) through splat-transform (``ext`` ".sog" or ".compressed.ply");
    None when it is not installed. Times include starting node (~0.3 s). ``sh_iterations``: SOG's SH k-means
    iterations (``-i``; None = its default, 10); ``workers``: its ``--max-workers`` (default 4; 2 on this machine)."""
    exe = str(SPLAT_TRANSFORM) if SPLAT_TRANSFORM.exists() else None
    if exe is None or shutil.which("node") is None:
        return None
    opts = ["--max-workers", str(workers)] + (["-i", str(sh_iterations)] if sh_iterations and ext == ".sog" else [])
    with tempfile.TemporaryDirectory() as d:
        out, back = Path(d) / f"s{ext}", Path(d) / "back.ply"
        t = time.perf_counter()
        subprocess.run([exe, "-q", "-w", "-g", "cpu", *opts, str(ply), str(out)], check=True, capture_output=True)
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([exe, "-q", "-w", str(out), str(back)], check=True, capture_output=True)
        t_dec = time.perf_counter() - t
        return os.path.getsize(out), t_enc, t_dec, read_ply(back)


def rave_bytes_at(points: list[tuple[int, float]], target: float) -> float | None:
    """Bytes the .rave RD points need for ``target`` dB: log-rate interpolation between the two points around
    it on the upper hull (None when no preset reaches it)."""
    pts = sorted(points)
    hull = []  # keep points whose PSNR rises with rate
    for b, p in pts:
        if not hull or p > hull[-1][1]:
            hull.append((b, p))
    if hull[0][1] >= target:
        return float(hull[0][0])
    for (b0, p0), (b1, p1) in zip(hull, hull[1:]):
        if p0 <= target <= p1:
            f = (target - p0) / (p1 - p0)
            return float(math.exp(math.log(b0) + f * (math.log(b1) - math.log(b0))))
    return None


# -- report ---------------------------------------------------------------------------------------------------
def bench_scene(label: str, ply: Path, args) -> dict:
    g = read_ply(ply)
    n, ply_bytes = len(g), os.path.getsize(ply)
    cams = orbit(g, args.views, args.size)
    ref = render(g, cams)
    rows = []

    def add(fmt, size, t_enc, t_dec, dec, note=""):
        p, s = fidelity(render(dec, cams), ref)
        rows.append(dict(fmt=fmt, bytes=size, psnr=p, ssim=s, enc=ply_bytes / t_enc / 1e6 if t_enc else None,
                         dec=ply_bytes / t_dec / 1e6 if t_dec else None, note=note))
        print(f"  {label}: {fmt}: {size} B, {p:.2f} dB", file=sys.stderr, flush=True)

    for q in PRESETS:
        add(f".rave {q}", *rave_round_trip(g, q))
    spz = spz_round_trip(g)
    if spz is not None:
        add(f"SPZ v{spz[4]} (gsply)", *spz[:4])
    its = args.sog_iterations if n >= args.sog_iterations_above else None
    for ext, name in ((".sog", "SOG"), (".compressed.ply", "compressed.ply")):
        try:
            r = splat_transform_round_trip(ply, ext, its, args.sog_workers)
        except subprocess.CalledProcessError as e:
            r = None
            print(f"  {name} failed: {e.stderr.decode(errors='replace')[-300:]}", file=sys.stderr)
        if r is not None:
            name += f" -i {its}" if its and ext == ".sog" else ""
            add(f"{name} (splat-transform)", *r, note="times include node start-up")
    return dict(label=label, ply=ply, n=n, sh=g.sh_degree, ply_bytes=ply_bytes, rows=rows,
                cli=cli_decode_time(ply) if n > 100_000 else None)


def cli_decode_time(ply: Path) -> float:
    """Wall time of ``rave decode`` (a new process: import, read, decode, write the PLY) on the default preset."""
    with tempfile.TemporaryDirectory() as d:
        r = Path(d) / "s.rave"
        subprocess.run([sys.executable, "-m", "rave_viewer.cli", "encode", str(ply), "-o", str(r), "--quiet"],
                       check=True)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rave_viewer.cli", "decode", str(r), "-o", str(Path(d) / "o.ply"),
                            "--quiet", "--force"], check=True)
            times.append(time.perf_counter() - t)
        return float(np.median(times))


def speed_rows(scenes) -> list[dict]:
    """Encode / decode MB/s (PLY bytes per second; best of 3 each) of every preset and of SPZ (encode once),
    nothing rendered, one torch thread
    (on a loaded machine, intra-op threads spinning against other processes distort the timings)."""
    rows = []
    for label, ply in scenes:
        g = read_ply(ply)
        size = os.path.getsize(ply)
        for q in PRESETS:
            b, t_enc, t_dec, _ = rave_round_trip(g, q, encodes=3)
            rows.append(dict(scene=label, fmt=f".rave {q}", enc=size / t_enc / 1e6, dec=size / t_dec / 1e6,
                             load=os.getloadavg()[0]))
            print(f"  speed {label} {q}: {rows[-1]['enc']:.1f} / {rows[-1]['dec']:.1f} MB/s", file=sys.stderr)
        spz = spz_round_trip(g)
        if spz is not None:
            rows.append(dict(scene=label, fmt=f"SPZ v{spz[4]} (gsply)", enc=size / spz[1] / 1e6, dec=size / spz[2] / 1e6,
                             load=os.getloadavg()[0]))
    return rows


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.8), squeeze=False)
    for ax, res in zip(axes[0], results):
        rave = [r for r in res["rows"] if r["fmt"].startswith(".rave")]
        ax.plot([r["bytes"] / res["n"] for r in rave], [r["psnr"] for r in rave], "o-", label=".rave presets")
        for r in rave:
            ax.annotate(r["fmt"].split()[1], (r["bytes"] / res["n"], r["psnr"]), fontsize=7)
        for r in res["rows"]:
            if not r["fmt"].startswith(".rave"):
                ax.plot(r["bytes"] / res["n"], r["psnr"], "s", label=r["fmt"])
        ax.set_xscale("log")
        ax.set_xlabel("bytes / Gaussian")
        ax.set_ylabel("PSNR vs original renders (dB)")
        ax.set_title(res["label"], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(results: list[dict], args, cmd: str) -> str:
    st = "present" if SPLAT_TRANSFORM.exists() else "ABSENT (SOG / compressed.ply not measured)"
    from rave_viewer.codec.container import FORMAT_VERSION

    lines = [f"# .rave codec benchmark (format versions up to {FORMAT_VERSION})", "", f"Command: `python benchmarks/codec.py {cmd}`", "",
             f"Machine: {machine_line(('numpy', 'sklearn', 'gsply'))}; load average at start "
             f"{args.load:.1f} (the machine is shared: speeds are indicative, sizes and PSNR are exact)", "",
             f"splat-transform (npm, benchmarks/.npm): {st}. Views: {args.views} orbit views at {args.size}x{args.size} "
             "around the central 98 % of the Gaussians; PSNR (capped at 100 dB per view) and SSIM of the decoded "
             "scene's renders against the original scene's renders. MB/s = input PLY bytes (10^6) per second of "
             "encode / decode (decode: best of 3, bytes in memory to Gaussians; splat-transform: file to file, "
             "node start-up included).", ""]
    for res in results:
        lines += [f"## {res['label']}: {res['n']:,} Gaussians, SH degree {res['sh']}, PLY {res['ply_bytes']:,} B "
                  f"(`{Path(res['ply']).relative_to(ROOT) if Path(res['ply']).is_relative_to(ROOT) else res['ply']}`)",
                  "", "| format | bytes | B/Gaussian | PLY / size | PSNR (dB) | SSIM | encode MB/s | decode MB/s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["rows"]:
            f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
            lines.append(f"| {r['fmt']} | {r['bytes']:,} | {r['bytes'] / res['n']:.2f} | "
                         f"{res['ply_bytes'] / r['bytes']:.1f} | {r['psnr']:.2f} | "
                         f"{'-' if r['ssim'] is None else format(r['ssim'], '.5f')} | {f(r['enc'])} | "
                         f"{f(r['dec'])} |")
        rave = [(r["bytes"], r["psnr"]) for r in res["rows"] if r["fmt"].startswith(".rave")]
        lines += ["", "| competitor | its bytes | its PSNR | .rave bytes at that PSNR | saving | >= 25 %? |",
                  "|---|---:|---:|---:|---:|---|"]
        for r in res["rows"]:
            if r["fmt"].startswith(".rave"):
                continue
            b = rave_bytes_at(rave, r["psnr"])
            if b is None:
                lines.append(f"| {r['fmt']} | {r['bytes']:,} | {r['psnr']:.2f} | no preset reaches it | - | NO |")
            else:
                sv = 1 - b / r["bytes"]
                lines.append(f"| {r['fmt']} | {r['bytes']:,} | {r['psnr']:.2f} | {b:,.0f} | {100 * sv:.1f} % | "
                             f"{'yes' if sv >= 0.25 else 'NO'} |")
        med = next(r for r in res["rows"] if r["fmt"] == ".rave medium")
        need = 25 if res["sh"] == 3 else 8 if res["sh"] == 0 else None
        if need:
            ok = res["ply_bytes"] / med["bytes"] >= need and med["psnr"] >= 45
            lines += ["", f"Default preset (medium): 1/{res['ply_bytes'] / med['bytes']:.1f} of the PLY at "
                          f"{med['psnr']:.2f} dB (target <= 1/{need} at >= 45 dB: {'met' if ok else 'NOT met'})."]
        if res["cli"] is not None:
            lines += ["", f"`rave decode` of the default-preset stream, end to end (new process, PLY written): "
                          f"{res['cli']:.2f} s (median of 3; target <= 3 s)."]
        lines.append("")
    if getattr(args, "speed_rows", None):
        loads = [r["load"] for r in args.speed_rows if "load" in r]
        at = f", 1-min load average {min(loads):.1f}-{max(loads):.1f} during the pass" if loads else ""
        lines += [f"## Speed (nothing rendered, one torch thread; separate --speed pass{at})", "",
                  "| scene | format | encode MB/s | decode MB/s |", "|---|---|---:|---:|"]
        lines += [f"| {r['scene']} | {r['fmt']} | {r['enc']:.1f} | {r['dec']:.1f} |" for r in args.speed_rows]
        lines += ["", "Medians over the scenes (targets: encode >= 10 MB/s, decode >= 50 MB/s):", "",
                  "| format | encode MB/s | decode MB/s | targets met? |", "|---|---:|---:|---|"]
        for fmt in dict.fromkeys(r["fmt"] for r in args.speed_rows):
            e = float(np.median([r["enc"] for r in args.speed_rows if r["fmt"] == fmt]))
            d = float(np.median([r["dec"] for r in args.speed_rows if r["fmt"] == fmt]))
            ok = "-" if not fmt.startswith(".rave") else f"encode {'yes' if e >= 10 else 'NO'}, " \
                                                           f"decode {'yes' if d >= 50 else 'NO'}"
            lines.append(f"| {fmt} | {e:.1f} | {d:.1f} | {ok} |")
        lines.append("")
    lines += ["![RD points](codec_rd.png)", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("plys", nargs="*", help="more 3DGS PLYs to benchmark")
    p.add_argument("--views", type=int, default=16)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--sog-iterations", type=int, help="SOG SH k-means iterations (splat-transform -i; default 10) "
                   "for scenes of at least --sog-iterations-above Gaussians (the row's name says so)")
    p.add_argument("--sog-iterations-above", type=int, default=0, metavar="N")
    p.add_argument("--sog-workers", type=int, default=2, help="splat-transform --max-workers (default 2)")
    p.add_argument("--only", nargs="*", help="only scenes whose label contains one of these words")
    p.add_argument("--write", action="store_true", help="write benchmarks/CODEC.md and benchmarks/codec_rd.png")
    p.add_argument("--save", metavar="JSON", help="also store the measured rows (to --merge runs made in parallel)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="report rows stored by --save instead of measuring")
    p.add_argument("--speed", metavar="JSON", help="measure only encode/decode speed (stored in JSON) and stop")
    p.add_argument("--speed-json", metavar="JSON", help="add the speed table stored by --speed to the report")
    args = p.parse_args(argv)
    args.load = os.getloadavg()[0]
    busy = args.load > (os.cpu_count() or 1)  # oversubscribed: intra-op threads would only spin
    torch.set_num_threads(1 if busy else max(1, os.cpu_count() or 1))
    if args.speed:
        import json

        torch.set_num_threads(1)  # the speed table is one torch thread, whatever the load

        scenes = make_scenes()
        if args.only:
            scenes = [s for s in scenes if any(w in s[0] for w in args.only)]
        Path(args.speed).write_text(json.dumps(speed_rows(scenes)))
        return 0
    args.speed_rows = None
    if args.speed_json:
        import json

        args.speed_rows = json.loads(Path(args.speed_json).read_text())
    if args.merge:
        import json

        results = [r for f in args.merge for r in json.loads(Path(f).read_text())]
    else:
        scenes = make_scenes() + [(Path(x).name, Path(x)) for x in args.plys]
        if args.only:
            scenes = [s for s in scenes if any(w in s[0] for w in args.only)]
        results = [bench_scene(label, ply, args) for label, ply in scenes]
    if args.save:
        import json

        Path(args.save).write_text(json.dumps(results, default=str))
    text = report(results, args, " ".join(argv if argv is not None else sys.argv[1:]))
    print(text)
    if args.write:
        from rave_viewer.fileio import atomic_write_text

        plot(results, ROOT / "benchmarks" / "codec_rd.png")
        atomic_write_text(ROOT / "benchmarks" / "CODEC.md", text)
        print("wrote benchmarks/CODEC.md and benchmarks/codec_rd.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
