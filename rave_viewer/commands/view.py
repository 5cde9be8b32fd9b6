"""``rave-view``: open a .ckpt, .rave or .ply (default: the bundled demo scene) in the browser viewer."""

from __future__ import annotations

import argparse
import socket
import sys
import time

from ..errors import RaveError

HELP = (
    "Interactive viewer with a live bitrate slider: open a RAVE checkpoint (.ckpt), a progressive stream "
    "(.rave) or a plain 3DGS model (.ply) and browse it at any rate. With no file it opens the demo scene in "
    "trained_scenes/ (demo_garden.ckpt)."
)
#: What ``rave-view`` opens with no argument when trained_scenes/ has it (else the first .ckpt, then .ply there):
#: the richest bundled scene (640x360 training views, ~140k Gaussians).
DEFAULT_DEMO = "demo_garden.ckpt"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..codec.container import DEFAULT_MAX_GAUSSIANS, MAX_GAUSSIANS
    from ._args import float_in, int_in

    p.add_argument("scene", nargs="?", help="scene.ckpt | stream.rave | scene.ply (default: trained_scenes/ demo)")
    p.add_argument(
        "--host", default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only); any other address requires the secret "
        "token printed in the URL",
    )  # fmt: skip
    p.add_argument("--port", type=int_in(0, 65535), default=8080,
                   help="port 0-65535 (default 8080; the next free one if taken; 0: any)")  # fmt: skip
    p.add_argument(
        "--allow-origin", action="append", default=[], metavar="URL",
        help="also accept connections from pages of this origin (repeatable), e.g. https://example.com; by "
        "default only the viewer's own page may connect",
    )  # fmt: skip
    p.add_argument(
        "--no-token", action="store_true",
        help="off loopback, serve without the secret token (anyone who reaches the port sees and downloads the scene)",
    )  # fmt: skip
    p.add_argument(
        "--share", action="store_true",
        help="show viser's Share button, which publishes this viewer at a public URL through viser's share service",
    )  # fmt: skip
    start = p.add_mutually_exclusive_group()
    start.add_argument("--rate", metavar="R", help="start at this rate, a cap (e.g. 2.5MB, 800KB; MB = 10^6 bytes)")
    start.add_argument("--count", type=int_in(1, MAX_GAUSSIANS), metavar="N", help="start with N Gaussians")
    start.add_argument("--psnr", type=float_in(-1000, 1000), metavar="DB",
                       help="start at the smallest prefix reaching DB (needs a .ckpt with an RD table, or a "
                       "published stream's manifest)")  # fmt: skip
    start.add_argument("--auto", type=float_in(0.1, 86400), metavar="SECONDS",
                       help="(http(s) stream) the best prefix that arrives within SECONDS at the measured "
                       "throughput (follows the link until you move the slider)")  # fmt: skip
    p.add_argument("--max-gaussians", type=int_in(0, MAX_GAUSSIANS), default=DEFAULT_MAX_GAUSSIANS, metavar="N",
                   help=f"refuse .rave streams of more Gaussians (default {DEFAULT_MAX_GAUSSIANS}; 0: no limit)")  # fmt: skip
    p.add_argument(
        "--backend", choices=("auto", "cpu", "gsplat"), default="auto",
        help="server-side renderer: gsplat needs CUDA; auto picks gsplat with CUDA, else the CPU rasterizer",
    )  # fmt: skip
    p.add_argument(
        "--render", choices=("auto", "server", "browser"), default="auto",
        help="where tabs start rendering: server frames, or WebGL splats in the browser (a rate change sends only "
        "the Gaussians it adds); auto: the browser above 300,000 Gaussians on a CPU server (switch in the panel)",
    )  # fmt: skip


def check_host(host: str) -> None:
    """RaveError unless ``host`` is an address this machine can listen on (before anything slow starts)."""
    try:
        infos = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as e:
        raise RaveError(f"--host {host!r}: not an address of this machine ({e})") from None
    family, _, _, _, addr = infos[0]
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind(addr)
    except OSError as e:
        raise RaveError(f"--host {host!r}: cannot listen there ({e.strerror or e})") from None


