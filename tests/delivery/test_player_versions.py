"""The web player must decode every .rave version rave build/encode writes (v3, v4) exactly as Python does."""

from __future__ import annotations

import base64
import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from rave_viewer.codec import ProgressiveEncoder, QuantConfig, read_info
from rave_viewer.codec.container import FAINT_SHIFT, FLAG_SH_KLT, FLAG_SH_VQ
from rave_viewer.codec.presets import preset
from rave_viewer.delivery.publish import player_html, publish
from rave_viewer.delivery.serve import RangeServer
from rave_viewer.rave.checkpoint import load_checkpoint
from rave_viewer.scene.gaussians import Gaussians

from delivery_helpers import _decoded

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "trained_scenes" / "demo_objects.ckpt"
SH_C0 = 0.28209479177387814
#: published site per quality preset: the format version and header flags its stream must have
PRESETS = {"medium": (3, FLAG_SH_VQ | 2 << FAINT_SHIFT), "very-high": (4, FLAG_SH_KLT | 6 << FAINT_SHIFT)}
FIELDS = ("means", "quats", "scales", "opacity", "rgb")


def _flags(data: bytes) -> int:
    return struct.unpack_from("<H", data, 34)[0]


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """{preset: folder} with demo_objects published at that quality preset (what `rave build --quality` writes)."""
    out = {}
    for name in PRESETS:
        ckpt = load_checkpoint(CKPT)
        ckpt.quant = preset(name).fit(ckpt.gaussians, ckpt.bounds)
        d = tmp_path_factory.mktemp(name)
        publish(CKPT, d, ckpt=ckpt, progress=False)
        out[name] = d
    return out


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (software WebGL) for the module; skipped like test_publish.py's without one."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    from rave_viewer.viewer.screenshot import CHROMIUM_ARGS, chromium_path

    if sync_playwright is None or not chromium_path():
        missing = "the playwright package" if sync_playwright is None else "chromium"
        if os.environ.get("RAVE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{missing} is required for the end-to-end test (RAVE_REQUIRE_BROWSER=1)")
        pytest.skip(f"{missing} not installed")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                     args=CHROMIUM_ARGS + ["--enable-unsafe-swiftshader", "--use-angle=swiftshader"])
        try:
            yield browser
        finally:
            browser.close()


# every Gaussian the page's decoder returns, per field, as base64 of the little-endian float32 array
_DECODE_ALL_JS = """async (name) => {
  const data = new Uint8Array(await (await fetch(name, { cache: "no-store" })).arrayBuffer());
  const h = window.raveDecoder.parseHeader(data);
  const parts = { means: [], quats: [], scales: [], opacity: [], rgb: [] };
  for (const c of h.chunks) {
    const d = window.raveDecoder.decodeChunk(h, data.subarray(c.offset, c.end), c.count);
    for (const k in parts) parts[k].push(d[k]);
  }
  const out = { version: h.version, faintBits: h.faintBits, codebook: h.codebook, shTransform: h.shTransform };
  for (const k in parts) {
    const all = new Float32Array(parts[k].reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts[k]) { all.set(p, o); o += p.length; }
    const bytes = new Uint8Array(all.buffer);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    out[k] = btoa(s);
  }
  return out;
}"""

_PARSE_JS = """async (name) => {
  const data = new Uint8Array(await (await fetch(name, { cache: "no-store" })).arrayBuffer());
  try { window.raveDecoder.parseHeader(data); return null; } catch (e) { return String(e.message); }
}"""


def _reference(data: bytes) -> dict[str, np.ndarray]:
    """What the player renders of the Python decoder's Gaussians, per field, in stream order (float32)."""
    g = _decoded(data).gaussians
    return {"means": g.means.reshape(-1).numpy(), "quats": g.quats.reshape(-1).numpy(),
            "scales": g.scales.double().exp().float().reshape(-1).numpy(),
            "opacity": torch.sigmoid(g.opacities.double()).float().numpy(),
            "rgb": (0.5 + SH_C0 * g.sh0.double()).clamp(0, 1).float().reshape(-1).numpy()}  # fmt: skip


