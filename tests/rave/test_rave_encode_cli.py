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
        k = ck.select(rate=target, cap=True)
        size = out.stat().st_size
        assert size == ck.prefix_bytes(k) <= target  # a cap: never above the target
        assert k == len(ck) or ck.prefix_bytes(k + 1) > target
        assert len(decode(out).gaussians) == k
        sizes.append(size)
        out = tmp_path / f"n{target}.rave"  # ~R: the nearest point (Eq. 3 between exact chunk sizes), as before
        assert main(["encode", str(path), "--rate", f"~{target}", "-o", str(out), "--quiet"]) == 0
        assert len(decode(out).gaussians) == ck.select(rate=target)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert sizes[-1] == r1  # the whole model

    out = tmp_path / "count.rave"
    assert main(["encode", str(path), "--count", "100", "-o", str(out), "--quiet"]) == 0
    assert len(decode(out).gaussians) == 100

    p_mid = (ck.rd["psnr"][0] + ck.rd["psnr"][-1]) / 2
    out = tmp_path / "psnr.rave"
    assert main(["encode", str(path), "--psnr", f"{p_mid:.3f}", "-o", str(out), "--quiet"]) == 0
    k = len(decode(out).gaussians)
    assert k == ck.select(psnr=round(p_mid, 3)) and 0 < k <= len(ck)

    capsys.readouterr()
    # a cap above the whole model: the whole model fits
    out = tmp_path / "all.rave"
    assert main(["encode", str(path), "--rate", str(r1 * 10), "-o", str(out)]) == 0
    assert out.stat().st_size == r1 and len(decode(out).gaussians) == len(ck)
    assert "the whole model fits" in capsys.readouterr().err
    # below the lowest operating point nothing fits; the nearest rule also refuses targets above the top
    for args, why in ((["--rate", str(r0 - 1)], "below the lowest operating point"),
                      (["--rate", f"~{r1 * 10}"], "above the highest operating point"),
                      (["--rate", str(r1 * 10), "--nearest"], "above the highest operating point")):
        assert main(["encode", str(path), *args, "-o", str(tmp_path / "x.rave")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and why in err and f"valid range {r0}..{r1} bytes" in err and "\n" not in err
        assert not (tmp_path / "x.rave").exists()
    assert main(["encode", str(path), "--count", "5", "--nearest", "-o", str(tmp_path / "x.rave")]) == 2
    assert "--nearest goes with --rate" in capsys.readouterr().err
