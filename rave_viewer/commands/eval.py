"""`rave eval`: RD curve (PSNR, SSIM) of a RAVE checkpoint on test views, with BD comparisons, as CSV/JSON/PNG."""

from __future__ import annotations

import argparse
import sys
import os
from pathlib import Path

from ._args import MAX_RATES, add_force, dataset_files, int_in

#: The files `rave eval` writes into its -o folder (eval.report.write_report).
REPORT_FILES = ("rd.csv", "bd.csv", "rd.json", "rd_psnr.png", "rd_ssim.png")

HELP = (
    "evaluate a RAVE checkpoint (Gaussians or Scaffold-GS anchors): PSNR and SSIM on the test views at N rates "
    "spanning its range; writes "
    "rd.csv, rd.json and PNG plots; --compare adds other checkpoints and prints BD-PSNR / BD-rate"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="RAVE checkpoint (.ckpt) from `rave build` (of a .ply or a .scaffold)")
    p.add_argument("--data", metavar="DATA_DIR",
                   help="dataset folder whose test split is evaluated (default: the test views stored in the "
                        "checkpoint)")
    from ..scene.datasets import MAX_DOWNSCALE  # the loader's own bound (this parser runs only for eval)

    p.add_argument("--downscale", type=int_in(1, MAX_DOWNSCALE), default=1, metavar="D",
                   help=f"image downscale factor for --data, 1..{MAX_DOWNSCALE} (default 1)")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let --data's image and point-cloud paths lead outside its folder (.., absolute paths, "
                        "symlinks); only for datasets you trust")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="report folder (created if needed)")
    p.add_argument("--rates", type=int_in(2, MAX_RATES), default=32, metavar="N",
                   help=f"number of target rates, 2..{MAX_RATES}, log-spaced over the checkpoint's range (default 32)")
    p.add_argument("--compare", nargs="+", default=[], metavar="CKPT",
                   help="other checkpoints: overlaid on the plots; BD-PSNR and BD-rate printed for each pair")
    p.add_argument("--backend", default="auto", choices=["auto", "gsplat", "cpu", "reference"],
                   help="renderer (default auto: gsplat with CUDA, else the CPU rasterizer)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_force(p)


def _label(path: str, taken: set[str]) -> str:
    base = Path(path).stem or str(path)
    label, i = base, 2
    while label in taken:
        label, i = f"{base} ({i})", i + 1
    taken.add(label)
    return label


def _load(path: str):
    from ..errors import RaveError
    from ..rave.checkpoint import load_checkpoint

    if not os.path.exists(path):
        raise RaveError("no such checkpoint file", path)
    if os.path.isdir(path):
        raise RaveError("is a folder, not a checkpoint file", path)
    try:
        return load_checkpoint(path)
    except RaveError:
        raise
    except Exception as e:  # a loader bug or an unexpected format: still one line naming the file
        raise RaveError(f"cannot read checkpoint: {type(e).__name__}: {e}", path) from e


def run(args: argparse.Namespace) -> int:
    from ..errors import RaveError
    from ..eval import LPIPS_NOTE, bd_pairs, bd_table_text, curve_table_text, evaluate_checkpoint, write_report
    from ..fileio import check_output

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise RaveError("report output exists and is not a folder", out)
    paths = [args.checkpoint, *args.compare]
    inputs = [*paths, *dataset_files(args.data)]
    for name in REPORT_FILES:
        check_output(out / name, *inputs, force=args.force, flag="a report file in -o/--out")
    ckpts = [_load(p) for p in paths]  # all inputs checked before any long work

    if args.data:
        from ..scene.datasets import load_dataset

        ds = load_dataset(args.data, downscale=args.downscale, allow_outside_paths=args.allow_outside_paths)
        for line in ds.notes if not args.quiet else ():
            print(f"note: {line}", file=sys.stderr)
        cams = ds.test
        if len(cams) == 0:
            raise RaveError("the dataset has no test views (every 8th image, or transforms_test.json)", args.data)
        source = f"{len(cams)} test views of {args.data} at {cams.width}x{cams.height}"
    else:
        cams = ckpts[0].test_cameras
        if cams is None or len(cams) == 0 or cams.images is None:
            raise RaveError("the checkpoint stores no test views; pass --data DATA_DIR", args.checkpoint)
        source = f"{len(cams)} test views stored in {args.checkpoint} at {cams.width}x{cams.height}"

    taken: set[str] = set()
    curves = []
    for path, ck in zip(paths, ckpts):
        label = _label(path, taken)
        c = evaluate_checkpoint(ck, cams, n_rates=args.rates, label=label, backend=args.backend,
                                progress=not args.quiet)
        c.meta["checkpoint"] = str(path)
        curves.append(c)

    rows = bd_pairs(curves) if len(curves) > 1 else []
    notes = [f"evaluated on {source}", LPIPS_NOTE,
             "sizes are exact .rave stream bytes (KB = 10^3 bytes, MB = 10^6 bytes)",
             "images are rendered from the decoded units (dequantized Gaussians, or decoded anchors and their "
             "neural Gaussians per view), as a receiver would"]
    files = write_report(out, curves, bd_rows=rows, title=f"RD: {curves[0].label}", note=source, notes=notes,
                         meta={"checkpoints": paths, "data": args.data, "downscale": args.downscale,
                               "rates": args.rates, "backend": args.backend, "lpips": None})

    for c in curves:
        print(f"{c.label}: {len(c)} operating points on {source}")
        print(curve_table_text(c))
        print()
    if rows:
        print("Bjontegaard deltas (PCHIP in log-rate; BD-PSNR > 0: test better; BD-rate < 0: test smaller)")
        print(bd_table_text(rows))
        print()
    print(f"note: {LPIPS_NOTE}")
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0
