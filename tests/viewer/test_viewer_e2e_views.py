"""End to end in headless Chromium (one browser for the module): keys, shortcuts, A/B split, the rate-sweep MP4,
browser rendering's bytes per rate change, what the slider adds (in the page's pixels).

Skipped without Chromium/Playwright unless RAVE_REQUIRE_BROWSER=1."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from rave_viewer.viewer.app import ViewerApp
from rave_viewer.viewer.browser import BYTES_PER_SPLAT
from test_viewer_e2e import _count_bytes, _downloads, _need_browser, _readouts, _wait

BLOCK = 256  # splat node size for the test scene (1,500 Gaussians), so a rate change spans a few blocks


@pytest.fixture(scope="module")
def playwright():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    from rave_viewer.viewer.screenshot import launch_chromium

    ctx, cleanup = launch_chromium(playwright)
    try:
        yield ctx
    finally:
        cleanup()


@pytest.fixture(scope="module")
def app(ckpt_source):
    a = ViewerApp(ckpt_source, host="127.0.0.1", port=0, splat_block=BLOCK)
    yield a
    a.stop()


def _open(browser, app, on_ws=None):
    page = browser.new_page()
    page.set_viewport_size({"width": 1100, "height": 700})
    if on_ws is not None:
        page.on("websocket", on_ws)
    before = set(app.clients)
    page.goto(app.url)
    page.get_by_text("Encoded size").wait_for(timeout=60_000)
    cs = _wait(lambda: next((app.clients[c] for c in set(app.clients) - before), None), what="the tab to connect")
    _wait(lambda: cs.frames_shown > 0 or cs.session.snapshot().browser, what="a first frame")
    return page, cs


def _pwait(page, cond, timeout=30.0, what="condition"):
    """_wait that polls through Playwright (its events, e.g. websocket frames, arrive only inside its calls)."""
    t = time.monotonic()
    while not cond():
        assert time.monotonic() - t < timeout, f"timed out waiting for {what}"
        page.wait_for_timeout(50)


def _target(page) -> str:
    return _readouts(page).get("Target rate", "")


def test_keys_on_the_slider_never_move_the_camera_and_shortcuts_press_buttons(browser, app):
    page, cs = _open(browser, app)
    try:
        assert page.evaluate("typeof window.__raveKeys") == "object"  # the key script is on the page
        _wait(lambda: cs.session.snapshot().view == app.start_view, what="the first camera on the start view")
        time.sleep(0.5)  # let the page's start-up camera messages pass
        slider = page.get_by_role("slider").first
        slider.focus()
        k0, cams0 = cs.session.k, cs.camera_messages
        for _ in range(8):
            page.keyboard.press("ArrowRight")
        _wait(lambda: _target(page) == f"{float(slider.get_attribute('aria-valuenow')):.2f} KB", 30, "readouts")
        time.sleep(0.5)
        assert cs.session.k > k0  # 8 presses changed the rate ...
        assert cs.camera_messages == cams0  # ... and sent no camera message
        assert cs.session.snapshot().view == app.start_view  # the test-view snap (and its exact PSNR) survives
        assert page.evaluate("window.__raveKeys.stopped") >= 8
        # readout values never wrap inside a number or between a number and its unit: every word-group
        # (the text between breakable spaces) lies on one line
        split = page.evaluate("""() => {
          const bad = [];
          let words = 0;
          for (const td of document.querySelectorAll("td")) {
            const walk = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
            for (let node = walk.nextNode(); node; node = walk.nextNode()) {
            let i = 0;
            for (const word of node.textContent.split(" ")) {
              const r = document.createRange();
              r.setStart(node, i); r.setEnd(node, i + word.length);
              const tops = new Set(Array.from(r.getClientRects()).map((b) => Math.round(b.top)));
              if (tops.size > 1) bad.push(word);
              i += word.length + 1;
              words += 1;
            }
            }
          }
          return words > 10 ? bad : ["(no readout text found)"];
        }""")
        assert split == [], split

        # shortcuts act when the 3D view has the focus: "]" is the Rate up button, "b" the A/B split
        page.mouse.click(5, 400)  # the canvas (left of the panel)
        k1 = cs.session.k
        page.keyboard.press("]")
        _wait(lambda: cs.session.k > k1, 30, "rate up by key")
        n = cs.frames_shown
        page.keyboard.press("b")
        _wait(lambda: cs.session.snapshot().show == "A/B split", 30, "split by key")
        # the split view: two operating points with two different byte counts, each with its PSNR
        page.get_by_text("B (right)").wait_for(timeout=30_000)

        def split_rows() -> dict[str, str]:
            rows = {}
            for row in page.locator("tr").all_inner_texts():
                cells = [c.replace("\u00a0", " ").strip() for c in row.split("\t") if c.strip()]
                if len(cells) == 2 and cells[0] in ("A (left)", "B (right)"):
                    rows[cells[0]] = cells[1]
            return rows

        def a_bytes(rows) -> int | None:
            found = re.findall(r"\(([\d,]+) bytes\)", rows.get("A (left)", ""))
            return int(found[0].replace(",", "")) if found else None

        # the page shows the A row of the latest selection once its update arrived (it may lag a key press)
        _wait(lambda: a_bytes(split_rows()) == cs.session.selection().nbytes, 30, "the A row of the selection")
        rows = split_rows()
        (ba,), (bb,) = (re.findall(r"\(([\d,]+) bytes\)", rows[x]) for x in ("A (left)", "B (right)"))
        assert ba != bb and all(" dB" in rows[x] for x in rows)
        _wait(lambda: cs.frames_shown > n, 30, "a split frame")
        page.keyboard.press("b")
        _wait(lambda: cs.session.snapshot().show == "render", 30, "split off by key")
    finally:
        page.close()


def test_rate_sweep_mp4_export_is_a_valid_video_of_the_stated_length(browser, app, tmp_path):
    import imageio_ffmpeg

    page, cs = _open(browser, app)
    try:
        cs.panel.video_frames.value = 12
        page.get_by_text("Rate-sweep video").click()  # open the folder
        files = _downloads(page, lambda: page.get_by_role("button", name="Export rate-sweep MP4").click(), 1, 120)
        (name, data), = files
        assert name.endswith(".mp4") and "12f" in name
        p = Path(tmp_path) / name
        p.write_bytes(data)
        frames, secs = imageio_ffmpeg.count_frames_and_secs(str(p))
        assert frames == 12 and secs == pytest.approx(12 / 24, abs=0.05)
        reader = imageio_ffmpeg.read_frames(str(p))
        meta = next(reader)
        assert meta["size"] == (640, 352)
        first = np.frombuffer(next(reader), np.uint8)
        assert first.std() > 5  # a picture, not a blank frame
        page.get_by_text("Video sent").wait_for(timeout=30_000)

        # a failing export is a message in the panel; the server keeps serving
        real = app.frames.render_c2w
        app.frames.render_c2w = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full (injected)"))
        try:
            page.get_by_role("button", name="Export rate-sweep MP4").click()
            page.get_by_text("Video export failed").first.wait_for(timeout=30_000)
        finally:
            app.frames.render_c2w = real
        k = cs.session.k
        page.get_by_role("button", name="Rate up ]").click()
        _wait(lambda: cs.session.k > k, 30, "the viewer to keep working after a failed export")
    finally:
        page.close()


def test_a_rate_change_in_browser_mode_sends_only_the_difference(browser, app):
    received: list[int] = []

    def on_ws(ws):
        ws.on("framereceived", lambda payload: received.append(len(payload)))

    page, cs = _open(browser, app, on_ws)
    try:
        page.get_by_text("Browser rendering").click()
        _wait(lambda: cs.splats is not None and cs.splats.k == cs.session.k, 30, "the splats")
        scene_bytes = app.source.n * BYTES_PER_SPLAT
        for _ in range(2):  # rate up, one step at a time: each sends the added Gaussians (+ one block at most)
            page.wait_for_timeout(500)
            n0, k0, sent0 = sum(received), cs.session.k, cs.splats.bytes_sent
            page.get_by_role("button", name="Rate up ]").click()
            _pwait(page, lambda: cs.splats.k == cs.session.k != k0, what="the new splats")
            added = cs.session.k - k0
            _pwait(page, lambda: sum(received) - n0 >= added * BYTES_PER_SPLAT, what="the splats on the wire")
            page.wait_for_timeout(500)  # everything the server sent for it has arrived
            wire = sum(received) - n0
            assert cs.splats.bytes_sent - sent0 <= (added + BLOCK) * BYTES_PER_SPLAT
            assert wire < scene_bytes / 2, (wire, scene_bytes)  # measured on the websocket
        page.wait_for_timeout(500)
        n0 = sum(received)
        page.get_by_role("button", name="Rate down [").click()  # down: blocks are hidden, a new tail only
        _pwait(page, lambda: cs.splats.k == cs.session.k, what="the lower rate")
        page.wait_for_timeout(500)
        assert sum(received) - n0 < (BLOCK + 64) * BYTES_PER_SPLAT
        _count_bytes(_readouts(page))  # the readouts still parse
    finally:
        page.close()


def _canvas_shot(page) -> np.ndarray:
    """[H, W, 3] uint8 of the 3D view's canvas as Chromium shows it (the largest canvas on the page)."""
    import io

    from PIL import Image

    boxes = [b for b in (c.bounding_box() for c in page.locator("canvas").all()) if b]
    box = max(boxes, key=lambda b: b["width"] * b["height"])
    png = page.screenshot(clip=box, animations="disabled")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _steady_shot(page, timeout=30.0, differs_from=None) -> np.ndarray:
    """A canvas screenshot once two in a row agree (the frame on screen is no longer changing)."""
    t, last = time.monotonic(), None
    while True:
        shot = _canvas_shot(page)
        new = differs_from is None or shot.shape != differs_from.shape or \
            np.abs(shot.astype(int) - differs_from).max() > 40
        if new and last is not None and last.shape == shot.shape and np.abs(shot.astype(int) - last).max() <= 2:
            return shot
        assert time.monotonic() - t < timeout, "the canvas never settled"
        last = shot
        page.wait_for_timeout(300)


