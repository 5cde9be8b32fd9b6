"""Line plots drawn with Pillow only, so RD figures need no plotting library (matplotlib is not a dependency).

One function, :func:`line_plot`: several labelled series on linear or log-x axes with "nice" ticks, a legend,
optional markers and dashes, anti-aliased by drawing at 2x and downsampling. Output: PNG written atomically.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from PIL import Image, ImageDraw, ImageFont

from ..fileio import atomic_write_bytes

# Tableau 10: distinguishable, colour-blind friendly enough, the matplotlib default cycle.
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]
_SS = 2  # supersampling factor


@dataclass
class Series:
    """One curve: points (x[i], y[i]) joined by lines unless ``line`` is False."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: tuple[int, int, int] | None = None  # None: next palette colour
    line: bool = True
    markers: bool = False
    dashed: bool = False
    width: float = 2.0
    extra: dict = field(default_factory=dict)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 ships a scalable font
    except TypeError:  # pragma: no cover - very old Pillow
        return ImageFont.load_default()


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi], about ``target`` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 1e-3
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def log_ticks(lo: float, hi: float, target: int = 7) -> list[float]:
    """Tick values for a log axis on [lo, hi] (lo > 0): 1-2-5 per decade, thinned or linear if too few."""
    if lo <= 0 or hi <= lo:
        return nice_ticks(lo, hi, target)
    ticks = []
    for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                ticks.append(v)
    if len(ticks) < 3:  # less than a decade: linear-looking ticks placed on the log axis
        ticks = [t for t in nice_ticks(lo, hi, target - 2) if t > 0]
    while len(ticks) > target + 3:
        ticks = ticks[::2]
    return ticks


