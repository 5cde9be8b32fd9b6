"""Per-tab selection state, slider units, readouts and the exported files, without any GUI."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from rave_viewer.codec import decode
from rave_viewer.scene.ply import read_ply
from rave_viewer.viewer import exports
from rave_viewer.viewer.session import (
    Session,
    fmt_bytes,
    markdown_table,
    nice_step,
    readout_rows,
    slider_spec,
)
from rave_viewer.viewer.sources import open_source


def test_units_are_si():
    assert fmt_bytes(1_234_567) == "1.235 MB"
    assert fmt_bytes(19_522) == "19.52 KB"
    assert fmt_bytes(999) == "999 B"
    assert nice_step(16.86) == 0.02 and nice_step(1300) == 2 and nice_step(0) == 1.0


def test_slider_spec_picks_units_and_fine_steps(ckpt_source):
    rate = slider_spec(ckpt_source, "rate")
    assert rate.unit == "KB" and rate.scale == 1000 and rate.label == "Rate [KB]"
    lo, hi = ckpt_source.bounds("rate")
    assert rate.lo <= lo / 1000 and rate.hi >= hi / 1000
    assert 500 <= (rate.hi - rate.lo) / rate.step <= 1100  # fine: about a thousand positions
    count = slider_spec(ckpt_source, "count")
    assert (count.lo, count.hi, count.precision) == (200, 1500, 0) and isinstance(count.step, int)
    psnr = slider_spec(ckpt_source, "psnr")
    assert psnr.unit == "dB" and psnr.precision >= 2


def test_dragging_the_rate_changes_count_and_bytes_monotonically(ckpt_source):
    s = Session(ckpt_source)
    assert s.mode == "rate" and s.k == ckpt_source.default_k()  # starts at the knee of the RD curve
    spec = s.spec()
    sels = [s.set_target(spec.from_ui(v)) for v in np.linspace(spec.lo, spec.hi, 25)]
    ks, bs = [x.k for x in sels], [x.nbytes for x in sels]
    assert all(a < b for a, b in zip(ks, ks[1:])) and all(a < b for a, b in zip(bs, bs[1:]))
    assert sels[-1].k == ckpt_source.n and sels[-1].level == 4 and sels[0].level == 1
    # exact sizes, and within one chunk of the target (the checkpoint's exact Eq. 3 rule)
    for x in sels:
        assert x.nbytes == len(ckpt_source.encode_prefix(x.k))
        assert abs(x.nbytes - min(max(x.target, ckpt_source.bounds("rate")[0]), 19522)) < 2000
    v0 = s.version
    s.set_target(s.target)  # same target: same selection, no new version
    assert s.version == v0


def test_switching_target_mode_keeps_the_selection(ckpt_source):
    s = Session(ckpt_source)
    s.set_target(8000)
    k = s.k
    spec = s.set_mode("Gaussian count")  # UI labels are accepted
    assert s.mode == "count" and spec.to_ui(s.target) == k and s.k == k
    assert s.set_target(300).k == 300
    s.set_mode("psnr")
    assert s.k == 300 and abs(s.target - ckpt_source.psnr_at(300)) < 0.01
    sel = s.set_target(s.target + 1.0)
    assert sel.k > 300 and sel.psnr >= ckpt_source.psnr_at(300) + 0.99
    assert s.set_target(1e9).k == ckpt_source.n  # out-of-range targets clamp


def test_readouts(ckpt_source):
    s = Session(ckpt_source)
    sel = s.set_target(10_000)
    rows = dict(readout_rows(sel, None, "view front"))
    assert rows["Target rate"] == "10.00 KB"
    assert rows["Encoded size"] == f"{fmt_bytes(sel.nbytes)} ({sel.nbytes:,} bytes)"
    assert rows["Gaussians"] == f"{sel.k:,} of 1,500 ({100 * sel.k / 1500:.1f} %)"
    assert rows["Level"] == f"{sel.level} of 4" and rows["PSNR, view front"] == "…"
    assert rows["PSNR, test mean"] == f"{ckpt_source.psnr_at(sel.k):.2f} dB"
    s.set_view(0)
    s.record_view_psnr(sel.k, 0, 31.234)
    assert s.view_psnr() == pytest.approx(31.234)
    table = markdown_table(readout_rows(sel, s.view_psnr(), "view front"))
    assert "| PSNR, view front | 31.23\u00a0dB |" in table  # (no-break space: the value never wraps)


def test_exports(ckpt_source, tmp_path):
    s = Session(ckpt_source)
    sel = s.set_target(9000)
    img = np.zeros((30, 40, 3), np.uint8)
    img[5, 7] = (1, 2, 3)
    name, data = exports.screenshot(ckpt_source, sel, img)
    assert name.endswith("_40x30.png")
    back = np.asarray(Image.open(io.BytesIO(data)))
    assert back.shape == (30, 40, 3) and np.array_equal(back, img)

    (csv_name, csv_data), (png_name, png_data) = exports.rd_files(ckpt_source, sel)
    assert csv_name == "sphere_rd.csv" and png_name.endswith(".png")
    rows = list(csv.DictReader(io.StringIO(csv_data.decode())))
    rd = ckpt_source.rd
    assert [int(r["count"]) for r in rows] == rd["count"] and [int(r["bytes"]) for r in rows] == rd["bytes"]
    assert all(float(r["megabytes"]) == pytest.approx(int(r["bytes"]) / 1e6) for r in rows)
    assert Image.open(io.BytesIO(png_data)).size == (960, 640)

    (rave_name, rave), (ply_name, ply) = exports.selection_files(ckpt_source, sel)
    assert rave_name.endswith(f"_{sel.k}g.rave") and ply_name.endswith(f"_{sel.k}g.ply")
    assert len(rave) == sel.nbytes
    dec = decode(rave, strict=True)
    assert dec.n_decoded == sel.k
    (tmp_path / "sel.ply").write_bytes(ply)
    assert read_ply(tmp_path / "sel.ply").equal(ckpt_source.gaussians.prefix(sel.k))


def test_exports_of_a_rave_stream_are_its_own_prefixes(scene_files):
    src = open_source(scene_files["rave"])
    s = Session(src)
    sel = s.set_target(src.stop_bytes[5] + 3)
    assert sel.k == src.stops[5] and sel.nbytes == src.stop_bytes[5]
    (_, rave), _ = exports.selection_files(src, sel)
    assert len(rave) == sel.nbytes
    assert decode(rave, strict=True).gaussians.equal(src.gaussians.prefix(sel.k))


def test_start_flags_set_the_first_selection(ckpt_source):
    import argparse

    from rave_viewer.commands.view import start_target

    def ns(**kw):
        return argparse.Namespace(**{"rate": None, "count": None, "psnr": None, **kw})

    r = ckpt_source.bytes_of(700)
    start = start_target(ckpt_source, ns(rate=str(r)))
    s = Session(ckpt_source, start)
    assert s.mode == "rate" and s.k == ckpt_source.select_rate_cap(r) and ckpt_source.bytes_of(s.k) <= r
    assert s.k >= 700 and ckpt_source.bytes_of(s.k + 1) > r  # the largest prefix that fits
    s = Session(ckpt_source, start_target(ckpt_source, ns(count=640)))
    assert s.mode == "count" and s.k == 640 and s.selection().target == 640
    s = Session(ckpt_source, start_target(ckpt_source, ns(psnr=30.0)))
    assert s.mode == "psnr" and ckpt_source.psnr_at(s.k) >= 30.0 - 0.05
    assert start_target(ckpt_source, ns()) is None and Session(ckpt_source).k == ckpt_source.default_k()
