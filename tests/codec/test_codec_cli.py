"""`rave encode` / `rave decode` on PLY files through the CLI entry point (main(argv))."""

from __future__ import annotations

import pytest
import torch

from rave_viewer.cli import main
from rave_viewer.codec import ProgressiveEncoder, QuantConfig, decode, dequantize, quantize
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
    enc = ProgressiveEncoder(read_ply(ply), codec="zstd", chunk_size=64)
    assert out.read_bytes() == enc.encode()
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
    assert res.info.cfg == QuantConfig(pos_bits=12, shN_bits=(6, 5, 4)).fit(read_ply(ply))  # SH ranges fitted
    enc = ProgressiveEncoder(read_ply(ply), QuantConfig(pos_bits=12, shN_bits=(6, 5, 4)), chunk_size=30)
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