def test_what_the_slider_adds_changes_pixels_in_chromium_only_where_the_added_gaussians_are(browser, app):
    """The mode off and on, screenshotted in Chromium: every changed pixel lies in the added interval's footprint
    (an alpha render of only Gaussians B..A, computed here), and many pixels change."""
    import torch

    from rave_viewer.render import render
    from rave_viewer.viewer.frames import intrinsics_from_fov, viewmat_from_c2w

    page, cs = _open(browser, app)
    try:
        cs.panel.jpeg.value = 95  # (still frames: JPEG noise well below the threshold used below)
        cam = cs.client.camera
        full = lambda: cs._frame_size == (cam.image_width, cam.image_height)  # noqa: E731
        _wait(lambda: cs.session.snapshot().view == app.start_view and full(), 60, "a sharp frame on the start view")
        # A: a typed rate (a cap) of about 350 Gaussians; B: the coarsest level (200, where a tab starts B)
        src = app.source
        box = page.get_by_label(re.compile(r"^Type Rate"))
        box.fill(f"{src.bytes_of(350) / 1000:.2f}")
        box.press("Enter")
        _wait(lambda: abs(cs.session.k - 350) <= 20, 30, "the typed rate")
        lo, hi = sorted((cs.session.snapshot().k_b, cs.session.k))
        assert lo == src.min_count
        # step back (the scene then covers a third of the view): most of the canvas lies outside the footprint
        pos, look = np.asarray(cam.position, float), np.asarray(cam.look_at, float)
        n = cs.frames_shown
        cs._place(look + 1.8 * (pos - look), look)
        _wait(lambda: cs.frames_shown > n + 1 and full(), 60, "a sharp frame at A")
        for close in page.locator(".mantine-Notification-closeButton").all():  # viser's toasts cover the canvas
            close.click()
        page.wait_for_timeout(800)
        before = _steady_shot(page)
        n = cs.frames_shown
        page.get_by_label("View shows").click()  # the dropdown, as a user picks it
        page.get_by_role("option", name="what the slider adds").click()
        _wait(lambda: cs.session.snapshot().show == "what the slider adds", 30, "the mode to switch")
        _wait(lambda: cs.frames_shown > n and full(), 60, "a sharp frame of the added Gaussians")
        after = _steady_shot(page, differs_from=before)
        st, (W, H) = cs.camera_state(), cs._frame_size
        assert before.shape == after.shape
        assert np.allclose(st.c2w[:3, 3], look + 1.8 * (pos - look), atol=1e-3)  # the camera did not move
        # the footprint of the added interval alone, at the frame's camera and size
        added = app.frames.gaussians.subset(torch.arange(lo, hi))
        with torch.no_grad():
            _, alpha, _ = render(added, viewmat_from_c2w(st.c2w)[None], intrinsics_from_fov(st.fov, W, H)[None],
                                 W, H, backend="cpu")  # fmt: skip
        # |change| <= the added Gaussians' alpha alone (their weights in the full image are at most that):
        # a change above 48/255 needs alpha > 32/255 once JPEG noise (< 16/255 at quality 95) is allowed for
        covered = alpha[0, ..., 0].numpy() > 32 / 255
        if covered.shape != after.shape[:2]:  # the canvas shows the frame scaled to its CSS size
            from PIL import Image

            covered = np.asarray(Image.fromarray(covered).resize(after.shape[1::-1], Image.NEAREST))
        # JPEG (8x8 blocks, chroma at half resolution) smears a colour edge by a few pixels: grow the footprint
        from scipy.ndimage import binary_dilation

        near = binary_dilation(covered, iterations=4)
        changed = np.abs(after.astype(int) - before).max(-1) > 48
        outside = changed & ~near
        assert changed.sum() > 0.02 * changed.size, changed.mean()
        assert near.mean() < 0.5, near.mean()  # (a footprint that covers the view would prove nothing)
        assert outside.sum() <= 0.001 * changed.sum(), (outside.sum(), changed.sum())
        px = after[changed].astype(int)
        assert (px[:, 0] + px[:, 2] - 2 * px[:, 1]).mean() > 60  # and what changed turned magenta
    finally:
        page.close()


