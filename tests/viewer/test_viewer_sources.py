"""Opening files for the viewer: what each kind offers, exact sizes, and one-line errors for bad files."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from rave_viewer.codec import decode
from rave_viewer.errors import RaveError
from rave_viewer.scene.ply import read_ply
from rave_viewer.viewer.frames import FrameRenderer
from rave_viewer.viewer.sources import find_demo_scene, open_source


def test_ckpt_offers_every_mode_with_exact_sizes(ckpt_source):
    src = ckpt_source
    ck = src.checkpoint
    assert src.kind == "ckpt" and src.modes == ("rate", "count", "psnr") and src.has_rate_control
    assert src.bounds("rate") == (ck.level_rates[0], ck.level_rates[-1])
    assert src.bounds("count") == (ck.level_sizes[0], len(ck))
    # rate targets: Eq. 3 selection, clamped at both ends, monotone in the target
    lo, hi = src.bounds("rate")
    ks = [src.select("rate", r) for r in np.linspace(lo - 500, hi + 500, 41)]
    assert ck.level_sizes[0] <= ks[0] < ck.level_sizes[0] + ck.chunk_size and ks[-1] == len(ck)
    assert all(a <= b for a, b in zip(ks, ks[1:]))
    # exact bytes are those of the encoded stream
    for k in (ck.level_sizes[0], 333, len(ck)):
        assert src.bytes_of(k) == len(src.encode_prefix(k)) == ck.encoder().size_of_prefix(k)
    # count: exact; psnr: the smallest k reaching the target per the RD table
    assert src.select("count", 777) == 777
    p_lo, p_hi = src.bounds("psnr")
    k = src.select("psnr", (p_lo + p_hi) / 2)
    assert src.psnr_at(k) >= (p_lo + p_hi) / 2 - 0.05
    assert src.level_of(len(ck)) == len(ck.level_sizes)
    assert src.test_cameras is not None and len(src.test_cameras) == 3


def test_rave_stream_offers_its_chunk_boundaries(scene_files, ckpt_source):
    src = open_source(scene_files["rave"])
    assert src.kind == "rave" and src.modes == ("rate", "count") and src.test_cameras is None
    data = scene_files["rave"].read_bytes()
    chunk = ckpt_source.checkpoint.chunk_size
    n = ckpt_source.n
    assert src.stops == list(range(chunk, n, chunk)) + [n]
    assert src.stop_bytes[-1] == len(data)
    enc = ckpt_source.checkpoint.encoder()
    assert src.stop_bytes == [enc.size_of_prefix(k) for k in src.stops]
    # selection = the largest prefix whose exact size fits the target
    assert src.select("rate", src.stop_bytes[3] + 1) == src.stops[3]
    assert src.select("rate", 1) == src.stops[0]
    # exporting a prefix re-creates the stream's own bytes
    assert src.encode_prefix(src.stops[2]) == enc.encode(src.stops[2])
    assert src.encode_prefix(n) == data
    assert src.bytes_of(src.stops[2] + 1) is None and src.level_of(5) is None and src.psnr_at(5) is None


def test_truncated_rave_opens_its_complete_chunks_with_a_note(tmp_path, scene_files):
    data = scene_files["rave"].read_bytes()
    cut = tmp_path / "cut.rave"
    src_full = open_source(scene_files["rave"])
    c = src_full.stream_info.chunks[4]
    cut.write_bytes(data[: c.offset + c.length + 10])  # 5 complete chunks and a bit of the 6th
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning is captured into the note, not raised
        src = open_source(cut)
    assert src.n == src_full.stops[4] and src.stops == src_full.stops[:5]
    assert "truncated" in src.note
    assert src.encode_prefix(src.stops[-1]) == src_full.encode_prefix(src.stops[-1])  # exports what it holds


def test_ply_opens_without_rave_controls(scene_files, ckpt_source):
    src = open_source(scene_files["ply"])
    assert src.kind == "ply" and src.modes == () and not src.has_rate_control
    assert "no RAVE ranking" in src.note
    assert src.bytes_of(src.n) is None and src.rd is None
    assert src.gaussians.equal(read_ply(scene_files["ply"]))


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda d, f: d / "missing.ckpt", "no such file"),
        (lambda d, f: d, "is a directory"),
        (lambda d, f: _write(d / "t.ckpt", f["ckpt"].read_bytes()[:300]), "checkpoint"),
        (lambda d, f: _write(d / "t.rave", f["rave"].read_bytes()[:20]), "truncated"),
        (lambda d, f: _write(d / "t.ply", f["ply"].read_bytes()[:400]), "PLY"),
        (lambda d, f: _write(d / "t.ckpt", b"hello world, not a checkpoint"), "not a RAVE checkpoint"),
        (lambda d, f: _write(d / "notes.txt", b"just text"), "unknown format"),
        (lambda d, f: _write(d / "t.rave", f["ply"].read_bytes()), "not a .rave file"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, scene_files, make, expect):
    path = make(tmp_path, scene_files)
    with pytest.raises(RaveError) as e:
        open_source(path)
    msg = str(e.value)
    assert "\n" not in msg and expect in msg and str(path) in msg


def _write(p, data):
    p.write_bytes(data)
    return p


def test_find_demo_scene_prefers_ckpt_then_ply(tmp_path):
    with pytest.raises(RaveError, match="no demo scene"):
        find_demo_scene(tmp_path)
    d = tmp_path / "trained_scenes"
    d.mkdir()
    (d / "b.ply").write_bytes(b"ply")
    path, note = find_demo_scene(tmp_path)
    assert path.name == "b.ply" and "no .ckpt" in note
    (d / "a.ckpt").write_bytes(b"x")
    assert find_demo_scene(tmp_path) == (d / "a.ckpt", "")


def test_decoded_rave_matches_ckpt_prefix_as_a_set(scene_files, ckpt_source):
    """The .rave source renders the same Gaussians as the checkpoint's prefix (stream order within chunks)."""
    src = open_source(scene_files["rave"])
    k = src.stops[1]
    dec = decode(ckpt_source.encode_prefix(k))
    assert torch.equal(dec.gaussians.means, src.gaussians.prefix(k).means)


