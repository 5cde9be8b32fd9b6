"""The sidecar manifest of a published stream: byte offsets, levels, RD table and test views, as small JSON.

A ``.rave`` stream carries no RD table or test views (container v1 has no room for them), so ``rave publish``
writes ``<stem>.manifest.json`` next to ``<stem>.rave``. Everything in it is about *range prefixes* of the
published file: the prefix that holds the first ``j`` chunks is bytes ``[0, chunks.end[j-1])`` (header and the
full chunk index, then chunks ``0..j-1``), which is what a range client fetches. Fields (``version`` 1)::

    format "rave-manifest", version 1, stream (file name, relative), stream_bytes, header_bytes (end of the
    chunk index), header_crc32 (of bytes [0, header_bytes)), codec, format_version, n_gaussians, sh_degree,
    chunk_size, bounds [[x,y,z],[x,y,z]],
    chunks {count: [Gaussians after chunk j], end: [byte offset after chunk j]},
    levels [{level, count, chunks, end}]  (the chunks, and bytes, a client needs to hold level l),
    rd {count, bytes, psnr, ssim} at chunk boundaries (PSNR/SSIM interpolated in the build's dense table),
    rd_measured {count, psnr, ssim} (the build's table as measured), targets "photos" | "self",
    test_views {width, height, names, c2w [[16]], fov_y [rad]} (poses only, no images), start {count}.

The viewer trusts a manifest only when its header fields match the stream (:func:`check_against`); a missing,
malformed or mismatched manifest is one warning and the stream is used without it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

FORMAT = "rave-manifest"
VERSION = 1
MAX_BYTES = 8 << 20  # a manifest larger than this is refused (a 6M-Gaussian scene's manifest is ~0.2 MB)


class ManifestError(ValueError):
    """A manifest that is not valid JSON of the expected shape."""


@dataclass
class Manifest:
    doc: dict

    @property
    def header_bytes(self) -> int:
        return int(self.doc["header_bytes"])

    @property
    def levels(self) -> list[dict]:
        return list(self.doc.get("levels") or [])

    @property
    def rd(self) -> dict | None:
        rd = self.doc.get("rd")
        return rd if rd and len(rd.get("count", [])) >= 2 else None

    @property
    def targets(self) -> str:
        return "self" if self.doc.get("targets") == "self" else "photos"

    @property
    def start_count(self) -> int | None:
        s = self.doc.get("start") or {}
        return int(s["count"]) if isinstance(s.get("count"), int) else None


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ManifestError(what)


def _int_list(v, what: str, n: int | None = None) -> list[int]:
    _need(isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v),
          f"{what} must be a list of integers >= 0")  # fmt: skip
    _need(n is None or len(v) == n, f"{what} must have {n} entries")
    return v


def _num_list(v, what: str, n: int) -> list[float]:
    _need(isinstance(v, list) and len(v) == n and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v),
        f"{what} must be {n} finite numbers")  # fmt: skip
    return v


def parse(text: bytes | str) -> Manifest:
    """Check the shape of a manifest (:class:`ManifestError` naming the bad field)."""
    if len(text) > MAX_BYTES:
        raise ManifestError(f"larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"not JSON ({e})") from None
    _need(isinstance(doc, dict) and doc.get("format") == FORMAT, f"not a {FORMAT} document")
    _need(doc.get("version") == VERSION, f"unsupported manifest version {str(doc.get('version'))[:20]}")
    for key in ("stream_bytes", "header_bytes", "n_gaussians", "chunk_size", "header_crc32"):
        _need(isinstance(doc.get(key), int) and doc[key] >= 0, f"{key} must be an integer >= 0")
    chunks = doc.get("chunks")
    _need(isinstance(chunks, dict), "chunks must be an object")
    ends = _int_list(chunks.get("end"), "chunks.end")
    counts = _int_list(chunks.get("count"), "chunks.count", len(ends))
    _need(all(a < b for a, b in zip(ends, ends[1:])) and all(a < b for a, b in zip(counts, counts[1:])),
          "chunks must increase")  # fmt: skip
    levels = doc.get("levels", [])
    _need(isinstance(levels, list) and all(isinstance(lv, dict) for lv in levels), "levels must be a list")
    for lv in levels:
        for key in ("level", "count", "chunks", "end"):
            _need(isinstance(lv.get(key), int) and lv[key] >= 0, f"levels[].{key} must be an integer")
    rd = doc.get("rd")
    if rd is not None:
        _need(isinstance(rd, dict), "rd must be an object")
        n = len(_int_list(rd.get("count"), "rd.count"))
        _int_list(rd.get("bytes"), "rd.bytes", n)
        for key in ("psnr", "ssim"):
            if key in rd:
                _num_list(rd[key], f"rd.{key}", n)
    return Manifest(doc)


def check_against(m: Manifest, info, header: bytes) -> None:
    """ManifestError unless the manifest describes the stream whose header+index bytes are ``header``."""
    import zlib

    d = m.doc
    _need(d["header_bytes"] == len(header), "header size differs from the stream's")
    _need(d["header_crc32"] == zlib.crc32(header), "it describes a different stream (header CRC differs)")
    _need(d["n_gaussians"] == info.n_gaussians and d["chunk_size"] == info.chunk_size,
          "Gaussian count or chunk size differs from the stream's")  # fmt: skip
    ends = [c.offset + c.length for c in info.chunks]
    _need(d["chunks"]["end"] == ends, "chunk offsets differ from the stream's index")


__all__ = ["FORMAT", "VERSION", "MAX_BYTES", "Manifest", "ManifestError", "parse", "check_against"]
