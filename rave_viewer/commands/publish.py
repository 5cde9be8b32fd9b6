"""`rave publish`: a folder any static web host can serve (stream, manifest, index.html player), by byte ranges."""

from __future__ import annotations

import argparse
import time

HELP = (
    "write what a static web host needs to stream a RAVE checkpoint at any rate: the full-rate .rave (zstd), a "
    "manifest (chunk and level byte offsets, RD table) and a self-contained index.html WebGL player"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..codec.coders import CODECS
    from ._args import int_in

    p.add_argument("checkpoint", help="a .ckpt written by `rave build`")
    p.add_argument("-o", "--output", required=True, metavar="SITE", help="output folder (created if missing)")
    p.add_argument("--name", metavar="STEM", help="file name of the stream and manifest; without it, the checkpoint's")
    p.add_argument("--codec", default="zstd", choices=sorted(CODECS),
                   help="entropy coder of the published stream (default zstd: the browser player decodes zstd only)")
    p.add_argument("--force", action="store_true", help="replace existing files of the same names in SITE")
    p.add_argument("--serve", type=int_in(0, 65535), metavar="PORT", nargs="?", const=8000,
                   help="afterwards, preview SITE on http://127.0.0.1:PORT/ (a range-capable local server; "
                        "default port 8000, 0: any) until Ctrl+C")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ..delivery.publish import publish
    from ..rave.checkpoint import load_checkpoint
    from ..viewer.sources import ViewSource

    ckpt = load_checkpoint(args.checkpoint)
    start = ViewSource(path=args.checkpoint, kind="ckpt", gaussians=ckpt.gaussians, checkpoint=ckpt).default_k()
    s = publish(args.checkpoint, args.output, codec=args.codec, name=args.name, force=args.force,
                start_count=start, ckpt=ckpt)  # fmt: skip
    print(f"wrote {s['stream']} ({s['bytes']:,} bytes, {s['gaussians']:,} Gaussians in {s['chunks']} chunks, "
          f"{s['codec']}), {s['manifest']} ({s['levels']} levels{', RD table' if s['rd'] else ''}) and {s['html']}")
    print("upload the folder to any static host that serves byte ranges (most do); players start at "
          f"{start:,} Gaussians (?rate=BYTES, ?count=N, ?psnr=DB or ?auto=SECONDS in the page URL change that)")
    if args.serve is not None:
        from ..delivery.serve import RangeServer

        srv = RangeServer(args.output, port=args.serve).start()
        print(f"preview: open {srv.url('index.html')} (Ctrl+C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        finally:
            srv.stop()
    return 0
