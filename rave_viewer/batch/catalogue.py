"""The batch report: ``catalogue.csv`` (for machines), ``catalogue.md`` (for people), ``catalogue.png`` (RD curves).

One row per scene, sorted by name: status, Gaussians, levels, the exact rate range (bytes of G_1 and G_L),
the PSNR range of the stored RD table, build seconds, the error of a failed scene. The CSV also lists every
level's size and exact rate, so two catalogues of the same inputs can be compared level by level. Every file
is written atomically.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..fileio import atomic_write_text
from .job import FAILED

#: CSV columns, in order ("gaussians" counts the ranked units, "unit" says which: Gaussians or anchors).
COLUMNS = ("scene", "status", "gaussians", "unit", "levels", "rate_min_bytes", "rate_max_bytes", "psnr_min_db",
           "psnr_max_db", "psnr_vs", "build_seconds", "level_sizes", "level_rates", "checkpoint", "error", "notes")
#: Scenes named in the PNG's legend (the curves of the others are drawn unlabelled).
MAX_LEGEND = 20


def rows(results: dict[str, dict]) -> list[dict]:
    """One CSV row (column -> text) per result, sorted by scene name."""
    out = []
    for name in sorted(results):
        r = results[name]
        s = r.get("summary") or {}
        ok = r.get("status") != FAILED and bool(s)
        ps = [float(p) for p in (s.get("rd") or {}).get("psnr", [])] if ok else []
        rates = (s.get("level_rates") or []) if ok else []
        out.append({
            "scene": name,
            "status": r.get("status", FAILED),
            "gaussians": str(s["gaussians"]) if ok else "",
            "unit": str(s.get("unit", "Gaussians")) if ok else "",
            "levels": str(s["levels"]) if ok else "",
            "rate_min_bytes": str(rates[0]) if rates else "",
            "rate_max_bytes": str(rates[-1]) if rates else "",
            "psnr_min_db": f"{min(ps):.4f}" if ps else "",
            "psnr_max_db": f"{max(ps):.4f}" if ps else "",
            "psnr_vs": s.get("psnr_vs", "") if ok else "",
            "build_seconds": f"{float(r.get('seconds') or 0):.1f}" if ok else "",
            "level_sizes": ";".join(map(str, s.get("level_sizes") or [])) if ok else "",
            "level_rates": ";".join(map(str, rates)),
            "checkpoint": f"{name}.ckpt" if ok else "",
            "error": r.get("error") or "",
            "notes": " | ".join(r.get("notes") or []),
        })
    return out


def csv_text(table: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    return buf.getvalue()


def read_csv(path: str | os.PathLike) -> list[dict]:
    """A catalogue.csv back as rows (column -> text)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _size(n: str) -> str:
    from ..rave.selection import format_bytes

    return format_bytes(int(n)).split(" (")[-1].rstrip(")") if n else ""


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(table: list[dict], *, title: str, runner: str = "", png: str | None = None) -> str:
    n = {s: sum(r["status"] == s for r in table) for s in ("built", "up to date", FAILED)}
    lines = [f"# {title}", "",
             f"{len(table)} scenes: {n['built']} built, {n['up to date']} up to date, {n[FAILED]} failed"
             + (f" ({runner})" if runner else "") + ". Rates are exact `.rave` sizes of the coarsest and the "
             "full level (KB/MB = 10^3/10^6 bytes); PSNR is over the stored RD table, against the test photos, or "
             "against the full model for scenes built without photos; build s is the build's wall time (for a scene "
             "up to date, of the run that built it).", ""]
    if png:
        lines += [f"![RD curves of every scene]({png})", ""]
    lines += ["| scene | status | units | levels | rate range | PSNR range (dB) | PSNR vs | build s |",
              "|---|---|---:|---:|---|---|---|---:|"]
    for r in table:
        rate = f"{_size(r['rate_min_bytes'])} – {_size(r['rate_max_bytes'])}" if r["rate_min_bytes"] else ""
        psnr = (f"{float(r['psnr_min_db']):.2f} – {float(r['psnr_max_db']):.2f}" if r["psnr_min_db"] else "")
        g = f"{int(r['gaussians']):,} {r.get('unit') or 'Gaussians'}" if r["gaussians"] else ""
        lines.append(f"| {_md(r['scene'])} | {r['status']} | {g} | {r['levels']} | {rate} | {psnr} | "
                     f"{r['psnr_vs']} | {r['build_seconds']} |")
    failed = [r for r in table if r["status"] == FAILED]
    if failed:
        lines += ["", "## Failed", ""] + [f"- **{_md(r['scene'])}**: {_md(r['error'])}" for r in failed]
    noted = [r for r in table if r["notes"]]
    if noted:
        lines += ["", "## Warnings", ""] + [f"- **{_md(r['scene'])}**: {_md(r['notes'])}" for r in noted]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict], path: str | os.PathLike, title: str) -> int:
    """Every built scene's RD curve (exact bytes, log axis, vs PSNR) in one PNG; returns the curves drawn."""
    from ..eval.plot import Series, line_plot

    series = []
    for name in sorted(results):
        r = results[name]
        rd = (r.get("summary") or {}).get("rd") or {}
        if r.get("status") == FAILED or not rd.get("bytes"):
            continue
        pts = sorted(zip(rd["bytes"], rd["psnr"]))
        series.append(Series(name if len(series) < MAX_LEGEND else "", [p[0] for p in pts], [p[1] for p in pts]))
    more = len(series) - MAX_LEGEND
    vs = {(results[n].get("summary") or {}).get("psnr_vs") for n in results if results[n].get("status") != FAILED}
    against = ("PSNR vs the full model (no photos)" if vs == {"full model"} else "PSNR vs the test photos"
               if vs <= {"photos"} else "PSNR vs the test photos, or the full model for scenes without photos")
    note = f"{len(series)} scenes; {against}" + (f"; the legend names the first {MAX_LEGEND}" if more > 0 else "")

    def kb(v: float) -> str:
        return f"{v / 1e6:g} MB" if v >= 1e6 else f"{v / 1e3:g} KB" if v >= 1e3 else f"{v:g} B"

    line_plot(path, series, title=title, xlabel="rate (exact .rave bytes, log scale)", ylabel="PSNR (dB)",
              logx=True, xfmt=kb, note=note)
    return len(series)


def write(out_dir: str | os.PathLike, results: dict[str, dict], *, runner: str = "") -> dict[str, Path]:
    """Write catalogue.csv, catalogue.md and catalogue.png into ``out_dir``; their paths by kind."""
    out = Path(out_dir)
    table = rows(results)
    paths = {"csv": out / "catalogue.csv", "md": out / "catalogue.md", "png": out / "catalogue.png"}
    title = f"RAVE catalogue: {out.resolve().name}"
    plot(results, paths["png"], title)
    atomic_write_text(paths["csv"], csv_text(table))
    atomic_write_text(paths["md"], markdown(table, title=title, runner=runner, png=paths["png"].name))
    return paths


__all__ = ["COLUMNS", "markdown", "plot", "read_csv", "rows", "write"]
