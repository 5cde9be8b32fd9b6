"""The README's viewer screenshot, taken by a script: the real app in headless Chromium (Playwright).

``python -m rave_viewer.viewer.screenshot [scene.ckpt] [--out assets/viewer.png] [--size 1280x720]
[--rate-fraction 0.35]`` (default scene: the demo in ``trained_scenes/``; the page at 1280x720, a laptop's
browser window). Needs the dev extra (``playwright``) and Debian's ``chromium``; never downloads a
browser. :func:`launch_chromium` is shared with the end-to-end test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..errors import RaveError, guarded

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str | None:
    """The system Chromium (Debian's ``chromium`` package), if installed."""
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def launch_chromium(playwright, user_data_dir: str | None = None, extra_args: tuple[str, ...] = ()):
    """A headless Chromium context (fresh profile, downloads accepted) from the system binary; ``extra_args``:
    more command-line switches (e.g. ``--disable-webgl``).

    Returns (context, cleanup) where ``cleanup()`` closes it and removes the temporary profile.
    """
    exe = chromium_path()
    if exe is None:
        raise RaveError("chromium is not installed (apt-get install chromium)")
    tmp = None
    if user_data_dir is None:
        tmp = tempfile.mkdtemp(prefix="rave-chromium-")
        user_data_dir = tmp
    ctx = playwright.chromium.launch_persistent_context(
        user_data_dir, executable_path=exe, args=CHROMIUM_ARGS + list(extra_args), headless=True, accept_downloads=True,
        viewport={"width": 1280, "height": 800},
    )  # fmt: skip

    def cleanup():
        try:
            ctx.close()
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)

    return ctx, cleanup


def wait_for_full_frame(app, timeout: float = 120.0) -> None:
    """Until some tab has shown a frame at its canvas' full resolution (the camera came to rest)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for cs in list(app.clients.values()):
            cam = cs.client.camera
            if cs.frames_shown and cs._frame_size == (cam.image_width, cam.image_height):
                return
        time.sleep(0.1)
    raise TimeoutError("no full-resolution frame reached the browser")


def capture(scene: str | os.PathLike, out: str | os.PathLike, *, rate_fraction: float = 0.35,
            size: tuple[int, int] = (1280, 720), view: int | None = None) -> Path:  # fmt: skip
    """Open ``scene`` in the viewer, set the slider to ``rate_fraction`` of its range, save a page screenshot.

    ``view``: snap the camera to this test view first (None: the viewer's opening camera, test view 0).
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise RaveError("the screenshot script needs playwright (pip install -e '.[dev]')") from None
    from ..fileio import atomic_write_bytes
    from .app import ViewerApp
    from .sources import open_source

    source = open_source(scene)
    app = ViewerApp(source, port=0)
    try:
        with sync_playwright() as p:
            ctx, cleanup = launch_chromium(p)
            try:
                page = ctx.new_page()
                page.set_viewport_size({"width": size[0], "height": size[1]})
                page.goto(app.url)
                page.get_by_text(source.unit_label.capitalize()).first.wait_for(timeout=60_000)
                for _ in range(200):
                    if app.clients:
                        break
                    time.sleep(0.05)
                page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")
                cs = next(iter(app.clients.values()))
                cams = app.source.test_cameras
                if view is not None:
                    if cams is None or not 0 <= view < len(cams):
                        n = 0 if cams is None else len(cams)
                        raise RaveError(f"--view {view} is out of range: the file has {n} test views", scene)
                    cs.snap_to_view(view)
                if cs.panel.slider is not None:
                    spec = cs.session.spec()
                    cs.panel.slider.value = spec.to_ui(spec.from_ui(spec.lo + rate_fraction * (spec.hi - spec.lo)))
                time.sleep(0.5)
                wait_for_full_frame(app)
                page.wait_for_timeout(1500)  # let the panel (and its chart) finish redrawing
                png = page.screenshot()
            finally:
                cleanup()
    finally:
        app.stop()
    out = Path(out)
    atomic_write_bytes(out, png)
    return out


def main(argv: list[str] | None = None) -> int:
    from .sources import find_demo_scene

    ap = argparse.ArgumentParser(prog="python -m rave_viewer.viewer.screenshot", description=__doc__.split("\n")[0])
    ap.add_argument("scene", nargs="?", help="default: the demo scene in trained_scenes/")
    ap.add_argument("--out", default="assets/viewer.png")
    ap.add_argument("--size", type=_size, default=(1280, 720), metavar="WxH", help="page size (default 1280x720)")
    ap.add_argument("--rate-fraction", type=_fraction, default=0.35, metavar="F",
                    help="slider position in [0, 1] of the rate range (default 0.35)")
    ap.add_argument("--view", type=int, metavar="N", help="snap the camera to test view N (default: the opening view)")
    args = ap.parse_args(argv)

    def run() -> None:
        out = capture(args.scene or find_demo_scene()[0], args.out, rate_fraction=args.rate_fraction, size=args.size,
                      view=args.view)
        print(f"wrote {out}")

    return guarded(run)


def _size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720), each side 320..4096."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}") from None
    if not (320 <= w <= 4096 and 320 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"each side must be within 320..4096, got {text!r}")
    return w, h


def _fraction(text: str) -> float:
    try:
        f = float(text)
    except ValueError:
        f = float("nan")
    if not 0.0 <= f <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return f


if __name__ == "__main__":
    sys.exit(main())