def _assert_same_gaussians(js: dict, data: bytes, label: str) -> None:
    """Bit-exact positions/rotations; scales, alpha, colour within float32 rounding (player derives them in float64)."""
    ref = _reference(data)
    got = {k: np.frombuffer(base64.b64decode(js[k]), dtype="<f4") for k in FIELDS}
    for k in FIELDS:
        assert got[k].shape == ref[k].shape, (label, k, got[k].shape, ref[k].shape)
    for k in ("means", "quats"):
        bad = np.flatnonzero(got[k] != ref[k])
        assert not bad.size, (label, k, bad.size, got[k][bad[:3]], ref[k][bad[:3]])
    assert np.allclose(got["scales"], ref["scales"], rtol=2e-6, atol=0), label
    for k in ("opacity", "rgb"):
        assert np.abs(got[k] - ref[k].astype(np.float64)).max() <= 2e-6, (label, k)


def _wait(page, timeout=90.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        st = page.evaluate("window.rave")
        if st["state"] in ("done", "failed") and (st["state"] == "failed" or st["shown"] == st["gaussians"]):
            return st
        time.sleep(0.2)
    return page.evaluate("window.rave")


@pytest.mark.parametrize("name", list(PRESETS))
def test_published_player_plays_a_preset_stream(sites, chromium, name):
    """`rave build` (default preset medium: v3) and very-high (v4) checkpoints play in the published page."""
    site, (version, flags) = sites[name], PRESETS[name]
    data = (site / "demo_objects.rave").read_bytes()
    info = read_info(data)
    assert info.format_version == version and _flags(data) == flags  # the stream is the version under test
    doc = json.loads((site / "demo_objects.manifest.json").read_text())
    assert doc["format_version"] == version
    with RangeServer(site) as s:
        page = chromium.new_page(viewport={"width": 320, "height": 240})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(s.url("index.html?full"))
            st = _wait(page)
            js = page.evaluate(_DECODE_ALL_JS, "demo_objects.rave")
            status = page.inner_text("#status")
        finally:
            page.close()
    assert not errors and st["error"] is None and st["state"] == "done", (errors, st, status)
    assert st["gaussians"] == st["shown"] == info.n_gaussians and st["chunks"] == len(info.chunks)
    assert f"{info.n_gaussians:,} of {info.n_gaussians:,} Gaussians" in status
    assert js["version"] == version and js["faintBits"] == flags >> FAINT_SHIFT
    assert (js["codebook"] > 0) == bool(flags & FLAG_SH_VQ)
    assert js["shTransform"] == (3 * 8 if flags & FLAG_SH_KLT else 0)  # SH degree 2: D = 3 x 8
    _assert_same_gaussians(js, data, name)
    # the page's own running sums (what it rendered) agree with the Python decode too
    ref = _reference(data)
    for k in FIELDS:  # the page sums |q| of the quaternions
        want = float(np.abs(ref[k].astype(np.float64)).sum() if k == "quats" else ref[k].astype(np.float64).sum())
        assert abs(st["sums"][k] - want) <= 1e-6 * abs(want) + 1e-3, (name, k, st["sums"][k], want)


def _synthetic_streams() -> dict[str, bytes]:
    """Layouts the presets miss: v1, scalar-SH v3 with 16-bit columns, 54-bit-Morton v4 (BigInt path), SH0 v4."""
    g3 = Gaussians.random(3000, 3, seed=5)
    g0 = Gaussians.random(3000, 0, seed=6)
    for g in (g3, g0):  # opacities over the whole range: every faint class occurs
        a = torch.rand(len(g), generator=torch.Generator().manual_seed(2)).clamp(1e-4, 1 - 1e-4)
        g.opacities.copy_(torch.logit(a.double()).float())
    enc = lambda g, cfg, **kw: ProgressiveEncoder(g, cfg, codec="zstd", chunk_size=1024, progress=False,  # noqa: E731
                                                  **kw).encode()
    return {
        "v1.rave": enc(g3, QuantConfig(), format_version=1),
        "v3-scalar.rave": enc(g3, preset("very-high", shN_step=0.0)),
        "v4-bigint.rave": enc(g3, preset("lossless-ish")),
        "v4-sh0.rave": enc(g0, preset("very-high")),
    }


def _forge(data: bytes, version: int | None = None, flags: int | None = None, k: int | None = None) -> bytes:
    """``data`` with another version field, flags or codebook-section K, its header CRCs recomputed."""
    b = bytearray(data)
    if version is not None:
        struct.pack_into("<H", b, 4, version)
    if flags is not None:
        struct.pack_into("<H", b, 34, flags)
    if k is not None:
        struct.pack_into("<I", b, 112, k)
    struct.pack_into("<I", b, 108, zlib.crc32(bytes(b[:108])))
    struct.pack_into("<I", b, 120, zlib.crc32(bytes(b[:120])))
    return bytes(b)


def test_player_decoder_covers_every_layout_and_refuses_unknown_ones(sites, chromium):
    """Other layouts must match Python too, and unknown versions/flags must be one clear line, not garbage."""
    site = sites["very-high"]
    streams = _synthetic_streams()
    for fname, data in streams.items():
        (site / fname).write_bytes(data)
    assert [read_info(d).format_version for d in streams.values()] == [1, 3, 4, 4]
    v4 = (site / "demo_objects.rave").read_bytes()
    v3 = (sites["medium"] / "demo_objects.rave").read_bytes()
    f4, f3 = _flags(v4), _flags(v3)
    forged = {
        "v5.rave": (_forge(v4, version=5), "format version 5 is not supported by this player (1, 2, 3, 4)"),
        "anchors.rave": (_forge(v4, version=0x0101), "anchor (Scaffold-GS) stream"),
        "v4-flag4.rave": (_forge(v4, flags=f4 | 4), f"unknown flags {f4 | 4:#x}"),
        "v3-klt.rave": (_forge(v3, flags=f3 | FLAG_SH_KLT), f"unknown flags {f3 | FLAG_SH_KLT:#x}"),
        "v4-vq-klt.rave": (_forge(v4, flags=f4 | FLAG_SH_VQ), "both a codebook and transform-coded"),
        "v4-d.rave": (_forge(v4, k=9), "invalid SH transform size 9"),
    }
    for fname, (data, _) in forged.items():
        (site / fname).write_bytes(data)
    (site / "v5.html").write_text(player_html("v5.rave", "v5.manifest.json", "v5"), encoding="utf-8")
    with RangeServer(site) as s:
        page = chromium.new_page(viewport={"width": 200, "height": 150})
        try:
            page.goto(s.url("index.html?count=1"))
            page.wait_for_function("window.raveDecoder !== undefined", timeout=30_000)
            decoded = {fname: page.evaluate(_DECODE_ALL_JS, fname) for fname in streams}
            refused = {fname: page.evaluate(_PARSE_JS, fname) for fname in forged}
            page.goto(s.url("v5.html"))
            st = _wait(page, timeout=30)
            status = page.inner_text("#status")
        finally:
            page.close()
    for fname, data in streams.items():
        _assert_same_gaussians(decoded[fname], data, fname)
    assert decoded["v4-bigint.rave"]["shTransform"] == 45 and decoded["v4-sh0.rave"]["shTransform"] == 0
    assert decoded["v3-scalar.rave"]["faintBits"] == 6 and decoded["v3-scalar.rave"]["codebook"] == 0
    for fname, (_, want) in forged.items():
        assert refused[fname] is not None and want in refused[fname], (fname, refused[fname])
    assert st["state"] == "failed" and "format version 5 is not supported" in st["error"], st
    assert "format version 5 is not supported" in status and st["gaussians"] == 0