def _fmt_default(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        return f"{v:.3g}"
    return f"{v:.6g}" if a >= 1 else f"{v:.3f}".rstrip("0").rstrip(".")


def line_plot(
    path,
    series: Sequence[Series],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    xfmt: Callable[[float], str] | None = None,
    yfmt: Callable[[float], str] | None = None,
    size: tuple[int, int] = (960, 640),
    legend: str = "lower right",
    note: str = "",
    ylim: tuple[float, float] | None = None,
) -> None:
    """Draw ``series`` and write a PNG to ``path`` (atomic). Non-finite points are skipped.

    legend: "lower right" | "upper left" | "upper right" | "lower left". ``note``: small text under the title.
    ``ylim``: fixed (low, high) y range; curves outside it are clipped at the box (default: fit the data).
    """
    xfmt = xfmt or _fmt_default
    yfmt = yfmt or _fmt_default
    W, H = size[0] * _SS, size[1] * _SS
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    f_title, f_lab, f_tick = _font(17 * _SS), _font(14 * _SS), _font(12 * _SS)

    pts = [
        (float(x), float(y))
        for s in series
        for x, y in zip(s.x, s.y)
        if math.isfinite(float(x)) and math.isfinite(float(y)) and (not logx or float(x) > 0)
    ]
    if pts:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    else:
        x0, x1, y0, y1 = (1.0, 10.0, 0.0, 1.0)
    if logx:
        if x1 <= x0:
            x0, x1 = x0 / 1.5, x1 * 1.5
        lx0, lx1 = math.log10(x0), math.log10(x1)
        pad = 0.03 * (lx1 - lx0)
        x0, x1 = 10 ** (lx0 - pad), 10 ** (lx1 + pad)
    else:
        if x1 <= x0:
            x0, x1 = x0 - 1, x1 + 1
        pad = 0.03 * (x1 - x0)
        x0, x1 = x0 - pad, x1 + pad
    if ylim is not None:
        y0, y1 = (float(v) for v in ylim)
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    if ylim is None:
        pad = 0.06 * (y1 - y0)
        y0, y1 = y0 - pad, y1 + pad

    left, right = 92 * _SS, W - 24 * _SS
    top = (56 + (18 if note else 0)) * _SS
    bottom = H - 64 * _SS

    def px(x: float) -> float:
        t = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0)) if logx else (x - x0) / (x1 - x0)
        return left + t * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    grid, axis, text = (228, 228, 228), (60, 60, 60), (20, 20, 20)
    xt = log_ticks(x0, x1) if logx else nice_ticks(x0, x1)
    yt = nice_ticks(y0, y1)
    for v in xt:
        X = px(v)
        d.line([(X, top), (X, bottom)], fill=grid, width=_SS)
        d.line([(X, bottom), (X, bottom + 5 * _SS)], fill=axis, width=_SS)
        d.text((X, bottom + 8 * _SS), xfmt(v), font=f_tick, fill=text, anchor="ma")
    for v in yt:
        Y = py(v)
        d.line([(left, Y), (right, Y)], fill=grid, width=_SS)
        d.line([(left - 5 * _SS, Y), (left, Y)], fill=axis, width=_SS)
        d.text((left - 8 * _SS, Y), yfmt(v), font=f_tick, fill=text, anchor="rm")
    d.rectangle([left, top, right, bottom], outline=axis, width=_SS)
    if title:
        d.text((W / 2, 14 * _SS), title, font=f_title, fill=text, anchor="ma")
    if note:
        d.text((W / 2, 38 * _SS), note, font=f_tick, fill=(90, 90, 90), anchor="ma")
    if xlabel:
        d.text(((left + right) / 2, H - 14 * _SS), xlabel, font=f_lab, fill=text, anchor="md")
    if ylabel:
        lab = Image.new("RGBA", (int(d.textlength(ylabel, font=f_lab)) + 8, 22 * _SS), (255, 255, 255, 0))
        ImageDraw.Draw(lab).text((4, 2), ylabel, font=f_lab, fill=text)
        lab = lab.rotate(90, expand=True)
        img.paste(lab, (8 * _SS, int((top + bottom) / 2 - lab.height / 2)), lab)

    # Curves, clipped to the plot box by drawing on a layer and pasting the box region only.
    layer = Image.new("RGBA", (W, H), (255, 255, 255, 0))
    ld = ImageDraw.Draw(layer)
    colors = []
    for i, s in enumerate(series):
        col = s.color or PALETTE[i % len(PALETTE)]
        colors.append(col)
        P = [
            (px(float(x)), py(float(y)))
            for x, y in zip(s.x, s.y)
            if math.isfinite(float(x)) and math.isfinite(float(y)) and (not logx or float(x) > 0)
        ]
        w = max(1, int(round(s.width * _SS)))
        if s.line and len(P) > 1:
            if s.dashed:
                _dashed(ld, P, col, w, 9 * _SS, 6 * _SS)
            else:
                ld.line(P, fill=col, width=w, joint="curve")
        if s.markers or len(P) == 1 or not s.line:
            r = 4 * _SS
            for X, Y in P:
                ld.ellipse([X - r, Y - r, X + r, Y + r], fill=col, outline="white", width=_SS)
    box = (int(left), int(top), int(right) + 1, int(bottom) + 1)
    img.paste(layer.crop(box), box[:2], layer.crop(box))
    d.rectangle([left, top, right, bottom], outline=axis, width=_SS)

    labelled = [(s, c) for s, c in zip(series, colors) if s.label]
    if labelled:
        lw = max(int(d.textlength(s.label, font=f_tick)) for s, _ in labelled) + 46 * _SS
        lh = len(labelled) * 19 * _SS + 10 * _SS
        m = 10 * _SS
        lx = right - lw - m if "right" in legend else left + m
        ly = bottom - lh - m if "lower" in legend else top + m
        d.rectangle([lx, ly, lx + lw, ly + lh], fill=(255, 255, 255), outline=(180, 180, 180), width=_SS)
        for j, (s, c) in enumerate(labelled):
            Y = ly + 5 * _SS + j * 19 * _SS + 9 * _SS
            if s.line:
                if s.dashed:
                    _dashed(d, [(lx + 8 * _SS, Y), (lx + 34 * _SS, Y)], c, 2 * _SS, 6 * _SS, 4 * _SS)
                else:
                    d.line([(lx + 8 * _SS, Y), (lx + 34 * _SS, Y)], fill=c, width=2 * _SS)
            if s.markers or not s.line:
                r = 4 * _SS
                X = lx + 21 * _SS
                d.ellipse([X - r, Y - r, X + r, Y + r], fill=c, outline="white", width=_SS)
            d.text((lx + 40 * _SS, Y), s.label, font=f_tick, fill=text, anchor="lm")

    out = img.resize(size, Image.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())


def _dashed(d: ImageDraw.ImageDraw, P, col, w: int, on: float, off: float) -> None:
    """Polyline with a dash pattern that continues across vertices."""
    phase, drawing = 0.0, True
    for (xa, ya), (xb, yb) in zip(P[:-1], P[1:]):
        seg = math.hypot(xb - xa, yb - ya)
        pos = 0.0
        while pos < seg:
            left = (on if drawing else off) - phase
            step = min(left, seg - pos)
            if drawing and step > 0:
                t0, t1 = pos / seg, (pos + step) / seg
                d.line([(xa + (xb - xa) * t0, ya + (yb - ya) * t0), (xa + (xb - xa) * t1, ya + (yb - ya) * t1)],
                       fill=col, width=w)
            pos += step
            phase += step
            if phase >= (on if drawing else off) - 1e-9:
                phase, drawing = 0.0, not drawing