def test_live_test_view_psnr_matches_the_stored_rd_table(ckpt_source):
    """The viewer renders what a receiver decodes: its exact per-view PSNR, averaged, is the RD table's mean."""
    frames = FrameRenderer(ckpt_source, backend="cpu")
    rd = ckpt_source.rd
    views = range(len(ckpt_source.test_cameras))
    for i in (0, len(rd["count"]) // 2, len(rd["count"]) - 1):
        k = rd["count"][i]
        live = np.mean([frames.test_psnr(k, v) for v in views])
        assert live == pytest.approx(rd["psnr"][i], abs=1e-3)
    # and the rendered Gaussians are the decoded stream's (the same set), not the float model's
    dec = decode(ckpt_source.encode_prefix(ckpt_source.n)).gaussians
    assert np.allclose(_sorted_means(dec), _sorted_means(ckpt_source.gaussians), atol=1e-6)
    assert not np.allclose(_sorted_means(ckpt_source.checkpoint.gaussians), _sorted_means(dec), atol=1e-6)


def _sorted_means(g) -> np.ndarray:
    m = g.means.detach().double().numpy()
    return m[np.lexsort(m.T[::-1])]


def _with_rd(source, psnr):
    """A copy of ``source`` whose RD table has these PSNRs (same counts and bytes)."""
    import copy

    ck = copy.copy(source.checkpoint)
    ck.rd = {**source.checkpoint.rd, "psnr": list(psnr)}
    return dataclasses.replace(source, checkpoint=ck, _cache={})


def test_default_start_is_the_knee_not_the_full_model(ckpt_source):
    rd = ckpt_source.rd
    counts = np.asarray(rd["count"], float)
    k = ckpt_source.default_k()
    best = max(rd["psnr"])
    assert ckpt_source.min_count < k < ckpt_source.n
    assert ckpt_source.psnr_at(k) >= best - 0.5 - 1e-6  # looks good: within 0.5 dB of the best point
    assert ckpt_source.bytes_of(k) < 0.8 * ckpt_source.bytes_of(ckpt_source.n)  # and is much smaller
    # a curve that rises, then falls (fine-tuning hurt the top levels): never start past its best point
    peak = len(counts) // 2
    bump = [30.0 - abs(i - peak) * 0.3 for i in range(len(counts))]
    src = _with_rd(ckpt_source, bump)
    assert src.default_k() <= counts[peak] and src.psnr_at(src.default_k()) >= 30.0 - 0.5 - 1e-6
    falling = [40.0 - 0.1 * i for i in range(len(counts))]  # best at the smallest point
    first = int(counts[counts >= ckpt_source.min_count][0])  # the smallest selectable RD point
    assert _with_rd(ckpt_source, falling).default_k() == first


def test_default_start_without_rd_is_the_full_model_when_small(scene_files):
    src = open_source(scene_files["rave"])
    assert src.default_k() == src.n  # 1,500 Gaussians: far below START_MAX_GAUSSIANS


def test_ply_repairs_are_shown_in_the_panel_note(tmp_path, scene_files):
    """A PLY from another tool with bad values: the reader's one warning line also reaches the viewer's note."""
    from plyfile import PlyData, PlyElement

    v = PlyData.read(str(scene_files["ply"]))["vertex"].data.copy()
    v["x"][:3] = np.nan
    p = tmp_path / "bad.ply"
    PlyData([PlyElement.describe(v, "vertex")], byte_order="<").write(str(p))
    with pytest.warns(UserWarning, match="3 of 1,500 Gaussians dropped"):
        src = open_source(p)
    assert src.n == 1497 and "3 of 1,500 Gaussians dropped" in src.note


def test_a_self_distilled_checkpoint_says_psnr_vs_the_full_model(ckpt_source):
    import copy

    from rave_viewer.viewer.session import Session, readout_rows

    assert ckpt_source.targets == "photos"
    ck = copy.copy(ckpt_source.checkpoint)
    ck.meta = {**ckpt_source.checkpoint.meta, "targets": "self"}
    src = dataclasses.replace(ckpt_source, checkpoint=ck, _cache={})
    assert src.targets == "self"
    labels = [a for a, _ in readout_rows(Session(src).selection(), 30.0, "front", targets=src.targets)]
    assert "PSNR vs the full model, test mean" in labels and not any("photos" in a for a in labels)
