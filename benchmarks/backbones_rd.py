"""RAVE-3DGS vs RAVE-Scaffold: RD curves in one plot per scene, BD-rate at equal PSNR, size split, costs (issue 17).

Usage (from the repository root; seconds per scene, the RD tables are read from the checkpoints)::

    .venv/bin/python benchmarks/backbones_rd.py \\
        --scene demo_objects trained_scenes/demo_objects.ckpt out/demo_objects_scaffold.ckpt \\
        --scene demo_ground out/demo_ground_3dgs.ckpt out/demo_ground_scaffold.ckpt \\
        [--out-dir benchmarks] [--json benchmarks/backbones_rd.json]

Each ``--scene NAME GS_CKPT SCAFFOLD_CKPT`` names the ``rave build`` checkpoints of one scene (either may be
``-`` or a missing file: that curve is left out and said so). For every checkpoint the script reads its RD
table (exact ``.rave`` bytes of each operating point vs mean test PSNR), its build stages and total time
(``meta["stages"]``), and the run record of the model it was built from (``meta["sources"]``: ``scene.ply`` ->
``scene.json``, ``scene.scaffold`` -> ``scene.json``) for the training cost. It draws
``OUT_DIR/backbones_rd_NAME.png`` (bytes on a log axis vs PSNR, both curves), computes the BD-rate and BD-PSNR
of Scaffold vs 3DGS over the overlapping range (:mod:`rave_viewer.eval.bjontegaard`, PCHIP) and prints a
markdown table per scene.

Size split of the Scaffold stream: the anchor stream compresses each chunk's byte planes together, so there is
no per-field size in the file. The split is an **estimate**: every field's planes (positions, offsets,
scalings as fp16 high/low byte planes, feature codes) compressed alone per chunk, in the stream's in-chunk
order, with the stream's codec; MLP weights and header as the encoder reports them. The table gives the sum of
the separate sizes next to the real (joint) stream size. ``--scaffold-model FILE.scaffold`` adds the same split
for a trained, unranked model (quantized as the build would, all anchors), which needs no build.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

from rave_viewer.errors import RaveError  # noqa: E402
from rave_viewer.eval.bjontegaard import bd_psnr, bd_rate  # noqa: E402
from rave_viewer.eval.plot import PALETTE, Series, line_plot  # noqa: E402
from rave_viewer.jsonio import strict_loads  # noqa: E402

SPLIT_FIELDS = ("positions", "offsets", "scalings", "features")


# -- reading checkpoints ------------------------------------------------------------------------------------
def checkpoint_doc(path: Path) -> dict:
    """The JSON document of a ``.ckpt`` (safetensors metadata key ``rave``, or the one document holding ``rd``)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise RaveError(f"not a safetensors checkpoint ({e})", path) from None
    for key in ("rave", *meta):
        if key in meta:
            try:
                doc = strict_loads(meta[key], f"checkpoint metadata {key!r}", path)
            except RaveError:
                continue
            if isinstance(doc, dict) and "rd" in doc:
                return doc
    raise RaveError("no RD table in the checkpoint metadata", path)


def run_record(source: str | None) -> dict | None:
    """The training run record beside a model file (``scene.ply`` / ``scene.scaffold`` -> ``scene.json``)."""
    if not source:
        return None
    p = Path(source)
    for cand in (p, ROOT / p):
        js = cand.with_suffix(".json")
        if js.is_file():
            try:
                return json.loads(js.read_text())
            except ValueError:
                return None
    return None


def describe_checkpoint(path: Path) -> dict[str, Any]:
    """RD table, build cost and the source model's training cost of one checkpoint."""
    doc = checkpoint_doc(path)
    rd, meta = doc["rd"], doc.get("meta") or {}
    sources = meta.get("sources") or {}
    model_src = next((v for k, v in sources.items() if k != "data" and isinstance(v, str)), None)
    rec = run_record(model_src)
    train = None
    if rec:
        m = rec.get("metrics") or {}
        train = {"wall_s": rec.get("wall_time_s"), "cpu_s": rec.get("cpu_time_s"), "steps": rec.get("steps_done"),
                 "test_psnr": m.get("test_psnr"), "units": rec.get("num_gaussians", rec.get("num_anchors")),
                 "load": (rec.get("machine") or {}).get("load_average_1min"), "record": str(model_src)}
    stages = meta.get("stages") or {}
    return {"path": str(path), "format": doc.get("format"), "n": doc.get("n"), "codec": doc.get("codec"),
            "chunk_size": doc.get("chunk_size"), "bytes": [int(b) for b in rd["bytes"]],
            "psnr": [float(p) for p in rd["psnr"]], "count": [int(c) for c in rd["count"]],
            "level_sizes": doc.get("level_sizes"), "level_rates": doc.get("level_rates"),
            "build": {"total_s": meta.get("total_seconds"),
                      "stages": {k: v.get("seconds") for k, v in stages.items() if isinstance(v, dict)},
                      "renders": meta.get("total_renders"), "load": meta.get("load_average_1min")},
            "train": train, "sources": sources, "quant": doc.get("quant")}


