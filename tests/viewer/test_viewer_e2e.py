"""End to end: the real viewer in headless Chromium, driven like a user (keyboard, clicks, downloads).

Needs Debian's ``chromium`` and the ``playwright`` package (dev extra); skipped without them unless
``RAVE_REQUIRE_BROWSER=1`` (CI), where their absence fails. ``RAVE_UPDATE_SCREENSHOT=1`` also rewrites the
README screenshot ``assets/viewer.png`` (demo scene if there is one, else this test's scene).
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from pathlib import Path

import pytest
from PIL import Image

from rave_viewer.viewer.app import ViewerApp
from rave_viewer.viewer.screenshot import capture, chromium_path, launch_chromium

REPO = Path(__file__).resolve().parents[2]
LABELS = ("Target rate", "Encoded size", "Gaussians", "Level", "PSNR, test mean")


def _need_browser():
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the playwright package"
    if chromium_path() is None:
        missing = "chromium"
    if missing:
        if os.environ.get("RAVE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{missing} is required for the end-to-end test (RAVE_REQUIRE_BROWSER=1)")
        pytest.skip(f"{missing} not installed")


def _wait(cond, timeout=60.0, what="condition"):
    t = time.monotonic()
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() - t > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _readouts(page) -> dict[str, str]:
    """The readout table as the page shows it."""
    out = {}
    for row in page.locator("tr").all_inner_texts():
        cells = [c.replace("\u00a0", " ").strip() for c in row.split("\t") if c.strip()]
        if len(cells) == 2 and (cells[0] in LABELS or cells[0].startswith("PSNR, view")):
            out[cells[0]] = cells[1]
    return out


def _count_bytes(r: dict[str, str]) -> tuple[int, int]:
    k = int(re.match(r"([\d,]+) of", r["Gaussians"]).group(1).replace(",", ""))
    b = int(re.search(r"\(([\d,]+) bytes\)", r["Encoded size"]).group(1).replace(",", ""))
    return k, b


def _settled(page, slider) -> dict[str, str]:
    """Readouts once the server has caught up with the slider's position (events are coalesced)."""

    def ok():
        v = float(slider.get_attribute("aria-valuenow"))
        r = _readouts(page)
        return r if r.get("Target rate") == f"{v:.2f} KB" else None

    return _wait(ok, 30, "the readouts to follow the slider")


def _downloads(page, click, n: int, timeout=60.0):
    got = []

    def on_download(d):
        got.append(d)

    page.on("download", on_download)
    click()
    t = time.monotonic()
    while len(got) < n:  # Playwright delivers events only inside its own calls: wait with one
        assert time.monotonic() - t < timeout, f"timed out waiting for {n} download(s), got {len(got)}"
        page.wait_for_timeout(50)
    page.remove_listener("download", on_download)
    return [(d.suggested_filename, Path(d.path()).read_bytes()) for d in got]


@pytest.fixture(scope="module")
def app(ckpt_source):
    a = ViewerApp(ckpt_source, host="127.0.0.1", port=0)
    yield a
    a.stop()


