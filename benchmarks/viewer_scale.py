"""The viewer at scale, measured in headless Chromium through Playwright: 33k, 300k and 1M Gaussians.

Usage:  nice python benchmarks/viewer_scale.py [--sizes 33097,300000,1000000] [--repeats 5] [--viewport 1280x720]

Scenes: the bundled ``trained_scenes/demo_objects.ckpt`` (33,097 Gaussians, ranked, 4 levels), and that
checkpoint's ranked Gaussians replicated (jittered copies, scales shrunk by k^(1/3), as
``benchmarks/build_scale.py`` does) to N, *rank-major* (all copies of rank 0, then rank 1, ...), so every prefix
is still a sensible operating point; levels at N/8, N/4, N/2, N; zstd chunks of 4096; the demo's test views.

Per scene, one viewer (in this process) and one Chromium tab at the viewport size:

* **server frame still / moving**: render time (ms) and size of sharp frames at rest, and of the frames
  delivered while the mouse orbits the camera for 3 s (plus frames delivered per second);
* **slider step -> sharp frame**: from the "]" key (one rate step, camera at rest) to the sharp frame for the
  new selection handed to the websocket (the server's send call; the browser decodes it a few ms later);
* **browser mode, rate change -> splats** (page 640x360, WebGL in software): from the Rate up/down button's
  callback (called by the script: the software-rendering page is slow to take keys) to the last splat byte
  *received by the page*
  (Playwright's websocket frames), and the bytes the page received for that rate change, against the bytes of
  the whole scene at that rate.

Medians over ``--repeats``. The server runs in the same process as the Playwright driver (which only waits).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _machine import machine_line  # noqa: E402

DEMO = ROOT / "trained_scenes" / "demo_objects.ckpt"


def replicated_source(n: int, seed: int = 0):
    """The demo checkpoint's ranked Gaussians replicated rank-major to ``n``, as a .ckpt ViewSource."""
    import torch

    from rave_viewer.codec import ProgressiveEncoder, scene_bounds
    from rave_viewer.rave.checkpoint import RaveCheckpoint
    from rave_viewer.viewer.sources import ViewSource, open_source

    demo = open_source(DEMO)
    base = demo.checkpoint.gaussians
    k = math.ceil(n / len(base))
    g = torch.Generator().manual_seed(seed)
    parts = []
    for i in range(k):
        c = base.map(lambda t: t.detach().clone())
        if i:
            sigma = c.scales.exp().mean(dim=1, keepdim=True) * 0.5
            c.means += torch.randn(c.means.shape, generator=g) * sigma
        if k > 1:
            c.scales -= math.log(k) / 3
        parts.append(c)
    keys = [name for name, _ in base.items()]
    # rank-major: [copy0 rank0, copy1 rank0, ..., copy0 rank1, ...]
    full = type(base)(**{key: torch.stack([getattr(p, key) for p in parts], 1).flatten(0, 1) for key in keys})
    full = full.prefix(n)
    quant = demo.checkpoint.quant
    bounds = scene_bounds(full)
    chunk = 4096
    enc = ProgressiveEncoder(full, quant, codec="zstd", chunk_size=chunk, bounds=bounds, progress=True)
    levels = [n // 8, n // 4, n // 2, n]
    ckpt = RaveCheckpoint(
        gaussians=full, order=torch.arange(n), level_sizes=levels, level_rates=[int(enc.size_of_prefix(s)) for s in levels],
        quant=quant, bounds=bounds, codec="zstd", chunk_size=chunk, rd={}, test_cameras=demo.test_cameras,
        meta={"source": "benchmarks/viewer_scale.py"},
    )  # fmt: skip
    ckpt._encoder = enc
    src = ViewSource(path=Path(f"demo_objects_x{k}_{n}.ckpt"), kind="ckpt", gaussians=ckpt.decoded_gaussians(),
                     test_cameras=demo.test_cameras, checkpoint=ckpt)  # fmt: skip
    src.gaussians = src.gaussians.detach().float()
    return src


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def measure(source, viewport: tuple[int, int], repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    from rave_viewer.viewer.app import ViewerApp
    from rave_viewer.viewer.browser import BYTES_PER_SPLAT
    from rave_viewer.viewer.screenshot import launch_chromium

    lo, hi = source.bounds("rate")
    # start half-way up the rate range (a checkpoint without an RD table would start at the full model,
    # where "rate up" has nothing to add)
    app = ViewerApp(source, host="127.0.0.1", port=0, browser=False, start=("rate", (lo + hi) / 2))
    frames: list[tuple[float, int, int, float, bool, int]] = []  # (t, W, H, seconds, sharp, version)
    lock = threading.Lock()
    out: dict = {"n": source.n}
    try:
        with sync_playwright() as p:
            ctx, cleanup = launch_chromium(p)
            try:
                page = ctx.new_page()
                page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
                received: list[tuple[float, int]] = []
                page.on("websocket", lambda ws: ws.on("framereceived",
                                                      lambda d: received.append((time.perf_counter(), len(d)))))
                page.goto(app.url)
                page.get_by_text("Encoded size").wait_for(timeout=300_000)
                t0 = time.monotonic()
                while not app.clients:
                    assert time.monotonic() - t0 < 60
                    page.wait_for_timeout(50)
                cs = next(iter(app.clients.values()))

                def on_frame(W, H, dt, sharp, cs=cs):
                    with lock:
                        frames.append((time.perf_counter(), W, H, dt, sharp, cs.session.snapshot().version))

                cs.renderer.on_frame = on_frame
                cs.request_render()  # (the first frame may have gone out before the hook)
                def wait(cond, timeout=600.0):
                    t = time.monotonic()
                    while not cond():
                        if time.monotonic() - t > timeout:
                            raise TimeoutError("benchmark step timed out")
                        page.wait_for_timeout(10)

                wait(lambda: any(f[4] for f in frames))
                page.wait_for_timeout(1500)
                # -- still frames, slider step -> sharp frame -------------------------------------------------
                page.mouse.click(viewport[0] // 3, viewport[1] // 2)  # focus the 3D view (the shortcut keys)
                page.wait_for_timeout(1500)
                steps, still = [], []
                for i in range(repeats):
                    key = "]" if i % 2 == 0 else "["
                    v0 = cs.session.snapshot().version
                    with lock:
                        n0 = len(frames)
                    t = time.perf_counter()
                    page.keyboard.press(key)
                    wait(lambda: any(f[4] and f[5] > v0 for f in frames[n0:]))
                    with lock:
                        f = next(f for f in frames[n0:] if f[4] and f[5] > v0)
                    steps.append(f[0] - t)
                    still.append((f[3], f[1], f[2]))
                    page.wait_for_timeout(800)
                print(f"  steps {[round(1e3 * s) for s in steps]} ms", file=sys.stderr)
                out["step_ms"] = 1e3 * med(steps)
                out["still_ms"] = 1e3 * med([s[0] for s in still])
                out["still_size"] = f"{still[0][1]}x{still[0][2]}"
                # -- moving: orbit with the mouse for 3 s --------------------------------------------------------
                with lock:
                    n0 = len(frames)
                x0, y0 = viewport[0] // 3, viewport[1] // 2
                page.mouse.move(x0, y0)
                page.mouse.down()
                t_start = time.perf_counter()
                i = 0
                while time.perf_counter() - t_start < 3.0:
                    i += 1
                    page.mouse.move(x0 + 120 * math.sin(i / 10), y0 + 40 * math.cos(i / 10))
                    page.wait_for_timeout(16)
                page.mouse.up()
                t_end = time.perf_counter()
                with lock:
                    moving = [f for f in frames[n0:] if not f[4] and f[0] <= t_end]
                out["move_ms"] = 1e3 * med([f[3] for f in moving])
                out["move_size"] = f"{moving[len(moving) // 2][1]}x{moving[len(moving) // 2][2]}" if moving else "-"
                out["move_fps"] = len(moving) / (t_end - t_start)
                print(f"  moving: {len(moving)} frames, {out['move_ms']:.0f} ms, {out['move_size']}", file=sys.stderr)
                page.wait_for_timeout(1500)
                # -- browser mode ------------------------------------------------------------------------------
                # headless Chromium draws WebGL in software (SwiftShader): a small page keeps its main thread free
                # to take the websocket frames; a laptop's GPU draws the splats at display rate
                page.set_viewport_size({"width": 640, "height": 360})
                page.wait_for_timeout(1500)
                t = time.perf_counter()
                page.get_by_text("Browser rendering").click()
                print("  browser: switching", file=sys.stderr)
                wait(lambda: cs.splats is not None and cs.splats.k == cs.session.k)
                print("  browser: splats sent", file=sys.stderr)
                full_bytes = cs.session.k * BYTES_PER_SPLAT
                wait(lambda: sum(b for _, b in received if _ >= t) >= full_bytes)
                out["browser_first_s"] = time.perf_counter() - t
                print(f"  browser: first load {out['browser_first_s']:.1f} s", file=sys.stderr)
                page.wait_for_timeout(2000)
                page.wait_for_timeout(1000)
                changes, sent, scene = [], [], []
                for i in range(repeats):
                    key = "]" if i % 2 == 0 else "["
                    k0 = cs.session.k
                    b0 = cs.splats.bytes_sent
                    page.wait_for_timeout(10)  # (frames of the previous step are in)
                    t = time.perf_counter()
                    # the Rate up / down button's callback, called here: the page's main thread is busy drawing
                    threading.Thread(target=cs.panel._guarded, args=(lambda: cs.panel.on_step(+1 if key == "]" else -1),)).start()
                    wait(lambda: cs.splats.k == cs.session.k != k0)
                    need = cs.splats.bytes_sent - b0
                    wait(lambda: sum(b for tt, b in received if tt >= t) >= need)
                    t_last = max(tt for tt, b in received if tt >= t) if need else time.perf_counter()
                    changes.append(t_last - t)
                    page.wait_for_timeout(1500)  # the rest of the messages (readouts, plot) arrive
                    sent.append(sum(b for tt, b in received if tt >= t))
                    scene.append(cs.session.k * BYTES_PER_SPLAT)
                print(f"  browser changes {[round(1e3 * c) for c in changes]} ms, bytes {sent}", file=sys.stderr)
                out["browser_change_ms"] = 1e3 * med(changes)
                out["browser_bytes"] = med(sent)
                out["block"] = app.splat_block
                out["scene_bytes"] = med(scene)
                out["step_gaussians"] = abs(cs.session.k - k0)
            finally:
                cleanup()
    finally:
        app.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="33097,300000,1000000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--viewport", default="1668x720", help="page size (default: a 1280x720 canvas beside the panel)")
    args = ap.parse_args()
    vw, vh = (int(x) for x in args.viewport.split("x"))
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        from rave_viewer.viewer.sources import open_source

        t = time.perf_counter()
        src = open_source(DEMO) if n == 33097 else replicated_source(n)
        print(f"scene {src.path.name}: {src.n:,} Gaussians ready in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        r = measure(src, (vw, vh), args.repeats)
        r["name"] = src.path.name
        rows.append(r)
        print(r, file=sys.stderr)
    print(machine_line())
    print()
    print("| scene | Gaussians | still frame ms (size) | moving frame ms (size) | moving frames/s delivered | "
          "slider step -> sharp frame ms | browser: rate change -> splats received ms | browser: bytes received "
          "per rate change | whole scene at that rate | first browser load s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['n']:,} | {r['still_ms']:.0f} ({r['still_size']}) | {r['move_ms']:.0f} "
              f"({r['move_size']}) | {r['move_fps']:.1f} | {r['step_ms']:.0f} | {r['browser_change_ms']:.0f} | "
              f"{r['browser_bytes'] / 1e3:,.0f} KB | {r['scene_bytes'] / 1e6:.2f} MB | {r['browser_first_s']:.1f} |")


if __name__ == "__main__":
    main()
