"""`rave encode` / `rave decode` on PLY files through the CLI entry point (main(argv))."""

from __future__ import annotations

import pytest
import torch

from rave_viewer.cli import main
from rave_viewer.codec import ProgressiveEncoder, QuantConfig, decode, dequantize, quantize
from rave_viewer.codec.container import HEADER_SIZE
from rave_viewer.codec.presets import preset
from rave_viewer.scene.gaussians import Gaussians
from rave_viewer.scene.ply import read_ply, write_ply


def _sorted_rows(g: Gaussians) -> torch.Tensor:
    rows = torch.cat([t.reshape(len(g), -1) for _, t in g.items()], dim=1)
    for col in reversed(range(rows.shape[1])):  # lexicographic sort, stable per column
        rows = rows[torch.sort(rows[:, col], stable=True).indices]
    return rows


def test_cli_encode_decode_round_trip(tmp_path, capsys):
    g = Gaussians.random(150, 3, seed=8)
    ply = tmp_path / "in.ply"
    write_ply(g, ply)
    out = tmp_path / "s.rave"
    assert main(["encode", str(ply), "-o", str(out), "--chunk-size", "64", "--codec", "zstd"]) == 0
    assert "150 Gaussians" in capsys.readouterr().err
    # the default preset, in spatial order (the default for a PLY)
    enc = ProgressiveEncoder(read_ply(ply), preset("medium"), codec="zstd", chunk_size=64, spatial_order=True)
    assert out.read_bytes() == enc.encode()
    assert decode(out).info.format_version == 3 and enc.cfg.sh_codebook is not None and enc.cfg.faint_bits == 2
    # --order file keeps the PLY's order (what the encoder does without spatial_order)
    given = tmp_path / "given.rave"
    assert main(["encode", str(ply), "-o", str(given), "--chunk-size", "64", "--codec", "zstd", "--order", "file"]) == 0
    assert given.read_bytes() == ProgressiveEncoder(read_ply(ply), preset("medium"), codec="zstd", chunk_size=64).encode()
    back = tmp_path / "back.ply"
    assert main(["decode", str(out), "-o", str(back)]) == 0
    dec = read_ply(back)
    assert dec.equal(enc.quantized_prefix())
    # as a set, the decoded PLY is the quantized input scene
    assert torch.equal(_sorted_rows(dec), _sorted_rows(dequantize(quantize(g, enc.cfg, enc.bounds))))