# -- size split of an anchor stream -------------------------------------------------------------------------
def anchor_split(enc, k: int | None = None) -> dict[str, int]:
    """Estimated bytes per field of the first ``k`` anchors of an :class:`~rave_viewer.codec.anchors.AnchorEncoder`
    stream (each field's planes compressed alone per chunk, in stream order) + MLPs, header/index, and the real
    joint size (``stream``)."""
    from rave_viewer.codec.anchors import feature_codes

    k = len(enc) if k is None else k
    q = enc.quantized_prefix(k)  # stream order, as decoded
    n_off = q["offset"].shape[1]
    f16 = {"positions": q["anchor"], "offsets": q["offset"].reshape(k, 3 * n_off), "scalings": q["scaling"]}
    f16 = {name: np.ascontiguousarray(t.numpy().astype(np.float16).view(np.uint16)) for name, t in f16.items()}
    codes = feature_codes(q["anchor_feat"], enc.quant).numpy()
    codes = codes.astype(np.uint8 if enc.quant.feature_bits <= 8 else np.uint16)
    out = dict.fromkeys(SPLIT_FIELDS, 0)
    for a in range(0, k, enc.chunk_size):
        b = min(a + enc.chunk_size, k)
        for name, cols in f16.items():
            c = np.ascontiguousarray(cols[a:b].T)
            planes = np.stack([(c >> 8).astype(np.uint8), (c & 0xFF).astype(np.uint8)], axis=1)
            out[name] += len(enc.codec.compress(planes.tobytes()))
        fc = np.ascontiguousarray(codes[a:b].T)
        if fc.dtype != np.uint8:
            fc = np.stack([(fc >> 8).astype(np.uint8), (fc & 0xFF).astype(np.uint8)], axis=1)
        out["features"] += len(enc.codec.compress(fc.tobytes()))
    stream = int(enc.size_of_prefix(k))
    out["mlps"] = int(enc.mlp_bytes)
    out["header+index"] = int(enc.overhead(k)) - int(enc.mlp_bytes)
    out["stream"] = stream
    return out


def encoder_of_model(path: Path):
    """An AnchorEncoder over a trained ``.scaffold`` model's anchors (training order), quantized as a build does."""
    from rave_viewer.codec.anchors import AnchorEncoder, AnchorQuant
    from rave_viewer.scaffold.io import load

    model = load(path)
    params = {f: t.detach() for f, t in model.params.items()}
    mlps = {k: v.detach() for k, v in model.mlp_tensors().items()}
    return AnchorEncoder(params, {"spec": model.spec.to_dict(), "mlps": mlps}, AnchorQuant.fit(params))


def encoder_of_checkpoint(path: Path):
    """The anchor encoder of a Scaffold ``.ckpt`` (None for a Gaussian checkpoint)."""
    from rave_viewer.rave.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    enc = ckpt.encoder()
    return enc if hasattr(enc, "mlp_bytes") else None


def _uniform(t, bits: int):
    """(codes uint8/uint16 [N, C], dequantized float32 like ``t``) on a per-channel uniform grid over ``t``'s range."""
    import torch

    flat = t.reshape(t.shape[0], -1).float()
    lo, hi = flat.amin(0), flat.amax(0)
    step = torch.where(hi > lo, (hi - lo) / ((1 << bits) - 1), torch.ones_like(hi))
    codes = torch.round((flat - lo) / step).clamp(0, (1 << bits) - 1)
    deq = (codes * step + lo).reshape(t.shape)
    return codes.numpy().astype(np.uint8 if bits <= 8 else np.uint16), deq


