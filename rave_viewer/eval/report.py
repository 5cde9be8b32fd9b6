"""Writing an evaluation report: RD points as CSV and JSON, BD tables, and PSNR/SSIM-vs-size PNG plots.

Files (all atomic): ``rd.csv`` (one row per operating point of every curve), ``rd.json`` (curves, BD results,
smoothness, notes), ``bd.csv`` (when there are pairs), ``rd_psnr.png`` and ``rd_ssim.png``. Sizes are bytes;
plots label them in KB/MB with KB = 10^3 bytes and MB = 10^6 bytes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

from ..errors import RaveError
from ..fileio import atomic_write_text
from ..jsonio import read_json
from .compare import BDResult, smoothness
from .plot import Series, line_plot
from .rd import RDCurve


def fmt_bytes(v: float) -> str:
    """Decimal units: 1 KB = 10^3 bytes, 1 MB = 10^6 bytes."""
    if v >= 1e6:
        return f"{v / 1e6:.3g} MB"
    if v >= 1e3:
        return f"{v / 1e3:.3g} KB"
    return f"{v:.0f} B"


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def rd_csv_text(curves: Sequence[RDCurve]) -> str:
    """One row per operating point; ``count`` is the prefix length in the curve's units (``unit``: Gaussians
    or anchors, from the checkpoint's backbone)."""
    rows = [["method", "unit", "count", "bytes", "psnr_db", "ssim"]]
    for c in curves:
        u = c.meta.get("units", "Gaussians")
        rows += [[c.label, u, k, b, f"{p:.6f}", f"{s:.6f}"] for k, b, p, s in zip(c.count, c.bytes, c.psnr, c.ssim)]
    return _csv(rows)


def bd_csv_text(rows: Sequence[BDResult]) -> str:
    out = [["reference", "test", "bd_psnr_db", "bd_rate_pct", "note"]]
    out += [[r.ref, r.test, "" if r.bd_psnr_db is None else f"{r.bd_psnr_db:.6f}",
             "" if r.bd_rate_pct is None else f"{r.bd_rate_pct:.4f}", r.why] for r in rows]
    return _csv(out)


def _series(curves: Sequence[RDCurve], key: str, styles: dict | None) -> list[Series]:
    out = []
    for c in curves:
        st = dict((styles or {}).get(c.label, {}))
        st.setdefault("line", c.continuous)
        st.setdefault("markers", not c.continuous)
        out.append(Series(c.label, c.bytes, getattr(c, key), **st))
    return out


def plot_curves(
    out_dir: str | Path,
    curves: Sequence[RDCurve],
    *,
    title: str = "",
    note: str = "",
    stem: str = "rd",
    styles: dict | None = None,
) -> list[Path]:
    """Write ``{stem}_psnr.png`` and ``{stem}_ssim.png`` (quality against size on a log axis)."""
    out_dir = Path(out_dir)
    paths = []
    for key, ylabel in (("psnr", "PSNR (dB), mean over test views"), ("ssim", "SSIM, mean over test views")):
        p = out_dir / f"{stem}_{key}.png"
        line_plot(p, _series(curves, key, styles), title=title, note=note, logx=True, xfmt=fmt_bytes,
                  xlabel="size of the .rave stream (log scale; KB = 10^3 B, MB = 10^6 B)", ylabel=ylabel,
                  yfmt=(lambda v: f"{v:.3f}") if key == "ssim" else None)
        paths.append(p)
    return paths


def _clean(o):
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def write_report(
    out_dir: str | Path,
    curves: Sequence[RDCurve],
    *,
    bd_rows: Sequence[BDResult] = (),
    title: str = "",
    note: str = "",
    notes: Sequence[str] = (),
    meta: dict | None = None,
    styles: dict | None = None,
) -> dict[str, Path]:
    """Write rd.csv, rd.json, (bd.csv,) rd_psnr.png, rd_ssim.png into ``out_dir``; returns {name: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["csv"] = out_dir / "rd.csv"
    atomic_write_text(files["csv"], rd_csv_text(curves))
    if bd_rows:
        files["bd_csv"] = out_dir / "bd.csv"
        atomic_write_text(files["bd_csv"], bd_csv_text(bd_rows))
    payload = {
        "units": {"bytes": "exact .rave stream size in bytes", "psnr": "dB, mean over test views",
                  "ssim": "mean over test views (11x11 Gaussian window, valid filtering)"},
        "curves": [c.to_dict() for c in curves],
        "smoothness": {c.label: smoothness(c) for c in curves if c.continuous and len(c) > 1},
        "bd": [r.to_dict() for r in bd_rows],
        "notes": list(notes),
        "meta": meta or {},
    }
    files["json"] = out_dir / "rd.json"
    atomic_write_text(files["json"], json.dumps(_clean(payload), indent=1) + "\n")
    png = plot_curves(out_dir, curves, title=title, note=note, styles=styles)
    files["psnr_png"], files["ssim_png"] = png
    return files


def load_report(path: str | Path) -> list[RDCurve]:
    """Curves back from an ``rd.json`` written by :func:`write_report`; RaveError naming the file otherwise."""
    d = read_json(path, "is not an RD report (rd.json)")
    try:
        curves = [RDCurve.from_dict(c) for c in d["curves"]]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        what = f"missing key {e}" if isinstance(e, KeyError) else " ".join(str(e).split())[:80]
        raise RaveError(f"is not an RD report (rd.json): {what}", path) from None
    for c in curves:
        n = len(c.count)
        if any(len(v) != n for v in (c.bytes, c.psnr, c.ssim)):
            raise RaveError(f"is not an RD report (rd.json): curve {c.label!r} has columns of different lengths", path)
    return curves