def test_a_browser_without_webgl_gets_a_message_and_the_rest_keeps_working(playwright, browser, app, monkeypatch):
    """Chromium with WebGL switched off: the page says why nothing draws (viser's panel needs WebGL too), the server
    never renders for it, and a normal tab next to it keeps its frames, its slider and its exports; a failing
    export is a message in that tab's page."""
    from rave_viewer.viewer.page_script import NO_WEBGL
    from rave_viewer.viewer.screenshot import launch_chromium

    page, cs = _open(browser, app)
    ctx2, cleanup2 = launch_chromium(playwright, extra_args=("--disable-webgl", "--disable-3d-apis"))
    try:
        tabs = set(app.clients)
        dark = ctx2.new_page()
        dark.goto(app.url)
        dark.locator("#rave-no-webgl").wait_for(timeout=60_000)
        assert dark.locator("#rave-no-webgl").inner_text() == NO_WEBGL
        assert dark.evaluate("window.__raveKeys !== undefined")  # (the page script ran)
        dark.wait_for_timeout(1500)
        assert set(app.clients) == tabs  # no tab (and no renders) for a page that cannot draw
        # the normal tab keeps working: a rate step gives a new frame
        for _ in range(2):
            k, n = cs.session.k, cs.delivered_frames
            page.get_by_role("button", name="Rate up ]").click()
            _wait(lambda: cs.session.k > k and cs.delivered_frames > n, 60, "a frame for the new rate")
        # a failing export ("Export at this rate") is a notification; the tab keeps working
        monkeypatch.setattr(app.source, "encode_prefix", lambda k: (_ for _ in ()).throw(OSError("disk full (injected)")))
        page.get_by_role("button", name="Export at this rate").click()
        page.get_by_text("disk full (injected)").first.wait_for(timeout=30_000)
        monkeypatch.undo()
        k, n = cs.session.k, cs.delivered_frames
        page.get_by_role("button", name="Rate down [").click()
        _wait(lambda: cs.session.k < k and cs.delivered_frames > n, 60, "a frame after the failed export")
        assert dark.locator("#rave-no-webgl").is_visible()
    finally:
        cleanup2()
        page.close()
