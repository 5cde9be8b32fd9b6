"""Comparing RD curves: Bjøntegaard deltas between pairs, smoothness of one curve, and text tables of both.

BD numbers come from :mod:`rave_viewer.eval.bjontegaard` (PCHIP in log-rate over the overlapping range). Sign
convention: for a pair (ref, test), BD-PSNR > 0 means test is better; BD-rate < 0 means test needs fewer bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .rd import RDCurve


@dataclass
class BDResult:
    """Bjøntegaard deltas of ``test`` against ``ref``; a value is None when it cannot be computed (``why``)."""

    ref: str
    test: str
    bd_psnr_db: float | None
    bd_rate_pct: float | None
    why: str = ""

    def to_dict(self) -> dict:
        return {"ref": self.ref, "test": self.test, "bd_psnr_db": self.bd_psnr_db,
                "bd_rate_pct": self.bd_rate_pct, "why": self.why}


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def bd(ref: RDCurve, test: RDCurve) -> BDResult:
    """BD-PSNR (dB) and BD-rate (%) of ``test`` against ``ref`` over their overlapping rate range."""
    from .bjontegaard import bd_psnr, bd_rate

    r, t = ref.sorted(), test.sorted()
    out = BDResult(ref.label, test.label, None, None)
    whys = []
    try:
        out.bd_psnr_db = _finite(bd_psnr(r.bytes, r.psnr, t.bytes, t.psnr))
    except Exception as e:  # noqa: BLE001 - reported in the table, not fatal for the other pairs
        whys.append(f"BD-PSNR: {e}")
    try:
        out.bd_rate_pct = _finite(bd_rate(r.bytes, r.psnr, t.bytes, t.psnr))
    except Exception as e:  # noqa: BLE001
        whys.append(f"BD-rate: {e}")
    out.why = "; ".join(" ".join(str(w).split()) for w in whys)
    return out


def bd_pairs(curves: Sequence[RDCurve], ref: int | None = None) -> list[BDResult]:
    """BD of every pair (i < j: ref i, test j), or of every curve against ``curves[ref]`` when given."""
    if ref is not None:
        return [bd(curves[ref], c) for i, c in enumerate(curves) if i != ref]
    return [bd(curves[i], curves[j]) for i in range(len(curves)) for j in range(i + 1, len(curves))]


def smoothness(curve: RDCurve, tol_db: float = 0.05) -> dict:
    """How regular a curve is along increasing rate.

    dips: neighbouring pairs where PSNR drops by more than ``tol_db``; max_dip_db: the largest drop (0 if none);
    excess_variation_db: sum |dPSNR| - (last - first), 0 for a monotone curve (the "irregularity" of Fig. 4);
    max_rate_gap_pct: the largest relative rate step between neighbours (a dense curve has small steps).
    """
    c = curve.sorted()
    d = [b - a for a, b in zip(c.psnr[:-1], c.psnr[1:])]
    drops = [-x for x in d if x < 0]
    gaps = [(b - a) / a * 100.0 for a, b in zip(c.bytes[:-1], c.bytes[1:]) if a > 0]
    return {
        "points": len(c),
        "dips": sum(1 for x in drops if x > tol_db),
        "max_dip_db": max(drops, default=0.0),
        "excess_variation_db": sum(abs(x) for x in d) - (c.psnr[-1] - c.psnr[0]) if d else 0.0,
        "max_rate_gap_pct": max(gaps, default=0.0),
    }


def _num(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def bd_table_text(rows: Sequence[BDResult], markdown: bool = False) -> str:
    """A table of BD results, plain text for the terminal or GitHub markdown."""
    head = ["reference", "test", "BD-PSNR (dB)", "BD-rate (%)"]
    body = [[r.ref, r.test, _num(r.bd_psnr_db, "+.3f"), _num(r.bd_rate_pct, "+.2f")] for r in rows]
    notes = [f"{r.ref} vs {r.test}: {r.why}" for r in rows if r.why]
    return _table(head, body, markdown, n_left=2) + ("\n" + "\n".join(notes) if notes else "")


def curve_table_text(curve: RDCurve, markdown: bool = False) -> str:
    """Operating points of one curve: count, bytes, KB, PSNR, SSIM."""
    head = [str(curve.meta.get("units", "Gaussians")), "bytes", "KB (10^3 B)", "PSNR (dB)", "SSIM"]
    body = [[str(c), str(b), f"{b / 1e3:.1f}", f"{p:.3f}", f"{s:.4f}"]
            for c, b, p, s in zip(curve.count, curve.bytes, curve.psnr, curve.ssim)]
    return _table(head, body, markdown, n_left=0)


def _table(head: list[str], body: list[list[str]], markdown: bool, n_left: int) -> str:
    """Columns before ``n_left`` are left-aligned (names), the rest right-aligned (numbers)."""
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    w = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(x.ljust(w[i]) if i < n_left else x.rjust(w[i]) for i, x in enumerate(r))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * x for x in w])] + [fmt(r) for r in body])


def anchor_sag(curve: RDCurve, anchor_bytes: Sequence[int]) -> dict:
    """How far the operating points between anchors fall below the chord joining the anchors (Fig. 4's
    irregularity): for each point strictly between two consecutive anchors, PSNR minus the straight line in
    log-rate between the anchors' PSNRs. A good interpolation of a concave RD curve lies on or above its chords.

    Returns worst_db (most negative difference, 0 if none below), mean_db (mean difference over those points)
    and points (how many were between anchors). Anchors must be points of the curve (matched by bytes).
    """
    c = curve.sorted()
    at = {b: p for b, p in zip(c.bytes, c.psnr)}
    anchors = sorted(int(a) for a in anchor_bytes if int(a) in at)
    diffs = []
    for a, b in zip(anchors[:-1], anchors[1:]):
        la, lb = math.log(a), math.log(b)
        for x, p in zip(c.bytes, c.psnr):
            if a < x < b:
                t = (math.log(x) - la) / (lb - la)
                diffs.append(p - (at[a] + t * (at[b] - at[a])))
    return {"worst_db": min([0.0, *diffs]), "mean_db": sum(diffs) / len(diffs) if diffs else 0.0,
            "points": len(diffs)}