def test_viewer_in_a_real_browser(app, monkeypatch):
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx, cleanup = launch_chromium(p)
        try:
            page = ctx.new_page()
            page.set_viewport_size({"width": 960, "height": 640})
            page.goto(app.url)
            page.get_by_text("Encoded size").wait_for(timeout=60_000)
            cs = _wait(lambda: next(iter(app.clients.values()), None), what="the tab to connect")
            _wait(lambda: cs.frames_shown > 0, what="a first server frame")
            # the initial camera sits on the start test view: its exact PSNR is shown
            start = f"PSNR, view {app.source.test_cameras.names[app.start_view]}"
            _wait(lambda: re.match(r"[\d.]+ dB", _readouts(page).get(start, "")), 30, "view PSNR")

            # -- move the slider by keyboard: count and bytes grow monotonically --------------------------
            slider = page.get_by_role("slider").first
            slider.focus()
            page.keyboard.press("Home")
            seen = [_count_bytes(_settled(page, slider))]
            assert seen[0][0] < 330  # the coarsest level (within one chunk)
            for _ in range(4):
                for _ in range(60):  # 60 fine steps of 0.02 KB
                    page.keyboard.press("ArrowRight")
                seen.append(_count_bytes(_settled(page, slider)))
            ks, bs = zip(*seen)
            assert all(a < b for a, b in zip(ks, ks[1:])), seen
            assert all(a < b for a, b in zip(bs, bs[1:])), seen
            assert cs.session.k == ks[-1] and app.source.bytes_of(ks[-1]) == bs[-1]

            # -- Screenshot: a PNG of the view at the canvas' full resolution ----------------------------
            (name, data), = _downloads(page, lambda: page.get_by_role("button", name="Screenshot").click(), 1)
            img = Image.open(io.BytesIO(data))
            assert name.endswith(".png") and img.format == "PNG"
            cam = cs.client.camera
            assert img.size == (cam.image_width, cam.image_height) and img.size[0] > 300

            # -- Export RD: CSV with monotone rates and a PNG plot ----------------------------------------
            files = dict(_downloads(page, lambda: page.get_by_role("button", name="Export RD").click(), 2))
            rows = list(csv.DictReader(io.StringIO(files["sphere_rd.csv"].decode())))
            rates = [int(r["bytes"]) for r in rows]
            assert len(rates) >= 10 and all(a < b for a, b in zip(rates, rates[1:]))
            plot = next(v for k, v in files.items() if k.endswith(".png"))
            assert Image.open(io.BytesIO(plot)).size == (960, 640)

            # -- a render error shows in the panel; the next render works -------------------------------
            real, calls = app.frames.render_c2w, []

            def fail_once(*a, **kw):
                calls.append(1)
                if len(calls) == 1:
                    raise RuntimeError("injected render failure")
                return real(*a, **kw)

            monkeypatch.setattr(app.frames, "render_c2w", fail_once)
            slider.focus()
            page.keyboard.press("ArrowLeft")
            page.get_by_text("injected render failure").wait_for(timeout=30_000)
            page.keyboard.press("ArrowLeft")
            page.get_by_text("injected render failure").wait_for(state="hidden", timeout=30_000)
            monkeypatch.setattr(app.frames, "render_c2w", real)

            # -- a second tab keeps its own slider -------------------------------------------------------
            page2 = ctx.new_page()
            page2.set_viewport_size({"width": 960, "height": 640})
            page2.goto(app.url)
            page2.get_by_text("Encoded size").wait_for(timeout=60_000)
            k1 = _count_bytes(_readouts(page))[0]
            assert _count_bytes(_readouts(page2))[0] == app.source.default_k()  # fresh tab: the default start
            slider2 = page2.get_by_role("slider").first
            slider2.focus()
            page2.keyboard.press("Home")
            k2 = _count_bytes(_settled(page2, slider2))[0]
            assert k2 < k1 and _count_bytes(_readouts(page))[0] == k1
            assert len(app.clients) == 2
        finally:
            cleanup()

    if os.environ.get("RAVE_UPDATE_SCREENSHOT") == "1":
        from rave_viewer.errors import RaveError
        from rave_viewer.viewer.sources import find_demo_scene

        try:
            scene = find_demo_scene(REPO)[0]
        except RaveError:
            scene = app.source.path
        capture(scene, REPO / "assets" / "viewer.png")


def test_a_foreign_page_in_the_browser_cannot_reach_the_viewer(app):
    """A page from another origin opens ws://127.0.0.1:PORT from JavaScript, as an attacker's page would."""
    _need_browser()
    import http.server
    import threading

    import viser
    from playwright.sync_api import sync_playwright

    port = app.port
    html = f"""<!doctype html><html><body><script>
      window.result = {{opened: false, messages: 0, closed: false, fetched: null}};
      const ws = new WebSocket("ws://127.0.0.1:{port}/", ["viser-v{viser.__version__}"]);
      ws.onopen = () => window.result.opened = true;
      ws.onmessage = () => window.result.messages += 1;
      ws.onclose = () => window.result.closed = true;
      fetch("http://127.0.0.1:{port}/").then(r => r.text()).then(t => window.result.fetched = t.length)
        .catch(() => window.result.fetched = -1);
    </script></body></html>""".encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *a):
            pass

    _wait(lambda: not app.clients, 30, "the earlier tabs to close")
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            ctx, cleanup = launch_chromium(p)
            try:
                page = ctx.new_page()
                page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
                page.wait_for_function("window.result.closed && window.result.fetched !== null", timeout=30_000)
                r = page.evaluate("window.result")
                assert r == {"opened": False, "messages": 0, "closed": True, "fetched": -1}, r
                assert not app.clients  # no tab was created for it
                # the viewer's own page in the same browser still works
                page.goto(app.url)
                page.get_by_text("Encoded size").wait_for(timeout=60_000)
            finally:
                cleanup()
    finally:
        evil.shutdown()