def test_cli_bit_options_and_truncated_input(tmp_path, capsys):
    g = Gaussians.random(100, 1, seed=2)
    ply = tmp_path / "in.ply"
    write_ply(g, ply)
    out = tmp_path / "s.rave"
    args = ["encode", str(ply), "-o", str(out), "--chunk-size", "30", "--pos-bits", "12", "--shN-bits", "6", "5", "4"]
    assert main(args) == 0
    res = decode(out)
    cfg = preset("medium", pos_bits=12, shN_bits=(6, 5, 4))  # the options override the default preset
    assert res.info.cfg == cfg.fit(read_ply(ply))  # ranges and codebook fitted
    enc = ProgressiveEncoder(read_ply(ply), cfg, chunk_size=30, spatial_order=True)
    cut = tmp_path / "cut.rave"
    cut.write_bytes(out.read_bytes()[: enc.overhead() + sum(enc.chunk_sizes()[:2]) + 3])  # 2 chunks + 3 bytes
    capsys.readouterr()
    back = tmp_path / "back.ply"
    assert main(["decode", str(cut), "-o", str(back)]) == 0
    assert "recovered 60 of 100" in capsys.readouterr().err
    assert read_ply(back).equal(enc.quantized_prefix(60))
    assert main(["decode", str(cut), "-o", str(tmp_path / "strict.ply"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "cut.rave" in err and err.count("\n") == 1
    assert not (tmp_path / "strict.ply").exists()


@pytest.mark.parametrize(
    "argv_tail,needle",
    [
        (["encode", "{d}/missing.ply", "-o", "{d}/x.rave"], "missing.ply"),
        (["encode", "{d}/in.ply", "-o", "{d}/x.rave", "--chunk-size", "0"], "argument --chunk-size"),
        (["encode", "{d}/in.ply", "-o", "{d}/x.rave", "--pos-bits", "30"], "argument --pos-bits"),
        (["decode", "{d}/in.ply", "-o", "{d}/x.ply"], "not a .rave file"),
        (["decode", "{d}/missing.rave", "-o", "{d}/x.ply"], "missing.rave"),
        (["decode", "{d}/in.ply", "-o", "{d}/in.ply"], "same file as the input"),  # never replaces its input
        (["decode", "{d}/in.ply", "-o", "{d}/x.ply", "--max-ratio", "-1"], "--max-ratio"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv_tail, needle):
    write_ply(Gaussians.random(5, 0), tmp_path / "in.ply")
    assert main([a.format(d=tmp_path) for a in argv_tail]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1
    assert not (tmp_path / "x.rave").exists() and not (tmp_path / "x.ply").exists()


def test_cli_quality_presets_order_size_and_fidelity(tmp_path, capsys):
    """--quality low < medium < high < very-high < lossless-ish in bytes, and in fidelity (attribute error of the decode)."""
    from rave_viewer.codec.presets import PRESETS

    g = Gaussians.random(3000, 3, seed=4)
    ply = tmp_path / "in.ply"
    write_ply(g, ply)
    sizes, errors = [], []
    for q in PRESETS:
        out = tmp_path / f"{q}.rave"
        assert main(["encode", str(ply), "-o", str(out), "--quality", q, "--quiet"]) == 0
        res = decode(out)
        order = ProgressiveEncoder(g, preset(q), progress=False, spatial_order=True).stream_order()
        ref = g.subset(order)
        sizes.append(out.stat().st_size)
        errors.append(float((res.gaussians.means - ref.means).abs().mean() + (res.gaussians.sh0 - ref.sh0).abs().mean()))
        klt = PRESETS[q][0].get("shN_step", 0) > 0
        assert res.info.format_version == (4 if klt else 3) and res.info.cfg.faint_bits == PRESETS[q][0]["faint_bits"]
        assert (res.info.cfg.sh_codebook is not None) == (PRESETS[q][0].get("sh_vq", 0) > 0)
        assert (res.info.cfg.sh_basis is not None) == klt
    assert sizes == sorted(sizes) and errors == sorted(errors, reverse=True)


def test_cli_writes_and_still_reads_format_version_1(tmp_path, capsys):
    g = Gaussians.random(120, 2, seed=6)
    ply = tmp_path / "in.ply"
    write_ply(g, ply)
    out = tmp_path / "v1.rave"
    assert main(["encode", str(ply), "-o", str(out), "--format-version", "1", "--quality", "high"]) == 0
    assert "format v1" in capsys.readouterr().err
    res = decode(out)
    assert res.info.format_version == 1 and res.info.cfg.sh_vq == 0 and res.info.header_size == HEADER_SIZE
    # a v1 stream written by the old default settings decodes through the CLI to the same Gaussians
    enc = ProgressiveEncoder(g, QuantConfig(), chunk_size=50, format_version=1)
    (tmp_path / "old.rave").write_bytes(enc.encode())
    assert main(["decode", str(tmp_path / "old.rave"), "-o", str(tmp_path / "old.ply")]) == 0
    assert read_ply(tmp_path / "old.ply").equal(enc.quantized_prefix())
    assert main(["info", str(tmp_path / "old.rave")]) == 0
    assert "format version 1" in capsys.readouterr().out
    assert main(["info", str(out.with_name("v2.rave"))]) == 2  # missing file: one error line
    assert main(["encode", str(ply), "-o", str(tmp_path / "v2.rave")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "v2.rave")]) == 0
    text = capsys.readouterr().out
    assert "format version 3" in text and "SH codebook" in text
    assert main(["encode", str(ply), "-o", str(tmp_path / "x.rave"), "--format-version", "1",
                 "--sh-codebook", "64"]) == 2
    assert main(["encode", str(ply), "-o", str(tmp_path / "x.rave"), "--format-version", "2",
                 "--faint-bits", "2"]) == 2  # faint classes need version 3
    assert main(["encode", str(ply), "-o", str(tmp_path / "v2b.rave"), "--format-version", "2"]) == 0
    assert decode(tmp_path / "v2b.rave").info.format_version == 2


def test_decode_cli_does_not_load_the_renderer(tmp_path):
    """`rave decode` imports neither the renderer (and its C++ extension) nor scikit-learn."""
    import subprocess
    import sys

    g = Gaussians.random(50, 3, seed=1)
    write_ply(g, tmp_path / "in.ply")
    assert main(["encode", str(tmp_path / "in.ply"), "-o", str(tmp_path / "s.rave"), "--quiet"]) == 0
    code = ("import sys; from rave_viewer.cli import main; "
            f"rc = main(['decode', {str(tmp_path / 's.rave')!r}, '-o', {str(tmp_path / 'o.ply')!r}, '--quiet']); "
            "bad = [m for m in sys.modules if m.startswith(('rave_viewer.render', 'sklearn', 'gsplat', 'viser'))]; "
            "print(rc, bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0 []"
