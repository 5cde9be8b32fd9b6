"""`rave build` and `rave info` end to end on the tiny scene, and their one-line errors."""

from __future__ import annotations

import json
import pickle

import pytest

from rave_viewer.cli import main
from rave_viewer.rave.checkpoint import encode_checkpoint, load_checkpoint


@pytest.fixture(scope="module")
def built(tiny_dataset, tiny_model, tmp_path_factory):
    from rave_viewer.scene.ply import write_ply

    d = tmp_path_factory.mktemp("cli")
    ply = d / "scene.ply"
    write_ply(tiny_model, ply)
    cfg = d / "rave.yaml"
    cfg.write_text("num_levels: 4\ncoarsest_fraction: 0.2\nrd_points: 64\nchunk_size: 64\n")
    out = d / "scene.ckpt"
    rc = main(["build", str(ply), "--data", str(tiny_dataset.root), "-o", str(out), "--config", str(cfg),
               "--steps", "20", "--ranking", "global", "--quiet"])
    assert rc == 0
    return d, ply, out


def test_build_writes_a_loadable_checkpoint(built):
    _, _, out = built
    ck = load_checkpoint(out)
    assert len(ck.level_sizes) == 4 and ck.meta["ranking"] == "global" and ck.meta["config"]["steps"] == 20
    assert ck.meta["sources"]["ply"].endswith("scene.ply")
    assert len(ck.rd["count"]) >= 64
    assert ck.test_cameras.images is not None and len(ck.test_cameras) == 3


def test_info(built, capsys):
    _, _, out = built
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "levels (MB = 10^6 bytes)" in text and "ranking: global" in text and "valid target rates" in text
    ck = load_checkpoint(out)
    assert f"{ck.level_rates[0]:,}" in text
    assert main(["info", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert [lv["count"] for lv in s["levels"]] == ck.level_sizes
    assert s["rate_range"] == [ck.level_rates[0], ck.level_rates[-1]]


def test_encode_from_checkpoint_by_rate(built):
    d, _, out = built
    ck = load_checkpoint(out)
    r0, r1 = ck.rate_range()
    target = (r0 + r1) // 2
    info = encode_checkpoint(out, d / "mid.rave", rate=str(target))
    assert (d / "mid.rave").stat().st_size == info["bytes"]
    assert info["bytes"] <= target + ck.chunk_size * 100 and abs(info["bytes"] - target) <= ck.chunk_size * 100


def test_errors_are_one_line(built, tmp_path, capsys):
    d, ply, out = built
    assert main(["build", str(tmp_path / "missing.ply"), "--data", str(d), "-o", str(tmp_path / "x.ckpt"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"a": 1}))
    assert main(["info", str(evil)]) == 2
    assert "is a pickle, refusing to load" in capsys.readouterr().err
    assert main(["build", str(ply), "--data", str(d), "-o", str(tmp_path / "x.ckpt"), "--anchors", "1"]) == 2
    assert "--anchors" in capsys.readouterr().err
    assert not (tmp_path / "x.ckpt").exists()
