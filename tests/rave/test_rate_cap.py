"""A rate is a cap: `rave encode --rate R` never writes more than R bytes and keeps every Gaussian that fits.

Also: ``~R`` / ``--nearest`` keep the nearest-point rule (Eq. 3), ``--psnr`` on RD tables of any shape,
``--quiet`` is silent, and the viewer's typed rate box caps too. Files are really written and measured.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time

import pytest

from rave_viewer.cli import main
from rave_viewer.codec import decode
from rave_viewer.rave.checkpoint import encode_checkpoint, load_checkpoint, save_checkpoint
from rave_viewer.rave.selection import cap_probe_bound


@pytest.fixture(scope="module")
def saved(ckpt_context, tmp_path_factory):
    path = tmp_path_factory.mktemp("cap") / "scene.ckpt"
    save_checkpoint(ckpt_context, path)
    return path


def test_rate_is_a_cap_for_200_random_targets(saved, tmp_path):
    ck = load_checkpoint(saved)
    exact = load_checkpoint(saved).encoder()  # a second encoder: sizes straight from compressing, no table
    r0, r1 = ck.rate_range()
    rng = random.Random(13)
    targets = [rng.randint(r0, r1) for _ in range(200)]
    out = tmp_path / "cap.rave"
    calls = [0]
    size_of = ck.prefix_bytes

    def counting(k):
        calls[0] += 1
        return size_of(k)

    ck.prefix_bytes = counting  # count the partial-chunk sizes the search asks for
    worst_s, worst_calls, used = 0.0, 0, []
    for i, R in enumerate(targets):
        calls[0] = 0
        t = time.perf_counter()
        info = encode_checkpoint(ck, out, rate=R, progress=False)
        worst_s = max(worst_s, time.perf_counter() - t)
        worst_calls = max(worst_calls, calls[0])
        size = os.path.getsize(out)
        assert size <= R, (R, size)
        assert size == info["bytes"] == exact.size_of_prefix(info["count"]) and info["cap"]
        k = info["count"]
        assert ck.level_sizes[0] <= k <= len(ck)
        if i % 10 == 0:  # maximal: one more Gaussian would not fit; and the file decodes to the prefix
            assert k == len(ck) or exact.size_of_prefix(k + 1) > R
            assert len(decode(out).gaussians) == k
        used.append(size / R)
    assert worst_calls <= cap_probe_bound(ck.chunk_size)
    # through the command line too (a fresh process state each time: load, search, write)
    for R in targets[:12]:
        out_cli = tmp_path / f"cli{R}.rave"
        assert main(["encode", str(saved), "--rate", str(R), "-o", str(out_cli), "--quiet"]) == 0
        assert os.path.getsize(out_cli) <= R
        assert len(decode(out_cli).gaussians) == ck.select(rate=R, cap=True)
    print(f"\ncap search + write: worst {1e3 * worst_s:.0f} ms, <= {worst_calls} partial sizes; budget used "
          f"{100 * min(used):.2f}-{100 * max(used):.2f} % (mean {100 * sum(used) / len(used):.2f} %)")


def test_rate_strings_cap_exactly(saved, tmp_path):
    ck = load_checkpoint(saved)
    r0, r1 = ck.rate_range()
    mid = (r0 + r1) / 2
    out = tmp_path / "s.rave"
    for text, R in ((f"{mid / 1e3:.3f}KB", int(round(mid))), (f"{mid / 1e3:.3f} kb", int(round(mid))),
                    (f"{mid / 1e6:.6f}MB", int(round(mid)))):
        assert main(["encode", str(saved), "--rate", text, "-o", str(out), "--quiet"]) == 0
        assert os.path.getsize(out) <= R
        assert len(decode(out).gaussians) == ck.select(rate=R, cap=True)


def test_nearest_keeps_the_eq3_rule(saved, tmp_path, capsys):
    ck = load_checkpoint(saved)
    r0, r1 = ck.rate_range()
    rng = random.Random(5)
    over = 0
    for R in (rng.randint(r0, r1 - 1) for _ in range(20)):
        for how in (["--rate", f"~{R}"], ["--rate", str(R), "--nearest"]):
            out = tmp_path / "n.rave"
            assert main(["encode", str(saved), *how, "-o", str(out), "--quiet"]) == 0
            k = len(decode(out).gaussians)
            assert k == ck.select(rate=R)  # the nearest point, exactly as before
            over += os.path.getsize(out) > R
        assert encode_checkpoint(ck, tmp_path / "n2.rave", rate=R, nearest=True)["count"] == ck.select(rate=R)
    assert over > 0  # the nearest rule does overshoot sometimes: that is why the cap is the default
    capsys.readouterr()
    assert main(["encode", str(saved), "--rate", f"~{(r0 + r1) // 2}", "-o", str(tmp_path / "n.rave")]) == 0
    assert "nearest to" in capsys.readouterr().err


def _with_psnr(ckpt, tmp_path, name, psnr):
    ck = dataclasses.replace(ckpt, rd={**ckpt.rd, "psnr": [float(p) for p in psnr]})
    path = tmp_path / f"{name}.ckpt"
    save_checkpoint(ck, path)
    return path, load_checkpoint(path)


def test_psnr_on_rd_tables_that_are_not_increasing(ckpt_context, tmp_path, capsys):
    counts = ckpt_context.rd["count"]
    m = len(counts)
    falling = [30.0 - 3.0 * i / (m - 1) for i in range(m)]  # best at the smallest point
    peak = m * 2 // 3
    peaked = [20.0 + 6.0 * min(i, peak) / peak - 2.0 * max(0, i - peak) / m for i in range(m)]
    for name, psnr in (("falling", falling), ("peaked", peaked)):
        path, ck = _with_psnr(ckpt_context, tmp_path, name, psnr)
        best = max(range(m), key=lambda i: (psnr[i], -i))
        lo_p = min(psnr)
        for target in [lo_p, *(lo_p + (psnr[best] - lo_p) * f for f in (0.1, 0.5, 0.9, 0.999)), psnr[best]]:
            out = tmp_path / "p.rave"
            assert main(["encode", str(path), "--psnr", f"{target:.4f}", "-o", str(out), "--quiet"]) == 0
            k = len(decode(out).gaussians)
            t = float(f"{target:.4f}")
            j = next(i for i, p in enumerate(psnr) if p >= t - 1e-9)  # first point in rate order reaching it
            assert k <= counts[j] and (j == 0 or k > counts[j - 1]), (name, t, k, j)
            assert k == ck.select(psnr=t)
        assert main(["encode", str(path), "--psnr", f"{psnr[best] + 0.5:.4f}", "-o", str(tmp_path / "x.rave")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "above the best operating point" in err
        assert f"{psnr[best]:.3f} dB at {counts[best]:,} Gaussians" in err and f"{ck.rd['bytes'][best]:,} B" in err
        assert not (tmp_path / "x.rave").exists()
    # falling: every target up to the first point's PSNR is reached by the first point already
    path, _ = _with_psnr(ckpt_context, tmp_path, "falling", falling)
    assert main(["encode", str(path), "--psnr", "28.5", "-o", str(tmp_path / "f.rave"), "--quiet"]) == 0
    assert len(decode(tmp_path / "f.rave").gaussians) == counts[0]


def test_quiet_prints_nothing(saved, ckpt_context, tmp_path, capsys):
    from rave_viewer.scene.ply import write_ply

    ck = load_checkpoint(saved)
    assert -(-len(ck) // ck.chunk_size) >= 8  # enough chunks for the compression bar to show without --quiet
    capsys.readouterr()
    assert main(["encode", str(saved), "-o", str(tmp_path / "all.rave")]) == 0
    assert "compressing" in capsys.readouterr().err  # the bar (and the summary) without --quiet
    ply = tmp_path / "scene.ply"
    write_ply(ckpt_context.gaussians, ply)
    r0, r1 = ck.rate_range()
    for args in ([str(saved)], [str(saved), "--rate", str((r0 + r1) // 2)], [str(saved), "--rate", f"~{r1}"],
                 [str(saved), "--count", "300"], [str(saved), "--psnr", f"{max(ck.rd['psnr']) - 0.01:.3f}"],
                 [str(ply), "--chunk-size", "32"]):
        out = tmp_path / "q.rave"
        assert main(["encode", *args, "-o", str(out), "--quiet"]) == 0
        got = capsys.readouterr()
        assert got.err == "" and got.out == "", (args, got)
        assert out.stat().st_size > 0


def test_viewer_typed_rate_is_a_cap(saved):
    viser = pytest.importorskip("viser")
    from rave_viewer.viewer.panel import Panel
    from rave_viewer.viewer.session import Session
    from rave_viewer.viewer.sources import open_source

    class Host:
        def __init__(self):
            self.renders, self.notes = 0, []

        def request_render(self):
            self.renders += 1

        def notify(self, title, body, error=False):
            self.notes.append((title, body, error))

        def send_file(self, name, data): ...
        def snap_to_view(self, view): ...
        def set_browser_rendering(self, on): ...
        def screenshot_image(self): ...

    def readout(p):
        rows = [line.strip("|").split("|") for line in p.readout.content.splitlines()[2:]]
        return {a.strip(): b.strip() for a, b in rows}

    src = open_source(saved)
    ck = src.checkpoint
    r0, r1 = ck.rate_range()
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        host = Host()
        p = Panel(server.gui, Session(src), host)
        spec = p.session.spec()
        assert spec.mode == "rate" and spec.unit == "KB"
        rng = random.Random(2)
        for _ in range(12):
            cap = rng.randint(r0, r1 - 1)
            p.number.value = cap / 1e3  # typed in KB
            k = p.session.k
            assert k == ck.select(rate=cap, cap=True) and src.bytes_of(k) <= cap
            assert k == len(ck) or ck.prefix_bytes(k + 1) > cap
            row = readout(p)["Typed cap"].replace("\xa0", " ")  # (no-break spaces: values never wrap)
            assert row.startswith(f"{cap:,} bytes (file {src.bytes_of(k):,} bytes, {cap - src.bytes_of(k):,} under)")
            assert readout(p)["Encoded size"].replace("\xa0", " ").endswith(f"({src.bytes_of(k):,} bytes)")
        p.slider.value = spec.to_ui((r0 + r1) / 2)  # the slider keeps the nearest rule; the cap row goes away
        assert "Typed cap" not in readout(p) and p.session.k == src.select("rate", spec.from_ui(p.slider.value))
        p.number.value = (r0 - 500) / 1e3  # below the lowest point: said so, with the valid range
        assert p.session.k == src.min_count
        title, body, _ = host.notes[-1]
        assert "lowest operating point" in title and f"{r0:,}..{r1:,} bytes" in body
        p.number.value = r1 * 3 / 1e3  # above the top: everything fits
        assert p.session.k == len(ck)
    finally:
        server.stop()
