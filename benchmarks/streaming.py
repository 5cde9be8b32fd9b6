"""Streaming benchmark: time to first picture and to full quality over simulated links, RAVE by range requests
vs downloading the whole PLY and the whole SPZ.

Usage:  python benchmarks/streaming.py [--speeds 2 10 50] [--repeats 3] [--latency 0.02] [--write]

The bundled scene (trained_scenes/demo_objects.ckpt) is published with `rave publish` into out/bench_streaming/
(zstd stream + manifest); its PLY is trained_scenes/demo_objects.ply, its SPZ is written there by gsply (when
installed). A local range server (rave_viewer.delivery.serve) throttles every response to the link speed and
adds ``--latency`` seconds per request (a round trip). Times, from the first request:

* RAVE (the range loader `rave-view https://...` uses): first picture = manifest + header/index + the first
  chunk arrived, plus decoding it; start point = the prefix `rave publish` starts players at, arrived and
  decoded; full = every chunk arrived plus decoding the whole stream (decode times measured after the
  download); auto 2 s = what `--auto 2` ends with (Gaussians, predicted PSNR from the manifest);
* PLY / SPZ: the whole file arrived and parsed (plyfile via rave_viewer's reader / gsply.read_spz): first
  picture = full quality.

Each cell is the median of --repeats runs. PSNR is the manifest's RD table (test-view mean of the build) at the
prefix; the PLY is the same model unquantized (its PSNR is the build's full model, reported from the RD table's
largest point as the closest figure). --write rewrites benchmarks/STREAMING.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _machine import machine_line  # noqa: E402

from rave_viewer.delivery.adapt import Target  # noqa: E402
from rave_viewer.delivery.loader import StreamLoader  # noqa: E402
from rave_viewer.delivery.serve import RangeServer  # noqa: E402

CKPT = ROOT / "trained_scenes" / "demo_objects.ckpt"
PLY = ROOT / "trained_scenes" / "demo_objects.ply"
OUT = ROOT / "out" / "bench_streaming"


def publish_site() -> Path:
    from rave_viewer.delivery.publish import publish
    from rave_viewer.rave.checkpoint import load_checkpoint
    from rave_viewer.viewer.sources import ViewSource

    OUT.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(CKPT)
    start = ViewSource(path=CKPT, kind="ckpt", gaussians=ckpt.gaussians, checkpoint=ckpt).default_k()
    publish(CKPT, OUT, force=True, progress=False, start_count=start, ckpt=ckpt)
    (OUT / "scene.ply").write_bytes(PLY.read_bytes())
    return OUT


def write_spz(site: Path) -> bool:
    try:
        import gsply
    except ImportError:
        return False
    data = gsply.plyread(str(PLY))
    gsply.write_spz(str(site / "scene.spz"), data)
    return True


def _decode(data: bytes):
    from rave_viewer.codec import decode

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return decode(data)


def rave_run(url: str, manifest: dict, auto: float | None = None) -> dict:
    """Times (s from the first request) of one streaming session: when the first chunk, the start point and the
    last chunk arrived, plus the time to decode that prefix (measured after the download, so the two never
    compete for the CPU: a viewer decodes while the next chunks arrive)."""
    t0 = time.perf_counter()
    ld = StreamLoader(url, Target("auto", auto) if auto else Target("full"), timeout=60.0)
    knee_chunks = ld_chunks_for_count(manifest, manifest["start"]["count"])
    marks: dict[str, float] = {}
    try:
        ld.open()
        ld.start()
        while True:
            p = ld.progress()
            now = time.perf_counter() - t0
            if p.chunks >= 1:
                marks.setdefault("first", now)
            if p.chunks >= knee_chunks:
                marks.setdefault("knee", now)
            if auto is not None and p.elapsed > auto and p.state in ("idle", "done"):
                marks["auto_chunks"] = p.chunks
                break
            if auto is None and p.chunks == p.n_chunks:
                marks["full"] = now
                break
            if p.state == "failed":
                raise RuntimeError(p.message)
            time.sleep(0.002)
        data, _ = ld.complete_prefix()
    finally:
        ld.close()
    if auto is None:
        ends = manifest["chunks"]["end"]
        for key, end in (("first", ends[0]), ("knee", ends[knee_chunks - 1]), ("full", ends[-1])):
            t = time.perf_counter()
            _decode(data[:end])
            marks[key + "_decode"] = time.perf_counter() - t
    return marks


def ld_chunks_for_count(manifest: dict, count: int) -> int:
    counts = manifest["chunks"]["count"]
    return max(sum(1 for c in counts if c <= count), 1)


def whole_file(url: str, parse) -> tuple[float, float]:
    """(seconds to download a whole file with one GET, seconds to parse it)."""
    import urllib.request

    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        data = r.read()
    t1 = time.perf_counter()
    with tempfile.NamedTemporaryFile(suffix=Path(url).suffix) as f:
        f.write(data)
        f.flush()
        parse(f.name)
    return t1 - t0, time.perf_counter() - t1


def parse_ply(path: str) -> None:
    from rave_viewer.scene.ply import read_ply

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_ply(path)


def parse_spz(path: str) -> None:
    import gsply

    gsply.read_spz(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speeds", type=float, nargs="+", default=[2.0, 10.0, 50.0], help="link speeds in Mbit/s")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.02, help="seconds added to every request (a round trip)")
    ap.add_argument("--auto", type=float, default=2.0, help="the auto-mode time budget to report (s)")
    ap.add_argument("--write", action="store_true", help="rewrite benchmarks/STREAMING.md (and streaming.json)")
    ap.add_argument("--report-only", action="store_true", help="rewrite STREAMING.md from streaming.json")
    args = ap.parse_args(argv)
    if args.report_only:
        saved = json.loads((ROOT / "benchmarks" / "streaming.json").read_text())
        site = OUT if (OUT / "demo_objects.manifest.json").exists() else publish_site()
        manifest = json.loads((site / "demo_objects.manifest.json").read_text())
        ns = argparse.Namespace(**saved["args"])
        text = report(saved["rows"], manifest, saved["sizes"], saved["knee_chunks"], ns, saved["cmd"], saved["has_spz"],
                      saved.get("machine"))
        (ROOT / "benchmarks" / "STREAMING.md").write_text(text)
        print(text)
        return 0

    site = publish_site()
    has_spz = write_spz(site)
    if has_spz:  # warm up numba before timing
        parse_spz(str(site / "scene.spz"))
    parse_ply(str(site / "scene.ply"))
    _decode((site / "demo_objects.rave").read_bytes())  # warm up (first torch calls)
    manifest = json.loads((site / "demo_objects.manifest.json").read_text())
    rd = manifest["rd"]
    sizes = {"rave": (site / "demo_objects.rave").stat().st_size, "ply": (site / "scene.ply").stat().st_size,
             "spz": (site / "scene.spz").stat().st_size if has_spz else None}  # fmt: skip
    knee = ld_chunks_for_count(manifest, manifest["start"]["count"])
    rows = []
    for mbit in args.speeds:
        rate = mbit * 1e6 / 8
        with RangeServer(site, rate=rate, latency=args.latency) as s:
            runs = [rave_run(s.url("demo_objects.rave"), manifest) for _ in range(args.repeats)]
            autos = [rave_run(s.url("demo_objects.rave"), manifest, auto=args.auto) for _ in range(args.repeats)]
            ply = [whole_file(s.url("scene.ply"), parse_ply) for _ in range(args.repeats)]
            spz = [whole_file(s.url("scene.spz"), parse_spz) for _ in range(args.repeats)] if has_spz else None
        med = lambda xs: statistics.median(xs)  # noqa: E731
        auto_chunks = int(med([a["auto_chunks"] for a in autos]))
        row = {"mbit": mbit, "auto_chunks": auto_chunks, "auto_count": manifest["chunks"]["count"][auto_chunks - 1],
               "auto_psnr": rd["psnr"][auto_chunks - 1]}  # fmt: skip
        for key in ("first", "knee", "full"):
            row[f"rave_{key}"] = (med([r[key] for r in runs]), med([r[key + "_decode"] for r in runs]))
        row["ply"] = (med([x[0] for x in ply]), med([x[1] for x in ply]))
        row["spz"] = (med([x[0] for x in spz]), med([x[1] for x in spz])) if spz else None
        rows.append(row)
        print(rows[-1], flush=True)
    cmd = "python benchmarks/streaming.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = machine_line(("gsply", "zstandard"))
    text = report(rows, manifest, sizes, knee, args, cmd.strip(), has_spz, machine)
    print(text)
    if args.write:
        (ROOT / "benchmarks" / "STREAMING.md").write_text(text)
        (ROOT / "benchmarks" / "streaming.json").write_text(json.dumps(
            {"rows": rows, "sizes": sizes, "knee_chunks": knee, "args": vars(args), "cmd": cmd.strip(),
             "has_spz": has_spz, "machine": machine}, indent=1) + "\n")
    return 0


def player_sizes() -> dict:
    import gzip

    import brotli

    from rave_viewer.delivery.publish import BUNDLE

    js = BUNDLE.read_bytes()
    return {"raw": len(js), "gzip": len(gzip.compress(js, 9)), "br": len(brotli.compress(js, quality=11))}


def report(rows, manifest, sizes, knee, args, cmd, has_spz, machine: str | None = None) -> str:
    player = player_sizes()
    rd = manifest["rd"]
    ends, counts = manifest["chunks"]["end"], manifest["chunks"]["count"]
    n = manifest["n_gaussians"]
    spz = f"{sizes['spz'] / 1e3:,.0f} KB" if has_spz else "n/a (gsply not installed)"
    lines = [
        "# Streaming: time to first picture and to full quality over simulated links",
        "",
        f"`{cmd}` — bundled scene `demo_objects` ({n:,} Gaussians, SH degree {manifest['sh_degree']}), published "
        f"with `rave publish` (zstd, {len(ends)} chunks of {manifest['chunk_size']}). The local range server "
        f"throttles each response to the link speed and adds {args.latency * 1e3:.0f} ms per request. Median of "
        f"{args.repeats} runs.",
        "",
        f"Machine: {machine or machine_line(('gsply', 'zstandard'))}.",
        "",
        f"Sizes: RAVE stream {sizes['rave'] / 1e3:,.0f} KB (first picture needs {ends[0] / 1e3:,.0f} KB: "
        f"{counts[0]:,} Gaussians, {rd['psnr'][0]:.2f} dB; the start point {ends[knee - 1] / 1e3:,.0f} KB: "
        f"{counts[knee - 1]:,} Gaussians, {rd['psnr'][knee - 1]:.2f} dB; full {rd['psnr'][-1]:.2f} dB), "
        f"PLY {sizes['ply'] / 1e3:,.0f} KB, SPZ {spz}. PSNR: test-view mean from the manifest's RD table.",
        "",
        "Each time cell is *arrived + decoded = total*: the bytes on the wire (from the first request), then the "
        "CPU time to decode that prefix or parse that file on this (shared, loaded) machine, measured after the "
        "download. PLY and SPZ show their first picture only at full quality.",
        "",
        "| link | RAVE first picture | RAVE start point | RAVE full quality | PLY (whole file) | SPZ (whole file) "
        f"| RAVE `--auto {args.auto:g}` ends with |",
        "|--:|--:|--:|--:|--:|--:|:--|",
    ]
    cell = lambda t: f"{t[0]:.2f} + {t[1]:.2f} = **{t[0] + t[1]:.2f} s**"  # noqa: E731
    for r in rows:
        sp = cell(r["spz"]) if r["spz"] is not None else "n/a"
        lines.append(
            f"| {r['mbit']:g} Mbit/s | {cell(r['rave_first'])} | {cell(r['rave_knee'])} | {cell(r['rave_full'])} "
            f"| {cell(r['ply'])} | {sp} | {r['auto_count']:,} Gaussians ({r['auto_chunks']}/{len(ends)} chunks, "
            f"{r['auto_psnr']:.2f} dB) |"
        )
    r0 = rows[0]
    tot = lambda t: t[0] + t[1]  # noqa: E731
    lines += [
        "",
        "Reading it: RAVE's first picture needs one chunk (plus the manifest and one header request), so it "
        "arrives in a fraction of the time of any whole-file format. Full quality needs the whole stream: "
        f"{sizes['rave'] / 1e3:,.0f} KB on the wire against the SPZ's {spz} and the PLY's "
        f"{sizes['ply'] / 1e3:,.0f} KB, so its bytes arrive first, but decoding it costs more than parsing an SPZ "
        "(caveats below). PLY and SPZ show nothing until "
        f"the whole file is in. At {r0['mbit']:g} Mbit/s the first picture is "
        f"{tot(r0['ply']) / tot(r0['rave_first']):.0f}x sooner than the PLY"
        + (f" and {tot(r0['spz']) / tot(r0['rave_first']):.1f}x sooner than the SPZ" if r0["spz"] else "")
        + f" (bytes on the wire alone: {r0['ply'][0] / r0['rave_first'][0]:.0f}x and "
        + (f"{r0['spz'][0] / r0['rave_first'][0]:.1f}x" if r0["spz"] else "n/a") + "). On fast links "
        "decoding, not the link, decides: the decode column is this loaded 2-core machine's.",
        "",
        "Times are for the Python range loader (what `rave-view https://...` uses); the browser player fetches "
        "the same bytes (tests/delivery/test_publish.py checks the count). Loopback with a per-response throttle: "
        "no packet loss, no TCP slow start, one response at a time.",
        "",
        "Caveats, measured here too:",
        "",
        f"- **Decode cost is real and noisy.** The machine was shared (load in the caption): decoding the whole "
        f"stream took {min(r['rave_full'][1] for r in rows):.2f}-{max(r['rave_full'][1] for r in rows):.2f} s "
        f"between rows, parsing the SPZ (gsply, numba) {min(r['spz'][1] for r in rows) if has_spz else 0:.2f}-"
        f"{max(r['spz'][1] for r in rows) if has_spz else 0:.2f} s. Our decoder (numpy unpacking + torch "
        "dequantization) is the bottleneck on fast links: at 50 Mbit/s RAVE reaches full quality no sooner than "
        "the whole SPZ, and sooner only in bytes on the wire. The first picture is always the early one.",
        f"- **The browser player has a size of its own**: {player['raw'] / 1e6:.2f} MB inlined into index.html "
        f"(three.js + Spark with its WASM + fzstd + our decoder; {player['gzip'] / 1e6:.2f} MB gzip, "
        f"{player['br'] / 1e6:.2f} MB brotli, as static hosts usually serve it). It is the same for every scene "
        "and cached after the first visit, but a first visit at 2 Mbit/s spends "
        f"~{player['gzip'] * 8 / 2e6:.1f} s on it before the stream starts. Not in the table (the Python loader "
        "has no such cost; neither do PLY/SPZ viewers that are already loaded).",
        "- **The browser decodes slower than Python**: fzstd (pure JS) decompressed these chunks at 10-20 MB/s of "
        "raw data in node 20 on this machine at load ~20, against ~210 MB/s for Python's C zstd; the player's "
        "first picture therefore costs more CPU than the table's. tests/delivery/test_publish.py checks that "
        "it decodes the same values.",
        "- **Auto mode** plans with 85 % of the throughput measured over its last requests (latency included), "
        "so it stays inside the budget; the slider can always ask for more.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
