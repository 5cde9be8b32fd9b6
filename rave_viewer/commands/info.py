"""`rave info`: a readable summary of a RAVE checkpoint (levels, rates, RD range, build settings and cost)."""

from __future__ import annotations

import argparse
import json

HELP = "summarise a RAVE checkpoint (.ckpt): levels, rates, quality range, build settings"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .ckpt written by `rave build`")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def summary(ckpt) -> dict:
    """The facts `rave info` prints, as plain data."""
    rd = ckpt.rd
    by_count = dict(zip(rd["count"], zip(rd["psnr"], rd["ssim"])))
    levels = []
    for i, (n, r) in enumerate(zip(ckpt.level_sizes, ckpt.level_rates)):
        p, s = by_count.get(n, (None, None))
        levels.append({"level": i + 1, "count": n, "bytes": r, "psnr": p, "ssim": s})
    meta = ckpt.meta or {}
    return {
        "gaussians": len(ckpt),
        "sh_degree": ckpt.gaussians.sh_degree,
        "format_version": meta.get("format_version"),
        "ranking": meta.get("ranking"),
        "finetune": meta.get("finetune"),
        "interpolate": ckpt.interpolate,
        "codec": ckpt.codec,
        "chunk_size": ckpt.chunk_size,
        "quant": ckpt.quant.to_dict(),
        "levels": levels,
        "rate_range": list(ckpt.rate_range()),
        "rd_points": len(rd["count"]),
        "psnr_range": [min(rd["psnr"]), max(rd["psnr"])] if rd["psnr"] else None,
        "ssim_range": [min(rd["ssim"]), max(rd["ssim"])] if rd["ssim"] else None,
        "test_views": {"count": len(ckpt.test_cameras), "width": ckpt.test_cameras.width,
                       "height": ckpt.test_cameras.height},
        "rd_views": meta.get("rd_views"),
        "stages": meta.get("stages"),
        "total_seconds": meta.get("total_seconds"),
        "config": meta.get("config"),
        "sources": meta.get("sources"),
    }


def _mb(b: float) -> str:
    return f"{b / 1e6:.3f}"


def format_summary(path: str, s: dict) -> str:
    q = s["quant"]
    lines = [
        f"{path}: RAVE checkpoint (format {s['format_version']}), {s['gaussians']:,} Gaussians, SH degree "
        f"{s['sh_degree']}",
        f"ranking: {s['ranking']}; fine-tuned: {'yes' if s['finetune'] else 'no'}; selection: "
        f"{'continuous (Eq. 3)' if s['interpolate'] else 'snaps to levels (naive multi-anchor)'}",
        f"codec: {s['codec']}, chunks of {s['chunk_size']} Gaussians; bits: position {q['pos_bits']}, rotation "
        f"{q['rot_bits']}, scale {q['scale_bits']}, opacity {q['opacity_bits']}, SH DC {q['sh0_bits']}, SH rest "
        f"{'/'.join(str(b) for b in q['shN_bits'])}",
        "",
        "levels (MB = 10^6 bytes):",
        f"  {'level':>5} {'Gaussians':>12} {'bytes':>14} {'MB':>10} {'PSNR dB':>8} {'SSIM':>7}",
    ]
    for lv in s["levels"]:
        p = f"{lv['psnr']:8.2f}" if lv["psnr"] is not None else f"{'-':>8}"
        ss = f"{lv['ssim']:7.4f}" if lv["ssim"] is not None else f"{'-':>7}"
        lines.append(f"  {lv['level']:>5} {lv['count']:>12,} {lv['bytes']:>14,} {_mb(lv['bytes']):>10} {p} {ss}")
    r0, r1 = s["rate_range"]
    lines += ["", f"valid target rates: {r0:,} .. {r1:,} bytes ({_mb(r0)} - {_mb(r1)} MB)"]
    if s["psnr_range"]:
        v = s["rd_views"] or {}
        where = f"{v.get('count', '?')} {v.get('split', 'test')} views {v.get('width', '?')}x{v.get('height', '?')}"
        lines.append(f"RD table: {s['rd_points']} points, PSNR {s['psnr_range'][0]:.2f} - {s['psnr_range'][1]:.2f} dB, "
                     f"SSIM {s['ssim_range'][0]:.4f} - {s['ssim_range'][1]:.4f} on {where}")
    tv = s["test_views"]
    lines.append(f"stored test views: {tv['count']} at {tv['width']}x{tv['height']}")
    if s["stages"]:
        parts = [f"{k} {v['seconds']:.1f} s / {v['renders']} renders" for k, v in s["stages"].items()]
        lines.append(f"build: {s['total_seconds']:.1f} s total; " + "; ".join(parts))
    if s["config"]:
        c = s["config"]
        keys = ("num_levels", "coarsest_fraction", "delta_rate", "fractions", "level_method", "anchors", "importance",
                "steps", "level_sampling", "qat", "ranking", "rd_points")
        lines.append("config: " + ", ".join(f"{k}={c[k]}" for k in keys if k in c and c[k] is not None))
    if s["sources"]:
        lines.append("sources: " + ", ".join(f"{k}={v}" for k, v in s["sources"].items()))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..rave.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    s = summary(ckpt)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(format_summary(args.checkpoint, s))
    return 0
