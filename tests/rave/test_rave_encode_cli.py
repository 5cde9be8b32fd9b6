"""`rave encode scene.ckpt --rate/--count/--psnr` writes the selected prefix; the .rave decodes to it."""

from __future__ import annotations

from rave_viewer.cli import main
from rave_viewer.codec import decode
from rave_viewer.rave.checkpoint import load_checkpoint, save_checkpoint


def test_encode_checkpoint_by_rate_count_and_psnr(ckpt_context, tmp_path, capsys):
    path = tmp_path / "scene.ckpt"
    save_checkpoint(ckpt_context, path)
    ck = load_checkpoint(path)
    r0, r1 = ck.rate_range()
    sizes = []
    for target in (r0, (2 * r0 + r1) // 3, (r0 + 2 * r1) // 3, r1):
        out = tmp_path / f"r{target}.rave"
        assert main(["encode", str(path), "--rate", str(target), "-o", str(out), "--quiet"]) == 0
        k = ck.select(rate=target)
        size = out.stat().st_size
        assert size == ck.prefix_bytes(k)
        assert len(decode(out).gaussians) == k
        sizes.append(size)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]

    out = tmp_path / "count.rave"
    assert main(["encode", str(path), "--count", "100", "-o", str(out), "--quiet"]) == 0
    assert len(decode(out).gaussians) == 100

    p_mid = (ck.rd["psnr"][0] + ck.rd["psnr"][-1]) / 2
    out = tmp_path / "psnr.rave"
    assert main(["encode", str(path), "--psnr", f"{p_mid:.3f}", "-o", str(out), "--quiet"]) == 0
    k = len(decode(out).gaussians)
    assert k == ck.select(psnr=round(p_mid, 3)) and 0 < k <= len(ck)

    capsys.readouterr()
    assert main(["encode", str(path), "--rate", str(r1 * 10), "-o", str(tmp_path / "x.rave")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "valid range" in err and "\n" not in err
    assert not (tmp_path / "x.rave").exists()