def what_if(model_path: Path, data_dir: Path, codec_name: str = "lzma", chunk: int = 1024) -> list[dict]:
    """Test PSNR and estimated stream bytes of a trained model under other storage precisions (no fine-tuning):
    the stream's (fp16 geometry, 8-bit features) and coarser uniform grids for offsets, scalings and features."""
    import torch

    from rave_viewer.codec.anchors import AnchorQuant, feature_codes, feature_values
    from rave_viewer.codec.coders import get_codec
    from rave_viewer.codec.morton import morton_encode
    from rave_viewer.scaffold.io import load
    from rave_viewer.scaffold.model import ScaffoldModel
    from rave_viewer.scaffold.train import evaluate
    from rave_viewer.scene.datasets import load_dataset

    codec = get_codec(codec_name)
    model = load(model_path)
    rec = run_record(str(model_path)) or {}
    bg = torch.tensor((rec.get("config") or {}).get("background", [0.0, 0.0, 0.0]), dtype=torch.float32)
    cams = load_dataset(data_dir, background=tuple(bg.tolist())).test
    p = {f: t.detach() for f, t in model.params.items()}
    # the stream's order: chunks of the given order, Morton order of a 10-bit position grid inside each chunk
    xyz = p["anchor"].numpy().astype(np.float64)
    lo, hi = xyz.min(0), xyz.max(0)
    grid = np.rint((xyz - lo) * (1023 / np.where(hi > lo, hi - lo, 1.0))).astype(np.int64)
    mort = morton_encode(grid)
    order = np.concatenate([a + np.argsort(mort[a:a + chunk], kind="stable") for a in range(0, len(xyz), chunk)])
    mlp_bytes = len(codec.compress(b"".join(v.detach().numpy().astype("<f4").tobytes()
                                            for v in model.mlp_tensors().values())))

    def packed(codes: np.ndarray) -> int:
        """Bytes of [N, C] codes (uint8 planes, or fp16/uint16 as high+low planes) compressed per chunk."""
        codes = codes[order]
        total = 0
        for a in range(0, len(codes), chunk):
            c = np.ascontiguousarray(codes[a:a + chunk].T)
            if c.dtype != np.uint8:
                c = np.stack([(c >> 8).astype(np.uint8), (c & 0xFF).astype(np.uint8)], axis=1)
            total += len(codec.compress(c.tobytes()))
        return total

    def fp16(t):
        h = t.reshape(t.shape[0], -1).numpy().astype(np.float16)
        return h.view(np.uint16), torch.from_numpy(h.astype(np.float32)).reshape(t.shape)

    variants = [("stream: fp16 geometry, 8-bit features", None, None, 8), ("offsets 10 bit", 10, None, 8),
                ("offsets 8 bit", 8, None, 8), ("offsets 8, scalings 8 bit", 8, 8, 8),
                ("offsets 8, scalings 8, features 6 bit", 8, 8, 6), ("offsets 6, scalings 6, features 6 bit", 6, 6, 6)]
    rows = []
    pos_codes, pos = fp16(p["anchor"])
    for label, ob, sb, fb in tqdm(variants, desc="what-if", unit="variant"):
        off_codes, off = fp16(p["offset"]) if ob is None else _uniform(p["offset"], ob)
        sc_codes, sc = fp16(p["scaling"]) if sb is None else _uniform(p["scaling"], sb)
        quant = AnchorQuant.fit(p, feature_bits=fb)
        fcodes = feature_codes(p["anchor_feat"], quant)
        feat = feature_values(fcodes, quant)
        fcodes = fcodes.numpy().astype(np.uint8 if fb <= 8 else np.uint16)
        sizes = {"positions": packed(pos_codes), "offsets": packed(off_codes), "scalings": packed(sc_codes),
                 "features": packed(fcodes), "mlps": mlp_bytes}
        q = ScaffoldModel(model.spec, {"anchor": pos, "offset": off, "scaling": sc, "anchor_feat": feat}, model.mlps)
        psnr = evaluate(q, cams, backend="cpu", background=bg)["psnr"]
        rows.append({"variant": label, "test_psnr": psnr, "bytes": sum(sizes.values()), "split": sizes})
    return rows


