"""Viewer frame time on the server-side render path, and the cost of a slider event (which never renders).

Usage:  python benchmarks/viewer.py [scene.ckpt] [--test-scene] [--threads N] [--quick]
Default scenes: the demo checkpoint in trained_scenes/ (if any) and synthetic scenes of 10k / 100k Gaussians.
A frame is what one nerfview render task costs in ``ClientState._render_frame``: our render of the selected
prefix at the tab's resolution, conversion to uint8, and the JPEG encoding viser does before sending
(quality 40 while the camera moves, 70 at rest). "moving" is a low resolution (the viewer's pacing now keeps
moving frames at >= 480 px on the long side: see benchmarks/viewer_scale.py); full is the canvas (1280x720). Median (and best) of several runs after a warm-up; on
a shared, loaded machine the best is the more reproducible number. Prints markdown.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _machine import machine_line  # noqa: E402

RESOLUTIONS = [("moving", 320, 180, 40), ("still", 1280, 720, 70)]
SHARES = [0.25, 1.0]


def synthetic_source(n: int, seed: int = 0):
    """Random Gaussians in front of a camera at the origin (looking down +z), as a plain ViewSource."""
    import torch

    from rave_viewer.scene.gaussians import Gaussians
    from rave_viewer.viewer.sources import ViewSource

    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g) * 4 + 2
    xy = (torch.rand(n, 2, generator=g) * 2 - 1) * z[:, None] * math.tan(math.radians(30))
    gs = Gaussians(
        means=torch.cat([xy, z[:, None]], dim=1), quats=torch.randn(n, 4, generator=g),
        scales=torch.log(torch.exp(torch.rand(n, 3, generator=g) * math.log(8)) * 0.004),
        opacities=torch.randn(n, generator=g) * 1.5, sh0=torch.randn(n, 1, 3, generator=g) * 0.5,
        shN=torch.randn(n, 15, 3, generator=g) * 0.1,
    )  # fmt: skip
    return ViewSource(path=Path(f"synthetic-{n // 1000}k.ply"), kind="ply", gaussians=gs)


def camera_for(src):
    """(c2w, vertical fov) looking at the scene: the first test view, else the origin camera."""
    import numpy as np

    from rave_viewer.viewer.frames import pose_of_test_view

    if src.test_cameras is not None:
        c2w, _, fov = pose_of_test_view(src.test_cameras, 0)
        return c2w, fov
    return np.eye(4), math.radians(50)


def timings(fn, repeat: int) -> list[float]:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def timed(fn, repeat: int) -> float:
    return statistics.median(timings(fn, repeat))


def frame_rows(src, repeat: int) -> list[str]:
    from viser._scene_api import _encode_image_binary  # what set_background_image does

    from rave_viewer.viewer.frames import FrameRenderer, to_uint8

    fr = FrameRenderer(src, "auto")
    c2w, fov = camera_for(src)
    rows = []
    for share in SHARES:
        k = max(1, int(src.n * share))
        for state, w, h, q in RESOLUTIONS:
            img = {}

            def render():
                img["f"] = fr.render_c2w(k, c2w, fov, w, h)

            def frame():  # the whole server-side path of one frame
                _encode_image_binary(to_uint8(fr.render_c2w(k, c2w, fov, w, h)), "jpeg", jpeg_quality=q)

            t_r = timed(render, repeat)
            t_u = timed(lambda: img.__setitem__("u", to_uint8(img["f"])), repeat)
            t_j = timed(lambda: _encode_image_binary(img["u"], "jpeg", jpeg_quality=q), repeat)
            ts = timings(frame, repeat)
            med, best = statistics.median(ts), min(ts)
            rows.append(
                f"| {src.path.name} | {k:,} ({share:.0%}) | {state} {w}x{h} | {1e3 * t_r:.1f} | {1e3 * t_u:.1f} | "
                f"{1e3 * t_j:.1f} | {1e3 * med:.1f} | {1e3 * best:.1f} | {1 / med:.1f} |"
            )
            print(rows[-1], flush=True)
    return rows


def slider_rows(src, repeat: int) -> list[str]:
    """A slider event: Eq. 3 selection, exact size, readouts (what Panel._apply does before handing off)."""
    import numpy as np

    from rave_viewer.viewer.session import Session, markdown_table, readout_rows

    if src.kind == "ckpt":
        src.checkpoint.encoder().chunk_sizes()  # as ViewerApp does at start: full chunks compressed once
    s = Session(src)
    spec = s.spec()
    targets = iter(np.random.default_rng(0).uniform(spec.lo, spec.hi, 10_000))  # random jumps: no cache hits

    def event():
        sel = s.set_target(spec.from_ui(next(targets)))
        markdown_table(readout_rows(sel, None, None))

    t = timed(event, repeat)
    row = f"| {src.path.name} | {src.n:,} | {1e3 * t:.2f} |"
    print(row, flush=True)
    return [row]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scene", nargs="?", help="a .ckpt/.rave/.ply (default: the demo checkpoint, if present)")
    ap.add_argument("--quick", action="store_true", help="10k synthetic only, fewer repeats")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--test-scene", action="store_true", help="also the e2e test's sphere.ckpt (built here)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # benchmark knob only; library code never sets it

    from rave_viewer.errors import RaveError
    from rave_viewer.render import resolve_backend
    from rave_viewer.viewer.sources import find_demo_scene, open_source

    sources = []
    path = args.scene
    if path is None and not args.quick:
        try:
            path = find_demo_scene(ROOT)[0]
        except RaveError:
            path = None
    if path is not None:
        sources.append(open_source(path))
    if args.test_scene:  # the tiny checkpoint of tests/viewer (built through the public APIs)
        import tempfile

        sys.path.insert(0, str(ROOT / "tests" / "viewer"))
        from conftest import build_checkpoint

        from rave_viewer.rave.checkpoint import save_checkpoint

        tmp = Path(tempfile.mkdtemp(prefix="rave-bench-")) / "sphere.ckpt"
        save_checkpoint(build_checkpoint(), tmp)
        sources.append(open_source(tmp))
    sources += [synthetic_source(n) for n in ([10_000] if args.quick else [10_000, 100_000])]

    print(f"# Viewer frame time ({resolve_backend('auto')} backend)\n")
    print(f"{machine_line()}\n")
    print("| scene | Gaussians rendered | frame | render ms | uint8 ms | JPEG ms | frame ms (median) | "
          "frame ms (best) | FPS (median) |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for src in sources:
        frame_rows(src, 2 if args.quick else args.repeat)
    rave = [s for s in sources if s.has_rate_control]
    if rave:
        print("\n| slider event on | Gaussians | ms per event (selection + exact size + readouts) |")
        print("|---|---:|---:|")
        for src in rave:
            slider_rows(src, 200)


if __name__ == "__main__":
    main()
