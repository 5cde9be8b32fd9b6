"""Report writing and plotting on synthetic RD curves (no rendering): files, CSV/JSON round trip, smoothness."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
from PIL import Image

from rave_viewer.eval import RDCurve, curve_table_text, load_report, smoothness, write_report
from rave_viewer.eval.plot import Series, line_plot, log_ticks, nice_ticks


def _curve(label="a", n=16, shift=0.0, continuous=True):
    b = [int(1000 * 1.2**i) for i in range(n)]
    return RDCurve(label, [10 * (i + 1) for i in range(n)], b, [20 + shift + 2 * math.log10(x / 1000) for x in b],
                   [0.5 + 0.01 * i for i in range(n)], continuous)


def test_write_report_files_and_round_trip(tmp_path):
    curves = [_curve("rave"), _curve("fixed", n=5, shift=0.3, continuous=False)]
    files = write_report(tmp_path / "rep", curves, title="t", notes=["LPIPS not computed"])
    assert {"csv", "json", "psnr_png", "ssim_png"} <= set(files)
    for p in files.values():
        assert p.exists() and p.stat().st_size > 0
    rows = list(csv.DictReader(open(files["csv"])))
    assert len(rows) == 21 and rows[0]["method"] == "rave" and int(rows[0]["bytes"]) == 1000
    back = load_report(files["json"])
    assert [c.label for c in back] == ["rave", "fixed"]
    assert back[0].bytes == curves[0].bytes and back[1].continuous is False
    assert abs(back[0].psnr[3] - curves[0].psnr[3]) < 1e-12
    d = json.loads(files["json"].read_text())
    assert d["notes"] == ["LPIPS not computed"] and d["smoothness"]["rave"]["dips"] == 0
    im = Image.open(files["psnr_png"])
    assert im.size == (960, 640)
    # something other than white/grey was drawn (the curves)
    a = np.asarray(im.convert("RGB")).reshape(-1, 3)
    colours = {tuple(px) for px in a[(a[:, 0] != a[:, 1]) | (a[:, 1] != a[:, 2])]}
    assert len(colours) > 10


def test_plot_handles_degenerate_input(tmp_path):
    line_plot(tmp_path / "empty.png", [], logx=True)
    line_plot(tmp_path / "one.png", [Series("p", [5.0], [1.0])], logx=True)
    line_plot(tmp_path / "nan.png", [Series("p", [1.0, 2.0, 3.0], [1.0, float("nan"), 2.0], dashed=True)])
    for n in ("empty", "one", "nan"):
        assert Image.open(tmp_path / f"{n}.png").size == (960, 640)


def test_ticks():
    assert nice_ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert log_ticks(900, 120000) == [1000, 2000, 5000, 10000, 20000, 50000, 100000]
    t = log_ticks(1200, 1900)  # less than a decade: still several ticks, all inside
    assert len(t) >= 3 and all(1200 <= v <= 1900 for v in t)


def test_smoothness_counts_dips():
    c = _curve()
    assert smoothness(c) == {**smoothness(c), "dips": 0, "max_dip_db": 0.0}
    assert abs(smoothness(c)["excess_variation_db"]) < 1e-9
    c.psnr[5] -= 0.5  # one dip of ~0.5 dB followed by a recovery
    s = smoothness(c)
    assert s["dips"] == 1 and 0.3 < s["max_dip_db"] < 0.5
    step = 2 * math.log10(1.2)  # PSNR rise between neighbours
    assert abs(s["excess_variation_db"] - 2 * (0.5 - step)) < 1e-2  # twice the descent
    assert abs(s["max_rate_gap_pct"] - 20.0) < 1.0


def test_curve_table_text():
    t = curve_table_text(_curve(n=3))
    assert "PSNR (dB)" in t and len(t.splitlines()) == 5


def test_anchor_sag():
    from rave_viewer.eval import anchor_sag

    # a straight line in log-rate: every point on its chord
    b = [1000, 2000, 4000, 8000, 16000]
    line = RDCurve("l", [1, 2, 3, 4, 5], b, [20.0, 21.0, 22.0, 23.0, 24.0], [0.5] * 5)
    s = anchor_sag(line, [1000, 4000, 16000])
    assert s["points"] == 2 and abs(s["worst_db"]) < 1e-12 and abs(s["mean_db"]) < 1e-12
    sag = RDCurve("s", [1, 2, 3, 4, 5], b, [20.0, 20.5, 22.0, 23.5, 24.0], [0.5] * 5)
    s = anchor_sag(sag, [1000, 4000, 16000])
    assert abs(s["worst_db"] + 0.5) < 1e-12 and abs(s["mean_db"]) < 1e-12  # -0.5 then +0.5


def test_load_report_refuses_bad_files_in_one_line(tmp_path):
    import pytest

    from rave_viewer.errors import RaveError

    good = json.loads(write_report(tmp_path / "rep", [_curve("rave")], title="t")["json"].read_text())
    short = json.loads(json.dumps(good))
    short["curves"][0]["psnr"] = short["curves"][0]["psnr"][:-1]
    cases = {
        "nan.json": (json.dumps(good).replace(str(good["curves"][0]["psnr"][0]), "NaN", 1), "NaN is not a finite"),
        "deep.json": ("[" * 5000 + "]" * 5000, "nested"),
        "text.json": ("not json", "not JSON"),
        "nocurves.json": ("{}", "missing key 'curves'"),
        "wrongtype.json": ('{"curves": [5]}', "is not an RD report"),
        "short.json": (json.dumps(short), "columns of different lengths"),
        "binary.json": (b"\xff\xfe\x00", "not UTF-8"),
    }
    for name, (text, needle) in cases.items():
        p = tmp_path / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(RaveError) as ei:
            load_report(p)
        msg = str(ei.value)
        assert msg.startswith(f"{p}: ") and "\n" not in msg and needle in msg, (name, msg)
    with pytest.raises(RaveError, match="cannot read file"):
        load_report(tmp_path / "missing.json")