def split_line(split: dict[str, int]) -> str:
    parts = {k: v for k, v in split.items() if k != "stream"}
    total = sum(parts.values())
    return (", ".join(f"{k} {v / 1e3:.1f} kB ({100 * v / total:.1f} %)" for k, v in parts.items())
            + f"; sum {total / 1e3:.1f} kB vs joint stream {split['stream'] / 1e3:.1f} kB")


# -- comparison ---------------------------------------------------------------------------------------------
def bd(gs: dict, sc: dict) -> dict[str, float | None]:
    """BD-rate (%, Scaffold vs 3DGS at equal PSNR; < 0: Scaffold smaller) and BD-PSNR (dB, Scaffold minus 3DGS)."""
    out: dict[str, Any] = {}
    for name, fn in (("bd_rate_pct", bd_rate), ("bd_psnr_db", bd_psnr)):
        try:
            out[name] = fn(gs["bytes"], gs["psnr"], sc["bytes"], sc["psnr"])
        except RaveError as e:
            out[name], out[name + "_why"] = None, str(e)
    lo, hi = max(min(gs["psnr"]), min(sc["psnr"])), min(max(gs["psnr"]), max(sc["psnr"]))
    out["psnr_overlap"] = [lo, hi] if hi > lo else None
    return out


def rate_at(c: dict, psnr: float) -> float | None:
    """Bytes of the first operating point reaching ``psnr`` (None if never)."""
    for b, p in zip(c["bytes"], c["psnr"]):
        if p >= psnr:
            return b
    return None


def plot(name: str, curves: dict[str, dict], path: Path, note: str) -> None:
    series = [Series(label, [b for b in c["bytes"]], c["psnr"], color=PALETTE[i], markers=len(c["bytes"]) < 40)
              for i, (label, c) in enumerate(curves.items())]
    line_plot(path, series, title=f"{name}: RAVE-3DGS vs RAVE-Scaffold (exact .rave bytes)", xlabel="stream bytes",
              ylabel="test PSNR (dB)", logx=True, note=note,
              xfmt=lambda v: f"{v / 1e6:g} MB" if v >= 1e6 else f"{v / 1e3:g} kB")