def start_target(source, args: argparse.Namespace) -> tuple[str, float] | None:
    """(mode, raw value) from --rate/--count/--psnr, checked against what ``source`` offers; None: its default."""
    from ..rave.selection import parse_rate

    if args.rate is not None:
        mode, value, flag = "rate", float(parse_rate(args.rate)), f"--rate {args.rate}"
    elif args.count is not None:
        mode, value, flag = "count", float(args.count), f"--count {args.count}"
    elif args.psnr is not None:
        mode, value, flag = "psnr", float(args.psnr), f"--psnr {args.psnr}"
    else:
        return None
    if mode not in source.modes:
        raise RaveError(f"{flag}: a .{source.kind} cannot be targeted by {mode} "
                        f"(available: {', '.join(source.modes) or 'none'})", source.path)
    lo, hi = source.bounds(mode)
    if not value >= lo:  # below the coarsest point (or NaN): nothing fits
        unit = {"rate": " bytes", "count": " Gaussians", "psnr": " dB"}[mode]
        raise RaveError(f"{flag} is below the lowest operating point ({lo:.6g}{unit}; range {lo:.6g}-{hi:.6g}{unit})",
                        source.path)
    if value > hi:
        print(f"note: {flag} is above the highest operating point ({hi:.6g}): starting at the full model")
    return mode, value


def run(args: argparse.Namespace) -> int:
    from ..render import resolve_backend
    from ..viewer.gate import is_loopback_host, is_wildcard_host, new_token, normalize_origin
    from ..viewer.sources import find_demo_scene, open_source

    backend = resolve_backend(args.backend)  # RaveError (one line) if gsplat is asked for without CUDA
    check_host(args.host)
    allow = [normalize_origin(o) for o in args.allow_origin]
    token = None
    if not is_loopback_host(args.host):
        if args.no_token:
            print(f"warning: --no-token: anyone who can reach {args.host}:{args.port} can view and download "
                  "this scene", file=sys.stderr)
        else:
            token = new_token()
    if args.share:
        print("warning: --share: the Share button publishes this viewer (scene, exports) at a public URL "
              "through viser's share service", file=sys.stderr)
    if args.scene is None:
        path, note = find_demo_scene()
        if (path.parent / DEFAULT_DEMO).is_file():
            path, note = path.parent / DEFAULT_DEMO, ""
        print(f"no file given: opening the demo scene {path}" + (f" ({note})" if note else ""))
    else:
        path = args.scene
    remote = isinstance(path, str) and path.strip().lower().startswith(("http://", "https://"))
    if remote:  # a stream on a web host, fetched by byte ranges from the start target on (viewer/remote.py)
        from ..viewer.remote import open_remote, remote_target

        source = open_remote(path.strip(), remote_target(args), max_gaussians=args.max_gaussians or None)
    else:
        source = open_source(path, max_gaussians=args.max_gaussians or None)
        if getattr(args, "auto", None) is not None:
            print("note: --auto applies to http(s) streams; a local file is all here: using its default start")
    if source.note and source.kind != "ckpt":
        print(f"note: {source.note}")

    start = start_target(source, args)

    from ..viewer.app import ViewerApp

    app = ViewerApp(source, host=args.host, port=args.port, backend=backend, allow_origins=allow, token=token,
                    share=args.share, start=start,
                    browser={"auto": None, "server": False, "browser": True}[getattr(args, "render", "auto")])  # fmt: skip
    if remote:
        from ..viewer.remote import attach

        attach(app, source)
    print(f"rave-view: {source.path.name} ({source.n:,} {source.unit_label}, {source.kind}), rendering with {backend}")
    print(f"open {app.url} in a browser (Ctrl+C to stop)", flush=True)
    if is_wildcard_host(args.host):
        print(f"from other machines: {app.url.replace('localhost', socket.gethostname(), 1)}", flush=True)
    if token is not None:
        print("the token in this URL is the key to this viewer: share it only with people who may see the scene",
              flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        app.stop()
        if remote:
            source.close()
