"""The files the viewer's buttons download: screenshot PNG, RD table CSV + plot PNG, the selection as .rave/.ply.

Every function returns ``(file name, bytes)`` pairs; the panel sends them through the browser. Rates are bytes;
the CSV has both bytes and MB (10^6 bytes).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .session import MB, Selection, fmt_bytes, rate_slug
from .sources import ViewSource

RD_COLUMNS = ("count", "bytes", "megabytes", "psnr_db", "ssim")


def png_bytes(img: np.ndarray) -> bytes:
    """PNG encoding of an [H, W, 3] uint8 image."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 image, got {img.shape} {img.dtype}")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def screenshot(source: ViewSource, sel: Selection, img: np.ndarray, mode: str = "render") -> tuple[str, bytes]:
    """The current view as a PNG named after the scene, the selection and what the view shows (``mode``:
    "render", "A/B split", "side by side", ...), so screenshots of different modes never share a name."""
    tag = rate_slug(sel.nbytes) if sel.nbytes is not None else f"{sel.k}g"
    how = "" if mode in ("render", "off") else "_" + "".join(c if c.isalnum() else "-" for c in mode).strip("-")
    return f"{source.name}_{tag}{how}_{img.shape[1]}x{img.shape[0]}.png", png_bytes(img)


def rd_csv(source: ViewSource) -> tuple[str, bytes]:
    """The checkpoint's dense RD table: one row per operating point, increasing count (and rate)."""
    rd = source.rd
    if rd is None:
        raise ValueError(f"{source.path.name} has no RD table")
    n = len(rd["count"])
    lines = [",".join(RD_COLUMNS)]
    for i in range(n):
        b = int(rd["bytes"][i])
        ps = rd.get("psnr", [float("nan")] * n)[i]
        ss = rd.get("ssim", [float("nan")] * n)[i]
        lines.append(f"{int(rd['count'][i])},{b},{b / MB:.6f},{float(ps):.4f},{float(ss):.5f}")
    return f"{source.name}_rd.csv", ("\n".join(lines) + "\n").encode()


def rd_plot(source: ViewSource, sel: Selection, size: tuple[int, int] = (960, 640)) -> tuple[str, bytes]:
    """PNG plot of the RD curve (PSNR over MB) with the level points and the current operating point."""
    from ..eval.plot import Series, line_plot

    pts = source.rd_points()
    if pts is None:
        raise ValueError(f"{source.path.name} has no RD table")
    xb, yp = pts
    series = [Series("RAVE (dense RD table)", list(xb / MB), list(yp))]
    ck = source.checkpoint
    lv_counts = list(ck.level_sizes)
    lv_x = [r / MB for r in ck.level_rates]
    lv_y = [source.psnr_at(c) for c in lv_counts]
    series.append(Series("levels", lv_x, lv_y, line=False, markers=True))
    if sel.nbytes is not None and sel.psnr is not None:
        series.append(
            Series(f"current: {fmt_bytes(sel.nbytes)}, {sel.psnr:.2f} dB", [sel.nbytes / MB], [sel.psnr],
                   color=(214, 39, 40), line=False, markers=True)
        )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rave-view-") as tmp:
        p = Path(tmp) / "rd.png"
        line_plot(
            p, series, title=f"{source.name}: rate-distortion", xlabel="size [MB = 10^6 bytes]",
            ylabel="PSNR [dB], mean over test views", size=size, legend="lower right",
        )  # fmt: skip
        data = p.read_bytes()
    return f"{source.name}_rd_{rate_slug(sel.nbytes or 0)}.png", data


def rd_files(source: ViewSource, sel: Selection) -> list[tuple[str, bytes]]:
    """Export RD: the CSV table and the PNG plot with the current point."""
    return [rd_csv(source), rd_plot(source, sel)]


def selection_files(source: ViewSource, sel: Selection) -> list[tuple[str, bytes]]:
    """Export at this rate: the .rave stream and a standard .ply of the current selection."""
    stem = f"{source.name}_{rate_slug(sel.nbytes) if sel.nbytes is not None else ''}_{sel.k}g".replace("__", "_")
    data = source.encode_prefix(sel.k)
    return [(f"{stem}.rave", data), (f"{stem}.ply", source.ply_bytes(sel.k))]


__all__ = ["RD_COLUMNS", "png_bytes", "rd_csv", "rd_files", "rd_plot", "screenshot", "selection_files"]
