"""A generated "hard capture" (lens distortion, few views, no point cloud, photo noise), trained and built with
the CLI as a user would: the built RD table on the held-back views rises from G_1 to G_L, or `rave build`
says in one warning line that it does not, naming exactly the levels where it falls."""

from __future__ import annotations

import warnings

from rave_viewer.cli import main
from rave_viewer.rave.checkpoint import load_checkpoint
from rave_viewer.rave.selection import FALL_TOLERANCE_DB, level_psnrs


def test_hard_capture_build_rises_or_says_where_it_falls(tmp_path, capsys):
    data, ply, ckpt = tmp_path / "hard", tmp_path / "hard.ply", tmp_path / "hard.ckpt"
    assert main(["generate", str(data), "--capture", "hard", "--size", "32", "--views", "24", "--seed", "3"]) == 0
    assert main(["train", str(data), "-o", str(ply), "--steps", "300", "--backend", "cpu", "--quiet"]) == 0
    cfg = tmp_path / "b.yaml"
    cfg.write_text("num_levels: 4\nrd_points: 64\nchunk_size: 256\n")
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["build", str(ply), "--data", str(data), "-o", str(ckpt), "--config", str(cfg), "--steps",
                     "50", "--backend", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "undistorted 24 photos" in err  # the lens was handled, said once
    ck = load_checkpoint(ckpt)
    p = level_psnrs(ck.level_sizes, ck.rd)
    falls = [i + 1 for i in range(len(p) - 1) if p[i + 1] < p[i] - FALL_TOLERANCE_DB]
    warnings_ = [str(w.message) for w in caught if "RD curve on the held-back views falls" in str(w.message)]
    if not falls:
        assert warnings_ == []
    else:
        assert len(warnings_) == 1 and "\n" not in warnings_[0] and "Pareto front: levels 1" in warnings_[0]
        for level in falls:
            assert f"G_{level}->G_{level + 1} {p[level - 1]:.2f}->{p[level]:.2f} dB" in warnings_[0]
