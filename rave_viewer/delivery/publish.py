"""``rave publish``: what a static web host needs to serve a RAVE scene at any rate by HTTP byte ranges.

From a ``.ckpt`` it writes, into one folder:

* ``<stem>.rave``: the full-rate progressive stream, coded with **zstd** (not the checkpoint's LZMA default).
  Why: browsers decompress neither zstd, brotli nor LZMA through ``DecompressionStream`` (gzip/deflate only),
  so the player carries its decoder, and zstd has a maintained, small (8 kB), pure-JS one: fzstd. Its cost, on
  demo_objects: 499.0 kB against 455.4 kB with LZMA (+9.6 %); fzstd decompresses the chunks at 10-20 MB/s of
  raw data in node 20 on the loaded 2-core dev machine (C zstd: ~210 MB/s there), so decoding stays a fraction
  of the download on links up to ~50 Mbit/s. ``--codec`` can pick another, but the bundled player decodes zstd
  only.
* ``<stem>.manifest.json``: byte offsets of every chunk and level, the RD table at chunk boundaries, test-view
  poses and the start point (:mod:`~rave_viewer.delivery.manifest`);
* ``index.html``: a self-contained player (the pre-built bundle in ``web/dist/`` inlined: three.js, Spark's
  WebGL splat renderer, fzstd and our chunk decoder; nothing loaded from a CDN) that reads the stream by range
  requests from the same folder and renders each complete prefix as it arrives.

Existing files are never overwritten without ``force``; each file is written to a temp file and renamed.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import RaveError
from ..fileio import atomic_write_bytes
from . import manifest as mf

WEB_DIR = Path(__file__).with_name("web")
BUNDLE = WEB_DIR / "dist" / "rave-player.js"
TEMPLATE = WEB_DIR / "index.template.html"
PUBLISH_CODEC = "zstd"
PLAYER_CODECS = ("zstd",)  # what the bundled JavaScript decoder handles


def _rd_at_chunks(ckpt, counts: list[int], ends: list[int]) -> tuple[dict | None, dict | None]:
    """(RD table at chunk boundaries, the build's measured table) for the manifest."""
    rd = ckpt.rd or {}
    c = [int(x) for x in rd.get("count", [])]
    if len(c) < 2 or "psnr" not in rd:
        return None, None
    xs = np.asarray(c, float)
    out = {"count": list(counts), "bytes": list(ends)}
    measured = {"count": c}
    for key in ("psnr", "ssim"):
        if key in rd and len(rd[key]) == len(c):
            ys = np.asarray(rd[key], float)
            measured[key] = [float(v) for v in ys]
            out[key] = [round(float(v), 4) for v in np.interp(np.asarray(counts, float), xs, ys)]
    return out, measured


def _test_views(cams) -> dict | None:
    if cams is None or not len(cams):
        return None
    import torch

    c2w = torch.linalg.inv(cams.viewmats.double()).numpy()
    fov = [2.0 * math.atan(cams.height / (2.0 * float(cams.Ks[i, 1, 1]))) for i in range(len(cams))]
    names = list(cams.names) if cams.names and len(cams.names) == len(cams) else [f"test {i}" for i in range(len(cams))]
    return {"width": int(cams.width), "height": int(cams.height), "names": [str(n)[:80] for n in names],
            "c2w": [[round(float(v), 6) for v in m.reshape(-1)] for m in c2w], "fov_y": [round(f, 6) for f in fov]}


def build_manifest(ckpt, stream_name: str, data: bytes, info, start_count: int | None) -> dict:
    """The manifest document for the stream ``data`` (its parsed ``info``) published from ``ckpt``."""
    ends = [c.offset + c.length for c in info.chunks]
    counts = list(np.cumsum([c.count for c in info.chunks]).astype(int).tolist())
    header_bytes = info.chunks[0].offset if info.chunks else info.expected_size
    levels = []
    for i, n in enumerate(ckpt.level_sizes):
        j = -(-int(n) // info.chunk_size)
        levels.append({"level": i + 1, "count": int(n), "chunks": j, "end": ends[j - 1]})
    rd, measured = _rd_at_chunks(ckpt, counts, ends)
    doc = {
        "format": mf.FORMAT, "version": mf.VERSION, "stream": stream_name, "stream_bytes": len(data),
        "header_bytes": header_bytes, "header_crc32": zlib.crc32(data[:header_bytes]), "codec": info.codec,
        "format_version": info.format_version, "n_gaussians": info.n_gaussians, "sh_degree": info.sh_degree,
        "chunk_size": info.chunk_size, "bounds": [[float(v) for v in row] for row in info.bounds.tolist()],
        "chunks": {"count": counts, "end": ends}, "levels": levels,
        "targets": "self" if (ckpt.meta or {}).get("targets") == "self" else "photos",
    }  # fmt: skip
    if rd is not None:
        doc["rd"], doc["rd_measured"] = rd, measured
    tv = _test_views(ckpt.test_cameras)
    if tv is not None:
        doc["test_views"] = tv
    if start_count is not None:
        doc["start"] = {"count": int(start_count)}
    mf.parse(json.dumps(doc))  # what we write must be what we accept
    return doc


def player_html(stream_name: str, manifest_name: str, title: str) -> str:
    """index.html: the template with the config and the pre-built bundle inlined."""
    if not BUNDLE.is_file():
        raise RaveError("the web player bundle is missing (build it: rave_viewer/delivery/web/build.sh)", BUNDLE)
    js = BUNDLE.read_text(encoding="utf-8").replace("</script", "<\\/script")
    cfg = json.dumps({"stream": stream_name, "manifest": manifest_name}).replace("</", "<\\/")
    html = TEMPLATE.read_text(encoding="utf-8")
    esc = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return html.replace("{{TITLE}}", esc).replace("{{CONFIG}}", cfg).replace("{{BUNDLE}}", js)


def publish(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike, *, codec: str = PUBLISH_CODEC,
            name: str | None = None, force: bool = False, progress: bool = True,
            start_count: int | None = None, ckpt=None) -> dict:  # fmt: skip
    """Write ``<name>.rave``, ``<name>.manifest.json`` and ``index.html`` into ``out_dir``; returns a summary.

    ``start_count``: where players start (the viewer's knee of the RD curve, computed by the caller);
    ``ckpt``: the already loaded checkpoint of ``ckpt_path``."""
    from ..codec import ProgressiveEncoder, read_info
    from ..rave.checkpoint import load_checkpoint

    ckpt_path = Path(ckpt_path)
    stem = name or ckpt_path.stem
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        raise RaveError(f"--name must be a plain file name, got {stem!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RaveError("exists and is not a folder", out)
    files = {"stream": out / f"{stem}.rave", "manifest": out / f"{stem}.manifest.json", "html": out / "index.html"}
    clash = [str(p) for p in files.values() if p.exists()]
    if clash and not force:
        raise RaveError(f"would overwrite {', '.join(clash)} (pass --force to replace them)", out)
    ckpt = ckpt if ckpt is not None else load_checkpoint(ckpt_path)
    if codec not in PLAYER_CODECS:
        import warnings

        warnings.warn(f"the bundled web player decodes {', '.join(PLAYER_CODECS)} only: index.html cannot play "
                      f"a {codec} stream (rave-view can)", stacklevel=2)  # fmt: skip
    enc = ProgressiveEncoder(ckpt.gaussians, ckpt.quant, codec=codec, chunk_size=ckpt.chunk_size,
                             bounds=ckpt.bounds, progress=progress, name=ckpt_path)  # fmt: skip
    data = enc.encode()
    info = read_info(data, name=str(files["stream"]))
    doc = build_manifest(ckpt, files["stream"].name, data, info, start_count)
    out.mkdir(parents=True, exist_ok=True)
    html = player_html(files["stream"].name, files["manifest"].name, f"{stem} (RAVE)")
    try:
        atomic_write_bytes(files["stream"], data)
        atomic_write_bytes(files["manifest"], (json.dumps(doc, separators=(",", ":")) + "\n").encode())
        atomic_write_bytes(files["html"], html.encode("utf-8"))
    except OSError as e:
        raise RaveError(f"cannot write: {e.strerror or e}", out) from None
    return {"stream": str(files["stream"]), "manifest": str(files["manifest"]), "html": str(files["html"]),
            "bytes": len(data), "gaussians": info.n_gaussians, "chunks": len(info.chunks), "codec": info.codec,
            "levels": len(doc["levels"]), "rd": "rd" in doc, "start_count": start_count}  # fmt: skip


__all__ = ["publish", "build_manifest", "player_html", "PUBLISH_CODEC", "BUNDLE"]
