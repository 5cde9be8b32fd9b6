"""`rave eval`: report files, PSNR equal to a direct render of the same prefix, --compare BD output, bad input."""

from __future__ import annotations

import csv
import json
import pickle

import pytest
import torch

from rave_viewer import metrics
from rave_viewer.cli import main
from rave_viewer.rave import load_checkpoint
from rave_viewer.render import render


def _rows(path):
    return list(csv.DictReader(open(path)))


def test_eval_writes_report_matching_direct_render(tiny, tmp_path, capsys):
    data, ckpt_path, _ = tiny
    out = tmp_path / "report"
    assert main(["eval", str(ckpt_path), "-o", str(out), "--rates", "8", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "LPIPS not computed" in printed
    for name in ("rd.csv", "rd.json", "rd_psnr.png", "rd_ssim.png"):
        assert (out / name).stat().st_size > 0
    rows = _rows(out / "rd.csv")
    counts = [int(r["count"]) for r in rows]
    sizes = [int(r["bytes"]) for r in rows]
    assert 5 <= len(rows) <= 10 and counts[0] == 40 and counts[-1] == 300
    assert all(b > a for a, b in zip(counts, counts[1:])) and all(b > a for a, b in zip(sizes, sizes[1:]))
    doc = json.loads((out / "rd.json").read_text())
    assert doc["curves"][0]["count"] == counts and any("LPIPS" in n for n in doc["notes"])

    ck = load_checkpoint(ckpt_path)
    cams = ck.test_cameras
    dec = ck.decoded_gaussians()
    for r in (rows[0], rows[len(rows) // 2], rows[-1]):  # direct render + PSNR of the same decoded prefix
        assert r["unit"] == "Gaussians"
        k = int(r["count"])
        assert int(r["bytes"]) == ck.prefix_bytes(k) == len(ck.encoder().encode(k))
        img, _, _ = render(dec.prefix(k), cams.viewmats, cams.Ks, cams.width, cams.height, backend="cpu")
        img = img.clamp(0, 1)
        assert float(r["psnr_db"]) == pytest.approx(metrics.mean(metrics.psnr(img, cams.images)), abs=1e-5)
        assert float(r["ssim"]) == pytest.approx(metrics.mean(metrics.ssim(img, cams.images)), abs=1e-5)
    # the dense table stored by the build agrees at the shared points
    for k, p in zip(counts, (float(r["psnr_db"]) for r in rows)):
        if k in ck.rd["count"]:
            assert p == pytest.approx(ck.rd["psnr"][ck.rd["count"].index(k)], abs=1e-5)


def test_eval_with_dataset_and_compare_prints_bd(tiny, tmp_path, capsys):
    data, ckpt_path, rev_path = tiny
    out = tmp_path / "cmp"
    rc = main(["eval", str(ckpt_path), "--data", str(data), "-o", str(out), "--rates", "6", "--quiet",
               "--compare", str(rev_path), str(ckpt_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "BD-PSNR" in printed and "BD-rate" in printed
    bd = _rows(out / "bd.csv")
    assert [(r["reference"], r["test"]) for r in bd] == [("tiny", "reversed"), ("tiny", "tiny (2)"),
                                                           ("reversed", "tiny (2)")]
    same = bd[1]  # a checkpoint against itself: exactly zero
    assert float(same["bd_psnr_db"]) == pytest.approx(0.0, abs=1e-9)
    assert float(same["bd_rate_pct"]) == pytest.approx(0.0, abs=1e-6)
    assert float(bd[0]["bd_psnr_db"]) == pytest.approx(-float(bd[2]["bd_psnr_db"]), abs=1e-9)
    labels = {r["method"] for r in _rows(out / "rd.csv")}
    assert labels == {"tiny", "reversed", "tiny (2)"}
    # --data gives the same test views as those stored in the checkpoint (32 px: not downscaled)
    a = [r for r in _rows(out / "rd.csv") if r["method"] == "tiny"]
    assert a[0]["psnr_db"][:8] == f"{load_checkpoint(ckpt_path).rd['psnr'][0]:.6f}"[:8]


@pytest.mark.parametrize("case", ["missing", "text", "pickle", "rates0", "folder"])
def test_bad_input_is_one_line_error(tiny, tmp_path, capsys, case):
    _, ckpt_path, _ = tiny
    target, extra = str(ckpt_path), []
    if case == "missing":
        target = str(tmp_path / "nope.ckpt")
    elif case == "text":
        (tmp_path / "t.ckpt").write_text("hello, not a checkpoint\n" * 10)
        target = str(tmp_path / "t.ckpt")
    elif case == "pickle":
        (tmp_path / "p.ckpt").write_bytes(pickle.dumps({"a": torch.zeros(3)}))
        target = str(tmp_path / "p.ckpt")
    elif case == "rates0":
        extra = ["--rates", "0"]
    elif case == "folder":
        target = str(tmp_path)
    rc = main(["eval", target, "-o", str(tmp_path / "r"), "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error:")
    assert "Traceback" not in err
    if case in ("missing", "text", "pickle", "folder"):
        assert target in err
    else:
        assert "--rates" in err
    assert not (tmp_path / "r" / "rd.csv").exists()


def test_separate_models_equal_prefixes(tiny):
    from rave_viewer.eval import evaluate_models, evaluate_prefixes

    _, ckpt_path, _ = tiny
    ck = load_checkpoint(ckpt_path)
    dec = ck.decoded_gaussians()
    a = evaluate_prefixes(dec, [80, 40], ck.prefix_bytes, ck.test_cameras, label="prefixes", progress=False)
    b = evaluate_models([(dec.prefix(80), ck.prefix_bytes(80)), (dec.prefix(40), ck.prefix_bytes(40))],
                        ck.test_cameras, label="models", progress=False)
    assert a.count == b.count == [40, 80] and a.bytes == b.bytes
    assert a.psnr == pytest.approx(b.psnr, abs=1e-9) and a.continuous and not b.continuous
