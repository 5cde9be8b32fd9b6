"""`rave info`: a readable summary of a RAVE checkpoint (levels, rates, RD range, build settings and cost) or
of a .rave stream, of Gaussians or of Scaffold-GS anchors (unit type, anchors, MLP bytes, version).

The build record (``meta``) is informative only: a field of an odd shape is shown as "unreadable" (and named in
one warning line on stderr) instead of making the summary fail.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = ("summarise a RAVE checkpoint (.ckpt: levels, rates, quality range, build settings) or a .rave stream "
        "(format version, unit type, Gaussians or anchors, codec, quantization, chunks)")
UNREADABLE = "unreadable"
#: Build-record fields the summary shows.
SHOWN_META = ("ranking", "finetune", "rd_views", "stages", "total_seconds", "config", "sources")
CONFIG_KEYS = ("num_levels", "coarsest_fraction", "delta_rate", "fractions", "level_method", "anchors", "importance",
               "steps", "level_sampling", "qat", "ranking", "rd_points")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .ckpt written by `rave build`, or a .rave stream")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def summary(ckpt) -> dict:
    """The facts `rave info` prints, as plain data; malformed build-record fields are None and listed under
    ``"unreadable"``."""
    from ..rave.checkpoint import clean_meta

    rd = ckpt.rd
    by_count = dict(zip(rd["count"], zip(rd["psnr"], rd["ssim"])))
    levels = []
    for i, (n, r) in enumerate(zip(ckpt.level_sizes, ckpt.level_rates)):
        p, s = by_count.get(n, (None, None))
        levels.append({"level": i + 1, "count": n, "bytes": r, "psnr": p, "ssim": s})
    meta, bad = clean_meta(ckpt.meta)  # also covers a checkpoint built in memory
    unreadable = sorted(set(bad) | set(getattr(ckpt, "unreadable_meta", ())))
    if "meta" in unreadable:
        unreadable = ["meta", *SHOWN_META]
    unreadable = [k for k in unreadable if k in SHOWN_META or k == "meta"]
    return {
        **_UNIT_FIELDS[getattr(ckpt, "unit_type", "gaussians")](ckpt),
        "format_version": meta.get("format_version"),
        "ranking": meta.get("ranking"),
        "finetune": meta.get("finetune"),
        "interpolate": ckpt.interpolate,
        "codec": ckpt.codec,
        "chunk_size": ckpt.chunk_size,
        "levels": levels,
        "rate_range": list(ckpt.rate_range()),
        "rd_points": len(rd["count"]),
        "psnr_range": [min(rd["psnr"]), max(rd["psnr"])] if rd["psnr"] else None,
        "ssim_range": [min(rd["ssim"]), max(rd["ssim"])] if rd["ssim"] else None,
        "test_views": {"count": len(ckpt.test_cameras), "width": ckpt.test_cameras.width,
                       "height": ckpt.test_cameras.height},
        "rd_views": meta.get("rd_views"),
        "targets": meta.get("targets") if meta.get("targets") in ("self", "photos") else "photos",
        "stages": meta.get("stages"),
        "total_seconds": meta.get("total_seconds"),
        "config": meta.get("config"),
        "sources": meta.get("sources"),
        "unreadable": unreadable,
    }


def _gaussian_fields(ckpt) -> dict:
    return {"gaussians": len(ckpt), "sh_degree": ckpt.gaussians.sh_degree, "quant": _quant_shown(ckpt.quant),
            "stream_format_version": max(2, ckpt.quant.format_version)}  # what `rave encode` writes from it


def _anchor_fields(ckpt) -> dict:
    from ..codec.anchors import FORMAT_VERSION

    enc = ckpt.encoder()  # compresses the MLP weights only
    return {"unit_type": "anchors", "anchors": len(ckpt), "feat_dim": enc.feat_dim, "n_offsets": enc.n_offsets,
            "quant": _anchor_quant_shown(ckpt.quant), "mlp_bytes": enc.mlp_bytes, "header_bytes": enc.header_size,
            "stream_format_version": FORMAT_VERSION}


#: unit type -> the checkpoint summary's unit fields
_UNIT_FIELDS = {"gaussians": _gaussian_fields, "anchors": _anchor_fields}


def _anchor_quant_shown(q) -> dict:
    return {"feature_bits": q.feature_bits, "geometry": q.geometry, "feature_channels": q.feat_dim}


def _is_stream(path: str) -> bool:
    """True for a .rave stream (by its magic; a missing file is left to the checkpoint loader's message)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"RAVE"
    except OSError:
        return str(path).lower().endswith(".rave")


def _mb(b: float) -> str:
    return f"{b / 1e6:.3f}"


def _text(v: object, limit: int = 60) -> str:
    """``v`` as one short line (a long string or a nested value from the file stays readable)."""
    r = " ".join(str(v).split()) if isinstance(v, str) else " ".join(json.dumps(v, default=str).split())
    return r if len(r) <= limit else r[: limit - 3] + "..."


def format_summary(path: str, s: dict) -> str:
    q = s["quant"]
    bad = set(s.get("unreadable") or ())

    def shown(key: str, value: str) -> str:
        return UNREADABLE if key in bad else value

    finetune = "yes" if s["finetune"] else ("no" if s["finetune"] is not None else "?")
    anchors = s.get("unit_type") == "anchors"
    if anchors:
        head = [f"{path}: RAVE checkpoint of Scaffold-GS anchors (format {s['format_version']}; writes .rave anchor "
                f"streams, anchor format version {s['stream_format_version']}), {s['anchors']:,} anchors, feature size "
                f"{s['feat_dim']}, {s['n_offsets']} offsets each; MLP weights {s['mlp_bytes']:,} B (compressed) in "
                f"every stream's header of {s['header_bytes']:,} B",
                f"codec: {s['codec']}, chunks of {s['chunk_size']} anchors; features {q['feature_bits']}-bit per "
                f"channel on fixed ranges, positions/offsets/scalings {q['geometry']}"]
    else:
        head = [f"{path}: RAVE checkpoint (format {s['format_version']}; writes .rave format version "
                f"{s['stream_format_version']}), {s['gaussians']:,} Gaussians, SH degree {s['sh_degree']}"
                + (f", SH codebook of {q['sh_codebook'].split()[0]} entries" if q["sh_codebook"] else "")
                + (f", SH rest transform-coded (step {q['shN_step']:g})" if q.get("shN_step") else ""),
                f"codec: {s['codec']}, chunks of {s['chunk_size']} Gaussians; bits: position {q['pos_bits']}, "
                f"rotation {q['rot_bits']}, scale {q['scale_bits']}, opacity {q['opacity_bits']}, SH DC "
                f"{q['sh0_bits']}, SH rest {'/'.join(str(b) for b in q['shN_bits'])}"]
    lines = [
        head[0],
        f"ranking: {shown('ranking', _text(s['ranking']) if s['ranking'] is not None else '?')}; fine-tuned: "
        f"{shown('finetune', finetune)}; selection: "
        f"{'continuous (Eq. 3)' if s['interpolate'] else 'snaps to levels (naive multi-anchor)'}",
        head[1],
        "",
        "levels (MB = 10^6 bytes):",
        f"  {'level':>5} {'anchors' if anchors else 'Gaussians':>12} {'bytes':>14} {'MB':>10} {'PSNR dB':>8} "
        f"{'SSIM':>7}",
    ]
    for lv in s["levels"]:
        p = f"{lv['psnr']:8.2f}" if lv["psnr"] is not None else f"{'-':>8}"
        ss = f"{lv['ssim']:7.4f}" if lv["ssim"] is not None else f"{'-':>7}"
        lines.append(f"  {lv['level']:>5} {lv['count']:>12,} {lv['bytes']:>14,} {_mb(lv['bytes']):>10} {p} {ss}")
    r0, r1 = s["rate_range"]
    lines += ["", f"valid target rates: {r0:,} .. {r1:,} bytes ({_mb(r0)} - {_mb(r1)} MB)"]
    if s["psnr_range"]:
        v = s["rd_views"] or {}
        where = (f"{v.get('count', '?')} {_text(v.get('split', 'test'))} views {v.get('width', '?')}x"
                 f"{v.get('height', '?')}")
        vs = "vs the full model" if s.get("targets") == "self" else "vs photos"
        lines.append(f"RD table: {s['rd_points']} points, PSNR {vs} {s['psnr_range'][0]:.2f} - "
                     f"{s['psnr_range'][1]:.2f} dB, "
                     f"SSIM {s['ssim_range'][0]:.4f} - {s['ssim_range'][1]:.4f} on {shown('rd_views', where)}")
    tv = s["test_views"]
    lines.append(f"stored test views: {tv['count']} at {tv['width']}x{tv['height']}")
    total = f"{s['total_seconds']:.1f} s total" if s["total_seconds"] is not None else "? s total"
    total = f"{shown('total_seconds', total)}"
    if "stages" in bad:
        lines.append(f"build: {total}; stages: {UNREADABLE}")
    elif s["stages"]:
        parts = [f"{_text(k, 30)} {v['seconds']:.1f} s / {v['renders']} renders" for k, v in s["stages"].items()]
        lines.append(f"build: {total}; " + "; ".join(parts))
    elif s["total_seconds"] is not None or "total_seconds" in bad:
        lines.append(f"build: {total}")
    if "config" in bad:
        lines.append(f"config: {UNREADABLE}")
    elif s["config"]:
        c = s["config"]
        lines.append("config: " + ", ".join(f"{k}={_text(c[k])}" for k in CONFIG_KEYS if k in c and c[k] is not None))
    if "sources" in bad:
        lines.append(f"sources: {UNREADABLE}")
    elif s["sources"]:
        lines.append("sources: " + ", ".join(f"{_text(k, 30)}={_text(v, 200)}" for k, v in s["sources"].items()))
    return "\n".join(lines)


def _quant_shown(cfg) -> dict:
    """The quantization settings, the codebook as its size (its codes are not for reading)."""
    d = cfg.to_dict()
    book = cfg.sh_codebook
    d["sh_codebook"] = None if book is None else f"{book.shape[0]} entries x {book.shape[1]} coefficients x 3"
    if cfg.sh_basis is not None:
        d["sh_basis"] = f"{cfg.sh_basis.shape[1]} x {cfg.sh_basis.shape[1]} transform"
    return d


def stream_summary(info) -> dict:
    """What `rave info` says about a .rave stream (header and chunk index only; nothing is decompressed)."""
    book = info.cfg.sh_codebook
    return {
        "format_version": info.format_version,
        "gaussians": info.n_gaussians,
        "gaussians_present": sum(c.count for c in info.chunks if c.offset + c.length <= info.file_size),
        "sh_degree": info.sh_degree,
        "codec": info.codec,
        "chunk_size": info.chunk_size,
        "chunks": len(info.chunks),
        "header_bytes": info.header_size,
        "sh_codebook_entries": None if book is None else int(book.shape[0]),
        "bytes": info.file_size,
        "expected_bytes": info.expected_size,
        "quant": _quant_shown(info.cfg),
    }


def format_stream(path: str, s: dict) -> str:
    q = s["quant"]
    vq = (f"SH codebook of {s['sh_codebook_entries']} entries" if s["sh_codebook_entries"] is not None
          else f"SH rest transform-coded, step {q['shN_step']:g}" if q.get("shN_step") else "scalar SH rest")
    lines = [f"{path}: .rave stream, format version {s['format_version']}, {s['gaussians']:,} Gaussians, SH degree "
             f"{s['sh_degree']}, {s['codec']}, {s['chunks']} chunk(s) of {s['chunk_size']}",
             f"bytes: {s['bytes']:,} of {s['expected_bytes']:,} ({s['gaussians_present']:,} Gaussians present); "
             f"header {s['header_bytes']:,} B",
             f"quantization: positions {q['pos_bits']}, rotations {q['rot_bits']}, log-scales {q['scale_bits']}, "
             f"opacity {q['opacity_bits']}, SH DC {q['sh0_bits']} bits; {vq}"]
    return "\n".join(lines)


def anchor_stream_summary(info) -> dict:
    """What `rave info` says about an anchor .rave stream (header, model section and index; no chunk decoded)."""
    return {
        "format_version": info.format_version,
        "unit_type": "anchors",
        "anchors": info.n_anchors,
        "anchors_present": sum(c.count for c in info.chunks if c.offset + c.length <= info.file_size),
        "feat_dim": info.feat_dim,
        "n_offsets": info.n_offsets,
        "scaling_dim": info.scaling_dim,
        "codec": info.codec,
        "chunk_size": info.chunk_size,
        "chunks": len(info.chunks),
        "header_bytes": info.header_size,
        "mlp_bytes": info.mlp_bytes,
        "mlp_raw_bytes": info.mlp_raw_bytes,
        "mlp_tensors": len(info.mlps),
        "spec": info.spec,
        "bytes": info.file_size,
        "expected_bytes": info.expected_size,
        "quant": _anchor_quant_shown(info.quant),
    }


def format_anchor_stream(path: str, s: dict) -> str:
    q = s["quant"]
    return "\n".join([
        f"{path}: .rave stream of anchors (Scaffold-GS), anchor format version {s['format_version']}: "
        f"{s['anchors']:,} anchors (feature size {s['feat_dim']}, {s['n_offsets']} offsets, {s['scaling_dim']} "
        f"scalings each), {s['codec']}, {s['chunks']} chunk(s) of {s['chunk_size']}",
        f"bytes: {s['bytes']:,} of {s['expected_bytes']:,} ({s['anchors_present']:,} anchors present); header "
        f"{s['header_bytes']:,} B, of which MLP weights {s['mlp_bytes']:,} B ({s['mlp_tensors']} tensors, "
        f"{s['mlp_raw_bytes']:,} B as float32)",
        f"quantization: features {q['feature_bits']} bits per channel on fixed ranges; positions, offsets, "
        f"scalings {q['geometry']}; spec {_text(s['spec'], 200)}"])


def run(args: argparse.Namespace) -> int:
    from ..rave.checkpoint import load_checkpoint

    if _is_stream(args.checkpoint):
        from ..codec.unit_type import unit_type_of

        try:
            with open(args.checkpoint, "rb") as f:
                unit = unit_type_of(f.read(9))
        except OSError:
            unit = None  # the Gaussian reader names the problem
        if unit == "anchors":
            from ..codec.anchors import read_anchor_info

            s = anchor_stream_summary(read_anchor_info(args.checkpoint))
            print(json.dumps(s, indent=2) if args.json else format_anchor_stream(args.checkpoint, s))
            return 0
        from ..codec.container import read_info

        s = {"unit_type": "gaussians", **stream_summary(read_info(args.checkpoint))}
        print(json.dumps(s, indent=2) if args.json else format_stream(args.checkpoint, s))
        return 0
    ckpt = load_checkpoint(args.checkpoint)
    s = summary(ckpt)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(format_summary(args.checkpoint, s))
    if s["unreadable"]:
        what = "record" if "meta" in s["unreadable"] else f"field(s) {', '.join(s['unreadable'])}"
        print(f"warning: {args.checkpoint}: build {what} unreadable (shown as such; the model itself is fine)",
              file=sys.stderr)
    return 0
