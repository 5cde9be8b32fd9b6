"""``rave-view``: open a .ckpt, .rave or .ply (default: the bundled demo scene) in the browser viewer."""

from __future__ import annotations

import argparse
import time

HELP = (
    "Interactive viewer with a live bitrate slider: open a RAVE checkpoint (.ckpt), a progressive stream "
    "(.rave) or a plain 3DGS model (.ply) and browse it at any rate. With no file it opens the demo scene in "
    "trained_scenes/."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scene", nargs="?", help="scene.ckpt | stream.rave | scene.ply (default: trained_scenes/ demo)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; the next free one if taken)")
    p.add_argument(
        "--backend", choices=("auto", "cpu", "gsplat"), default="auto",
        help="server-side renderer: gsplat needs CUDA; auto picks gsplat with CUDA, else the CPU rasterizer",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ..render import resolve_backend
    from ..viewer.sources import find_demo_scene, open_source

    backend = resolve_backend(args.backend)  # RaveError (one line) if gsplat is asked for without CUDA
    if args.scene is None:
        path, note = find_demo_scene()
        print(f"no file given: opening the demo scene {path}" + (f" ({note})" if note else ""))
    else:
        path = args.scene
    source = open_source(path)
    if source.note and source.kind != "ckpt":
        print(f"note: {source.note}")

    from ..viewer.app import ViewerApp

    app = ViewerApp(source, host=args.host, port=args.port, backend=backend)
    print(f"rave-view: {source.path.name} ({source.n:,} Gaussians, {source.kind}), rendering with {backend}")
    print(f"open {app.url} in a browser (Ctrl+C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        app.stop()
