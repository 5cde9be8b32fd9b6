"""`rave-view scene.ckpt` for a Scaffold-GS anchor checkpoint: the slider selects anchors, frames decode their
neural Gaussians for each camera, bytes and PSNR are the checkpoint's (issue 17, "viewed").

A tiny real anchor checkpoint is built once: a Scaffold model trained for a few steps on a 48 px procedural
scene (as tests/scaffold/conftest.py) and `rave build` with small settings (4 levels, 4 anchors per chunk).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from rave_viewer.render import render
from rave_viewer.scaffold.model import decode_for_camera
from rave_viewer.viewer.frames import ADDED_RGB, FrameRenderer, intrinsics_from_fov, pose_of_test_view
from rave_viewer.viewer.frames import viewmat_from_c2w
from viewer_fakes import FakeCamera, FakeClient, readout

#: as tests/scaffold/conftest.py: 16 views (14 train, 2 test) of the object scene at 48x48, 600 surface points
TINY_SCENE = dict(preset="objects", n_views=16, width=48, height=48, seed=1, n_points=600, samples_per_pixel=2)
TRAIN_STEPS = 150  # ~1.5 s on one thread; ~670 anchors
W, H = 96, 72


@pytest.fixture(scope="module")
def anchor_ckpt(tmp_path_factory):
    """Path of a built anchor checkpoint (trained and built on one torch thread)."""
    from rave_viewer.rave.build import build
    from rave_viewer.rave.config import BuildConfig
    from rave_viewer.scaffold.config import ScaffoldConfig
    from rave_viewer.scaffold.io import save
    from rave_viewer.scaffold.train import train
    from rave_viewer.scene.datasets import load_dataset
    from rave_viewer.scene.procedural import generate_scene

    d = tmp_path_factory.mktemp("anchor_view")
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = generate_scene(d / "tiny", progress=False, **TINY_SCENE)
        res = train(load_dataset(data), ScaffoldConfig(steps=TRAIN_STEPS, backend="cpu", eval_every=0),
                    progress=False)
        save(res.model, d / "scene.scaffold")
        cfg = BuildConfig(steps=4, chunk_size=4, num_levels=4, rd_points=64, backend="cpu", seed=0)
        build(d / "scene.scaffold", data, d / "scene.ckpt", cfg, progress=False)
    finally:
        torch.set_num_threads(n_threads)
    return d / "scene.ckpt"


@pytest.fixture(scope="module")
def source(anchor_ckpt):
    from rave_viewer.viewer.sources import open_source

    return open_source(anchor_ckpt)


@pytest.fixture(scope="module")
def frames(source):
    return FrameRenderer(source, "cpu")


def _camera(source, view=0, w=W, h=H):
    c2w, _, fov = pose_of_test_view(source.test_cameras, view)
    return c2w, fov, viewmat_from_c2w(c2w), intrinsics_from_fov(fov, w, h)


def _reference(source, k, vm, K, w=W, h=H, cull=True):
    """decode_for_camera of the first k decoded anchors (the checkpoint's own model), independently of the source."""
    m = source.checkpoint.model(decoded=True)
    with torch.no_grad():
        return decode_for_camera({f: t[:k] for f, t in m.params.items()}, m.mlps, m.spec, vm, K, w, h, cull=cull)


def test_open_source_selects_sizes_and_levels_as_the_checkpoint(source, anchor_ckpt):
    from rave_viewer.scaffold.model import snapshot_gaussians
    from rave_viewer.viewer.anchor_source import AnchorViewSource

    ck = source.checkpoint
    assert isinstance(source, AnchorViewSource) and ck.unit_type == "anchors" and source.kind == "ckpt"
    assert source.view_dependent and source.unit_label == "anchors" and source.browser_note
    assert source.n == len(ck) and source.min_count == ck.level_sizes[0] and source.n_levels == 4
    assert source.modes == ("rate", "count", "psnr") and source.mode_labels["count"] == "anchor count"
    assert source.bounds("rate") == (ck.level_rates[0], ck.level_rates[-1])
    assert source.bounds("count") == (ck.level_sizes[0], len(ck))
    enc = ck.encoder()
    r0, r1 = ck.level_rates[0], ck.level_rates[-1]
    for t in np.linspace(r0, r1, 9):
        k = source.select("rate", t)
        assert k == ck.select(rate=float(t))
        assert source.bytes_of(k) == ck.prefix_bytes(k) == len(enc.encode(k))  # exact sizes
        assert source.encode_prefix(k) == enc.encode(k) and source.level_of(k) == ck.level_of(k)
    assert source.select("count", 301) == ck.select(count=301)
    p0, p1 = source.bounds("psnr")
    assert source.select("psnr", (p0 + p1) / 2) == ck.select(psnr=(p0 + p1) / 2)
    # the static set (scene frame, bounds) is the snapshot `rave decode` writes for the whole checkpoint
    snap, _ = snapshot_gaussians(ck.model(decoded=True))
    assert len(source.gaussians) == len(snap) != source.n
    assert torch.allclose(source.gaussians.means, snap.means) and torch.allclose(source.gaussians.sh0, snap.sh0)


def test_export_ply_is_what_rave_decode_writes_for_that_selection(source, tmp_path):
    from rave_viewer.cli import main
    from rave_viewer.scene.ply import read_ply

    k = source.checkpoint.level_sizes[1]
    (tmp_path / "sel.rave").write_bytes(source.encode_prefix(k))
    assert main(["decode", str(tmp_path / "sel.rave"), "-o", str(tmp_path / "dec.ply"), "--quiet"]) == 0
    (tmp_path / "view.ply").write_bytes(source.ply_bytes(k))
    a, b = read_ply(tmp_path / "view.ply"), read_ply(tmp_path / "dec.ply")
    assert len(a) == len(b) > k  # neural Gaussians of k anchors

    def rows(g):  # the same Gaussians up to the order within a chunk
        x = torch.cat([g.means, g.sh0.reshape(len(g), -1), g.opacities[:, None]], 1).double()
        return x[torch.from_numpy(np.lexsort(x.numpy().T[::-1].copy()))]

    assert torch.allclose(rows(a), rows(b), atol=1e-5)


def test_frames_are_the_decoded_neural_gaussians_of_the_selected_anchors(source, frames):
    c2w, fov, vm, K = _camera(source, 0)
    k_small, k_big = source.checkpoint.level_sizes[1], source.n
    imgs = {}
    for k in (k_small, k_big, k_small):  # (a larger prefix extends the camera's decoded Gaussians; a smaller cuts)
        img = frames.render_c2w(k, c2w, fov, W, H)
        ref = render(_reference(source, k, vm, K).gaussians, vm[None], K[None], W, H, backend="cpu")[0][0]
        assert (img - ref.clamp(0, 1)).abs().max() <= 1e-6, k
        imgs[k] = img
    assert (imgs[k_small] - imgs[k_big]).abs().max() > 0.1  # more anchors, another picture
    # view dependence is real: the same anchors decode to other colours and opacities for another camera
    _, _, vm1, K1 = _camera(source, 1)
    a, b = _reference(source, k_big, vm, K, cull=False), _reference(source, k_big, vm1, K1, cull=False)
    common = a.mask & b.mask  # neural Gaussians (anchor, offset) both cameras keep
    sa, sb = torch.zeros(len(common), 3), torch.zeros(len(common), 3)
    sa[a.mask], sb[b.mask] = a.gaussians.sh0[:, 0], b.gaussians.sh0[:, 0]
    assert common.sum() > 100 and float((sa[common] - sb[common]).abs().max()) > 0.05
    assert not torch.equal(a.mask, b.mask) or float((a.opacity - b.opacity).abs().max()) > 0.01
    g0, g1 = source.gaussians_for(k_big, vm, K, W, H), source.gaussians_for(k_big, vm1, K1, W, H)
    assert len(g0) != len(g1) or not torch.equal(g0.sh0, g1.sh0)
    # alpha and depth views draw the same per-camera Gaussians
    alpha = frames.render_mode(k_big, c2w, fov, W, H, "alpha")
    ref_a = render(_reference(source, k_big, vm, K).gaussians, vm[None], K[None], W, H, backend="cpu")[1][0]
    assert (alpha[..., 0] - ref_a[..., 0].clamp(0, 1)).abs().max() <= 1e-6 and float(alpha.max()) > 0.5
    assert frames.render_mode(k_big, c2w, fov, W, H, "depth").shape == (H, W, 3)


def test_what_the_slider_adds_paints_the_neural_gaussians_of_the_added_anchors(source, frames):
    c2w, fov, vm, K = _camera(source, 0)
    lo, hi = source.checkpoint.level_sizes[1], source.checkpoint.level_sizes[2]
    shown = frames.render_adds(hi, lo, c2w, fov, W, H)
    ng = _reference(source, hi, vm, K)
    g, added = ng.gaussians, ng.owners() >= lo
    assert 0 < int(added.sum()) < len(g)
    sh0 = g.sh0.clone()
    sh0[added] = (torch.tensor(ADDED_RGB) - 0.5) / 0.28209479177387814
    painted = type(g)(means=g.means, quats=g.quats, scales=g.scales, opacities=g.opacities, sh0=sh0, shN=g.shN)
    ref = render(painted, vm[None], K[None], W, H, backend="cpu")[0][0].clamp(0, 1)
    assert (shown - ref).abs().max() <= 1e-6
    px = shown.reshape(-1, 3)
    assert int(((px[:, 0] + px[:, 2] - 2 * px[:, 1]) > 0.5).sum()) > 20  # magenta where the added ones show


def test_test_view_psnr_is_the_rd_tables(source, frames):
    """The mean over the test views of the viewer's exact PSNR equals the RD table's value at that anchor count
    (the build rendered the same decoded anchors the same way); it rises from the coarsest level to all."""
    rd = source.checkpoint.rd
    views = range(len(source.test_cameras))
    means = {}
    for k in (source.min_count, source.n):
        assert k in rd["count"]
        means[k] = float(np.mean([frames.test_psnr(k, v) for v in views]))
        assert means[k] == pytest.approx(rd["psnr"][rd["count"].index(k)], abs=1e-3)
    assert means[source.n] > means[source.min_count] + 0.5


def test_viewer_app_selects_anchors_and_refuses_browser_rendering(source, capsys):
    from rave_viewer.viewer.app import ClientState, ViewerApp

    app = ViewerApp(source, port=0, backend="cpu", browser=True)
    try:
        assert app.auto_browser is False and "Browser rendering needs fixed Gaussians" in capsys.readouterr().err
        c2w, fov, _, _ = _camera(source, 0)
        client = FakeClient(app.server.gui, FakeCamera(c2w, fov))
        cs = ClientState(app, client)
        p = cs.panel
        try:
            assert f"{source.n:,} anchors" in p.title.content and not cs.session.snapshot().browser
            assert "anchor count" in p.mode.options and p.browser.disabled
            spec = cs.session.spec()
            for frac in (0.1, 0.6):
                p.slider.value = spec.to_ui(spec.from_ui(spec.lo + frac * (spec.hi - spec.lo)))
                k = cs.session.k
                rows = readout(p)
                assert rows["Encoded size"].endswith(f"({source.checkpoint.prefix_bytes(k):,} bytes)"), rows
                assert k == source.checkpoint.select(rate=min(max(cs.session.target, spec.lo * spec.scale),
                                                                   source.bounds("rate")[1]))
            p.mode.value = "anchor count"
            p.slider.value = 300
            assert cs.session.mode == "count" and cs.session.k == 300
            rows = readout(p)
            assert rows["Encoded size"].endswith(f"({source.checkpoint.prefix_bytes(300):,} bytes)")
            assert rows["Target count"] == "300 anchors" and rows["Anchors"].startswith(f"300 of {source.n:,}")
            assert p.slider.label == "anchors" and "Gaussians" not in rows
            # browser rendering is refused with a message, and the server keeps rendering
            p.browser.value = True
            assert p.browser.value is False and not cs.session.snapshot().browser
            assert client.notes and "decoded for each camera" in client.notes[-1][1]
            rts = cs.view.render_tab_state
            rts.viewer_width, rts.viewer_height = 80, 60
            img = cs._render_guarded(cs.camera_state(), rts)
            assert cs.errors == 0 and img.shape == (60, 80, 3) and img.max() > 50
            # A/B views through the app: readouts count anchors, "what the slider adds" paints them magenta
            ab = p.ab_readout.content.replace("\u00a0", " ")
            assert f"Anchors {cs.session.k_b:,}..300 of the ranked order" in ab  # B: the coarsest level
            assert f"{cs.session.k:,} anchors" in ab and "Gaussians" not in ab, ab
            p.show.value = "what the slider adds"
            px = cs._render_guarded(cs.camera_state(), rts).reshape(-1, 3).astype(int)
            assert cs.errors == 0 and int(((px[:, 0] + px[:, 2] - 2 * px[:, 1]) > 120).sum()) > 5
            p.show.value = "A/B split"
            assert cs._render_guarded(cs.camera_state(), rts).shape == (60, 80, 3) and cs.errors == 0
        finally:
            cs.close()
    finally:
        app.stop()


def test_frame_time_of_a_live_view(source, frames):
    """Frame time of a live 640x480 view of all anchors on the CPU (decode + render; printed for the report)."""
    c2w, fov, vm, K = _camera(source, 0, 640, 480)
    frames.render_c2w(source.n, c2w, fov, 640, 480)  # (warm)
    times = {}
    for name, fn in (("move", lambda i: frames.render_c2w(source.n, c2w @ _shift(i), fov, 640, 480)),
                     ("slider", lambda i: frames.render_c2w(source.n - 10 * i, c2w, fov, 640, 480))):
        t0 = time.perf_counter()
        for i in range(1, 4):
            fn(i)
        times[name] = (time.perf_counter() - t0) / 3 * 1e3
    n_neural = len(source.gaussians_for(source.n, vm, K, 640, 480))
    print(f"\nanchor live view 640x480, {source.n} anchors -> {n_neural} neural Gaussians, cpu, "
          f"{torch.get_num_threads()} threads: camera move {times['move']:.0f} ms/frame, slider step at rest "
          f"{times['slider']:.0f} ms/frame")
    assert n_neural > source.n and times["move"] < 5000


def _shift(i: int) -> np.ndarray:
    m = np.eye(4)
    m[0, 3] = 0.01 * i
    return m


def test_exports_and_the_rate_sweep_video_of_an_anchor_checkpoint(source, frames, tmp_path):
    import imageio_ffmpeg

    from rave_viewer.viewer import exports
    from rave_viewer.viewer.session import Session
    from rave_viewer.viewer.video import orbit_path, sweep_ks, write_sweep

    sel = Session(source).selection()
    (rave_name, data), (ply_name, ply) = exports.selection_files(source, sel)
    assert data == source.checkpoint.encoder().encode(sel.k) and len(data) == sel.nbytes
    assert rave_name.endswith(".rave") and ply_name.endswith(".ply") and ply == source.ply_bytes(sel.k)
    (csv_name, csv), (png_name, _) = exports.rd_files(source, sel)
    assert len(csv.decode().strip().splitlines()) == len(source.checkpoint.rd["count"]) + 1
    ks = sweep_ks(source, 4)
    assert ks[0] == source.min_count and ks[-1] == source.n
    c2w, _, fov = pose_of_test_view(source.test_cameras, 0)
    poses = orbit_path(np.zeros(3), np.array([0, 0, 1.0]), c2w[:3, 3], fov, 4)
    out = tmp_path / "sweep.mp4"
    assert write_sweep(out, frames, source, poses, np.array([0, 0, 1.0]), size=(64, 48), fps=4) == 4
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 4


def test_an_anchor_rave_stream_opens_with_its_chunk_boundaries(source, anchor_ckpt, tmp_path):
    """`rave-view stream.rave` of anchors: the stops are the stream's chunk boundaries with their exact cut sizes,
    frames are the decoded anchors' neural Gaussians for the camera, exports cut the stream; a cut file decodes
    its complete chunks (with the warning in the panel note)."""
    from rave_viewer.codec.anchors import cut_anchor_stream, decode_anchors
    from rave_viewer.viewer.sources import open_source

    stream = tmp_path / "s.rave"
    stream.write_bytes(source.checkpoint.encoder().encode(source.n))
    src = open_source(stream)
    data = stream.read_bytes()
    assert src.kind == "rave" and src.unit_label == "anchors" and src.view_dependent and src.n == source.n
    assert src.modes == ("rate", "count") and src.stops[-1] == source.n and src.stop_bytes[-1] == len(data)
    for k, b in list(zip(src.stops, src.stop_bytes))[:: max(len(src.stops) // 5, 1)]:
        assert len(cut_anchor_stream(data, k)) == b == src.bytes_of(k)
        assert src.encode_prefix(k) == cut_anchor_stream(data, k)
    assert decode_anchors(src.encode_prefix(src.stops[2])).n_decoded == src.stops[2]
    # frames: the stream's decoded anchors are the checkpoint's decoded anchors (same quantizer, same order)
    c2w, fov, vm, K = _camera(source, 0)
    k = src.stops[len(src.stops) // 2]
    img = FrameRenderer(src, "cpu").render_c2w(k, c2w, fov, W, H)
    ref = render(_reference(source, k, vm, K).gaussians, vm[None], K[None], W, H, backend="cpu")[0][0]
    assert (img - ref.clamp(0, 1)).abs().max() <= 1e-6 and float(img.max()) > 0.1
    # a stream cut mid-chunk: its complete chunks, and the note says it was cut
    cut = tmp_path / "cut.rave"
    info = src.stream_info  # (the full index comes first: cut after it, the first 4 chunks and 5 bytes)
    cut.write_bytes(data[: info.index_end + sum(c.length for c in info.chunks[:4]) + 5])
    part = open_source(cut)
    assert part.stops == src.stops[:4] and "Warning" in part.note