def fmt(v, spec=".1f", none="—") -> str:
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def report(name: str, curves: dict[str, dict], cmp: dict | None, split: dict | None) -> str:
    lines = [f"### {name}", "", "| backbone | units | points | bytes min..max | PSNR min..max (dB) | train s (wall / CPU) "
             "| train test PSNR | build s | build stages (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for label, c in curves.items():
        t, b = c.get("train") or {}, c["build"]
        stages = ", ".join(f"{k} {v:.0f}" for k, v in b["stages"].items() if v is not None) or "—"
        lines.append(f"| {label} | {c['n']:,} | {len(c['bytes'])} | {c['bytes'][0] / 1e3:.1f}..{c['bytes'][-1] / 1e3:.1f} kB"
                     f" | {min(c['psnr']):.2f}..{max(c['psnr']):.2f} | {fmt(t.get('wall_s'), '.0f')} / "
                     f"{fmt(t.get('cpu_s'), '.0f')} | {fmt(t.get('test_psnr'), '.2f')} | {fmt(b['total_s'], '.0f')} "
                     f"| {stages} |")
    if cmp:
        lines += ["", f"BD-rate Scaffold vs 3DGS at equal PSNR: **{fmt(cmp['bd_rate_pct'], '+.1f')} %** "
                  f"(BD-PSNR {fmt(cmp['bd_psnr_db'], '+.2f')} dB; PSNR overlap "
                  + ("none" if not cmp["psnr_overlap"] else "{:.2f}..{:.2f} dB".format(*cmp["psnr_overlap"])) + ")"]
        for why in (cmp.get("bd_rate_pct_why"), cmp.get("bd_psnr_db_why")):
            if why:
                lines.append(f"  ({why})")
        for p in cmp.get("at_psnr", []):
            lines.append(f"- {p['psnr']:.1f} dB: 3DGS {fmt(p['3dgs'] and p['3dgs'] / 1e3)} kB, Scaffold "
                         f"{fmt(p['scaffold'] and p['scaffold'] / 1e3)} kB")
    if split:
        lines += ["", "Scaffold stream split at the full model (estimate, fields compressed alone): "
                  + split_line(split)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", nargs=3, action="append", default=[], metavar=("NAME", "GS_CKPT", "SCAFFOLD_CKPT"))
    ap.add_argument("--curve", nargs=3, action="append", default=[], metavar=("NAME", "LABEL", "CKPT"),
                    help="an extra checkpoint of scene NAME (a variant: no fine-tuning, another voxel size) drawn in "
                         "its plot and compared with its 3DGS curve")
    ap.add_argument("--scaffold-model", action="append", default=[], metavar="FILE.scaffold",
                    help="also print the estimated stream split of this trained model (all anchors, no build)")
    ap.add_argument("--what-if", nargs=2, action="append", default=[], metavar=("FILE.scaffold", "DATA_DIR"),
                    help="test PSNR and estimated bytes of a trained model at coarser offset/scaling/feature grids "
                         "(renders the dataset's test views; no fine-tuning)")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks"), help="where the PNGs go")
    ap.add_argument("--json", default=None, help="write every figure here")
    args = ap.parse_args(argv)
    start = machine()
    results: dict[str, Any] = {"machine": start, "scenes": {}, "models": {}}
    for mpath in args.scaffold_model:
        split = anchor_split(encoder_of_model(Path(mpath)))
        results["models"][mpath] = split
        print(f"{mpath}: {split_line(split)}")
    for mpath, data in args.what_if:
        rows = what_if(Path(mpath), Path(data))
        results["what_if"] = {**results.get("what_if", {}), mpath: rows}
        print(f"\n{mpath} (all anchors, no fine-tuning; bytes: fields compressed alone, lzma, 1024-anchor chunks)\n")
        print("| storage | test PSNR (dB) | est. kB | positions | offsets | scalings | features | MLPs |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            sp = r["split"]
            print(f"| {r['variant']} | {r['test_psnr']:.2f} | {r['bytes'] / 1e3:.1f} | "
                  + " | ".join(f"{sp[k] / 1e3:.1f}" for k in ("positions", "offsets", "scalings", "features", "mlps"))
                  + " |")
    for name, gs_path, sc_path in args.scene:
        curves: dict[str, dict] = {}
        for label, p in (("RAVE-3DGS", gs_path), ("RAVE-Scaffold", sc_path)):
            if p == "-" or not Path(p).is_file():
                print(f"{name}: {label}: no checkpoint ({p}); curve left out", file=sys.stderr)
                continue
            curves[label] = describe_checkpoint(Path(p))
        if not curves:
            continue
        cmp = split = None
        if len(curves) == 2:
            gs, sc = curves["RAVE-3DGS"], curves["RAVE-Scaffold"]
            cmp = bd(gs, sc)
            top = min(max(gs["psnr"]), max(sc["psnr"]))
            cmp["at_psnr"] = [{"psnr": p, "3dgs": rate_at(gs, p), "scaffold": rate_at(sc, p)}
                              for p in sorted({math.floor(top) - d for d in (0, 2, 4)})]
        if "RAVE-Scaffold" in curves:
            enc = encoder_of_checkpoint(Path(sc_path))
            split = anchor_split(enc) if enc is not None else None
        variants = {}
        for scene, label, p in args.curve:
            if scene == name and Path(p).is_file():
                curves[label] = describe_checkpoint(Path(p))
                if "RAVE-3DGS" in curves:
                    variants[label] = bd(curves["RAVE-3DGS"], curves[label])
                enc = encoder_of_checkpoint(Path(p))
                if enc is not None:
                    variants.setdefault(label, {})["split"] = anchor_split(enc)
        png = Path(args.out_dir) / f"backbones_rd_{name}.png"
        note = (f"BD-rate Scaffold vs 3DGS {fmt(cmp['bd_rate_pct'], '+.1f')} %, BD-PSNR "
                f"{fmt(cmp['bd_psnr_db'], '+.2f')} dB" if cmp else "one backbone only")
        plot(name, curves, png, note)
        results["scenes"][name] = {"curves": curves, "bd": cmp, "scaffold_split": split, "variants": variants,
                                   "png": str(png)}
        print(report(name, curves, cmp, split) + f"\n\nplot: {png}\n")
        for label, v in variants.items():
            print(f"{label} vs RAVE-3DGS: BD-rate {fmt(v.get('bd_rate_pct'), '+.1f')} %, BD-PSNR "
                  f"{fmt(v.get('bd_psnr_db'), '+.2f')} dB" + (f"; split: {split_line(v['split'])}" if "split" in v
                                                              else ""))
    results["machine_end"] = machine()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
