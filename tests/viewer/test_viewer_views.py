"""RAVE-only views and camera controls without a browser: what the slider adds, A/B split, up axis, framing,
the rate-sweep MP4, and the panel's clamped PSNR box, compare note and FPS readout."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rave_viewer.render import render
from rave_viewer.scene.gaussians import Gaussians
from rave_viewer.viewer.app import ClientState, ViewerApp
from rave_viewer.viewer.frames import ADDED_RGB, FrameRenderer, pose_of_test_view, viewmat_from_c2w
from rave_viewer.viewer.frames import intrinsics_from_fov, to_uint8
from rave_viewer.viewer.sources import ViewSource
from rave_viewer.viewer.video import camera_path, orbit_path, sweep_ks, write_sweep
from rave_viewer.viewer.viewpoint import framing_pose, scene_frame
from viewer_fakes import FakeCamera, FakeClient

W, H = 96, 72


@pytest.fixture(scope="module")
def frames(ckpt_source):
    return FrameRenderer(ckpt_source, "cpu")


def test_what_the_slider_adds_changes_pixels_only_where_the_added_gaussians_are(frames, ckpt_source):
    c2w, _, fov = pose_of_test_view(ckpt_source.test_cameras, 0)
    lo, hi = 400, 800
    shown = frames.render_adds(hi, lo, c2w, fov, W, H)  # (either order)
    plain = frames.render_c2w(hi, c2w, fov, W, H)
    changed = (shown - plain).abs().amax(-1) > 1.5 / 255
    # where the added Gaussians (alone) cover nothing, the picture is exactly the plain render at the higher rate
    added = frames.gaussians.subset(torch.arange(lo, hi))
    _, alpha, _ = render(added, viewmat_from_c2w(c2w)[None], intrinsics_from_fov(fov, W, H)[None], W, H, backend="cpu")
    covered = alpha[0, ..., 0] > 1e-4
    assert not bool((changed & ~covered).any())
    assert changed.float().mean() > 0.05  # and the interval is visible (magenta-ish where it is on top)
    px = shown[changed]
    assert float((px[:, 0] + px[:, 2] - 2 * px[:, 1]).mean()) > 0.2  # magenta: red + blue over green
    assert ADDED_RGB == (1.0, 0.0, 1.0)


def test_split_halves_are_the_halves_of_each_full_render(frames, ckpt_source):
    c2w, _, fov = pose_of_test_view(ckpt_source.test_cameras, 1)
    img = frames.render_split(300, 1500, c2w, fov, W, H)
    a = to_uint8(frames.render_c2w(300, c2w, fov, W, H))
    b = to_uint8(frames.render_c2w(1500, c2w, fov, W, H))
    half = W // 2
    assert np.abs(img[:, : half - 1].astype(int) - a[:, : half - 1]).max() <= 1
    assert np.abs(img[:, half + 1:].astype(int) - b[:, half + 1:]).max() <= 1
    assert (img[:, half - 1:half + 1] == 255).all()  # the divider


def _ground_scene(up_axis: int, sign: float) -> ViewSource:
    """A dense ground plane with boxes standing on it, 'up' along axis ``up_axis`` with ``sign``."""
    g = torch.Generator().manual_seed(0)
    n_g, n_o = 6000, 3000
    ground = torch.rand(n_g, 3, generator=g) * 4 - 2
    ground[:, up_axis] = 0.0
    objs = torch.rand(n_o, 3, generator=g) * 1.6 - 0.8
    objs[:, up_axis] = torch.rand(n_o, generator=g) * 1.2 + 0.05
    means = torch.cat([ground, objs])
    means[:, up_axis] *= sign
    n = len(means)
    gs = Gaussians(means=means, quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), scales=torch.full((n, 3), -4.0),
                   opacities=torch.full((n,), 3.0), sh0=torch.zeros(n, 1, 3), shN=torch.zeros(n, 0, 3))
    return ViewSource(path=Path("ground.ply"), kind="ply", gaussians=gs)


@pytest.mark.parametrize("axis,sign", [(1, 1.0), (1, -1.0), (2, 1.0)])
def test_up_axis_comes_from_the_scene_without_cameras(axis, sign):
    f = scene_frame(_ground_scene(axis, sign))
    want = np.zeros(3)
    want[axis] = sign
    assert np.allclose(f.up, want, atol=1e-6), (f.up, f.up_reason)
    assert "ground plane" in f.up_reason


def test_framing_puts_the_bounding_sphere_in_view():
    f = scene_frame(_ground_scene(2, 1.0))
    fov = math.radians(50)
    pos, look = framing_pose(f, f.up, fov, 16 / 9)
    d = np.linalg.norm(pos - look)
    assert np.allclose(look, f.centre)
    assert math.asin(f.radius / d) < fov / 2  # the whole sphere inside the vertical field of view
    assert np.dot(pos - look, f.up) > 0  # from above the ground, not below
    fwd = np.array([1.0, 0.0, 0.0])
    pos2, _ = framing_pose(f, f.up, fov, 1.0, forward=fwd)
    assert np.allclose((look - pos2) / np.linalg.norm(look - pos2), fwd)  # "frame the scene" keeps the direction


def test_rate_sweep_video(frames, ckpt_source, tmp_path):
    import imageio_ffmpeg

    ks = sweep_ks(ckpt_source, 10)
    assert ks[0] == ckpt_source.min_count and ks[-1] == ckpt_source.n and ks == sorted(ks)
    c2w, _, fov = pose_of_test_view(ckpt_source.test_cameras, 0)
    keys = [(c2w[:3, 3], np.zeros(3), fov), (c2w[:3, 3] * 1.3, np.zeros(3), fov)]
    poses = camera_path(keys, 10)
    assert np.allclose(poses[0][0], keys[0][0]) and np.allclose(poses[-1][0], keys[1][0])
    assert len(orbit_path(np.zeros(3), np.array([0, 0, 1.0]), c2w[:3, 3], fov, 7)) == 7
    out = tmp_path / "sweep.mp4"
    assert write_sweep(out, frames, ckpt_source, poses, np.array([0, 0, 1.0]), size=(160, 96), fps=10) == 10
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n == 10 and secs == pytest.approx(1.0, abs=0.05)
    assert not list(tmp_path.glob(".rave-*"))  # the temporary file was renamed, not left behind


@pytest.fixture(scope="module")
def app(ckpt_source):
    a = ViewerApp(ckpt_source, port=0)
    yield a
    a.stop()


def test_panel_psnr_box_compare_note_and_delivered_fps(app):
    c2w, _, fov = pose_of_test_view(app.source.test_cameras, app.start_view)
    client = FakeClient(app.server.gui, FakeCamera(c2w, fov))
    cs = ClientState(app, client)
    p = cs.panel
    try:
        p.mode.value = "PSNR"
        p.number.value = 99.0  # above the best point: clamped, and the box says so (not "99")
        spec = cs.session.spec()
        assert p.number.value == spec.hi and p.slider.value == spec.hi
        # compare mode on a free camera explains itself
        cs.session.set_view(None)
        p.compare.value = "side by side"
        assert p.compare_note.visible and "test view" in p.compare_note.content
        cs.session.set_view(0)
        p.refresh()
        assert not p.compare_note.visible
        p.compare.value = "off"
        # FPS = frames delivered per second, not one frame's render speed
        rts = cs.view.render_tab_state
        rts.viewer_width, rts.viewer_height = 32, 24
        for _ in range(4):
            cs._render_guarded(cs.camera_state(), rts)
            time.sleep(0.1)
        assert cs.fps is not None and 1.0 < cs.fps < 1 / 0.1 + 1  # <= 10 frames/s delivered
        assert cs.frame_ms < 1e3 / cs.fps  # each frame took less than the gap between frames
        # the up-axis choice re-frames the camera around the new up
        cs.set_up("+Y")
        assert np.allclose(client.camera.up_direction, (0, 1, 0))
        cs.set_up("auto")
        assert np.allclose(client.camera.up_direction, app.up)
        cs.reset_view()
        assert np.allclose(client.camera.position, c2w[:3, 3])  # the start test view
    finally:
        cs.close()


def test_pacing_keeps_moving_frames_readable_and_renders_a_rate_change_sharp_at_once():
    from types import SimpleNamespace

    from nerfview import RenderTabState

    from rave_viewer.viewer.pacing import MIN_MOVING_SIDE, PacedRenderer

    rts = RenderTabState()
    rts.viewer_res = 1280
    view = SimpleNamespace(render_tab_state=rts, state="rendering")
    r = PacedRenderer(view, client=None)
    r._px_per_s = 50_000.0  # a slow machine: 30 FPS would mean 40x40 px thumbnails
    W, H = r.moving_size(16 / 9)
    assert W == MIN_MOVING_SIDE and H == int(MIN_MOVING_SIDE / (16 / 9))
    r._px_per_s = 1e9  # a fast one: up to the canvas, never beyond
    assert max(r.moving_size(16 / 9)) == 1280
    rts.viewer_res = 300  # a small canvas: moving frames are the canvas
    r._px_per_s = 1.0
    assert max(r.moving_size(0.5)) == 300
    assert r.transitions["high"]["rerender"] == "high"  # a slider step on a still camera: sharp frame at once
    assert r.transitions["low_move"]["static"] == "high"  # the camera rests: sharp, no second low frame
    r._state = "high"
    r.submit(SimpleNamespace(action="rerender", camera_state=None))
    assert not r._may_interrupt_render  # a rate change lets the frame in flight finish
    r.submit(SimpleNamespace(action="move", camera_state=None))
    assert r._may_interrupt_render  # a camera move interrupts it


def test_render_modes_alpha_and_depth(frames, ckpt_source):
    c2w, _, fov = pose_of_test_view(ckpt_source.test_cameras, 0)
    a = frames.render_mode(1500, c2w, fov, W, H, "alpha")
    d = frames.render_mode(1500, c2w, fov, W, H, "depth")
    rgb = frames.render_mode(1500, c2w, fov, W, H, "RGB")
    for img in (a, d):
        assert img.shape == (H, W, 3) and torch.equal(img[..., 0], img[..., 1]) and float(img.max()) <= 1.0
    empty = a[..., 0] < 1e-4
    assert bool(empty.any()) and bool((rgb[empty] == 0).all()) and bool((d[empty] == 0).all())
    assert float(a.max()) > 0.99  # the sphere is opaque in the middle
    # depth: the sphere's centre of the image (its near side) is brighter than its rim (farther, grazing)
    mid = d[H // 2 - 4:H // 2 + 4, W // 2 - 4:W // 2 + 4, 0].mean()
    assert float(d[..., 0][~empty].std()) > 0.02 and float(mid) > float(d[..., 0][~empty].mean()) - 0.05
    with pytest.raises(ValueError):
        frames.render_mode(10, c2w, fov, W, H, "normals")


def test_tabs_render_concurrently(app, monkeypatch):
    """Each tab has its own render lock: a slow frame in one tab does not hold the other tab's frames."""
    import threading

    spans, lock = [], threading.Lock()

    def slow(k, c2w, fov, W, H):
        t0 = time.monotonic()
        time.sleep(0.4)
        with lock:
            spans.append((threading.current_thread().name, t0, time.monotonic()))
        return torch.zeros(H, W, 3)

    monkeypatch.setattr(app.frames, "render_c2w", slow)
    c2w, _, fov = pose_of_test_view(app.source.test_cameras, 0)
    tabs = []
    for i in range(2):
        client = FakeClient(app.server.gui, FakeCamera(c2w, fov))
        client.client_id = 100 + i
        tabs.append(ClientState(app, client))
    try:
        for cs in tabs:
            cs.start()
        t = time.monotonic()
        while len({s[0] for s in spans}) < 2 and time.monotonic() - t < 20:
            time.sleep(0.05)
        threads = {s[0] for s in spans}
        assert len(threads) == 2
        (a0, a1), (b0, b1) = [next((s[1], s[2]) for s in spans if s[0] == name) for name in sorted(threads)]
        assert a0 < b1 and b0 < a1  # the two tabs' frames overlapped in time
    finally:
        for cs in tabs:
            cs.close()


def test_side_by_side_stacks_when_that_fills_the_canvas_more(frames, ckpt_source):
    from PIL import Image

    gt = (ckpt_source.test_cameras.images[0].numpy() * 255).round().astype(np.uint8)  # 64x48
    tall = frames.comparison(ckpt_source.n, 0, "side by side", 64, 200)  # portrait canvas: one above the other
    below = np.asarray(Image.fromarray(gt).resize((64, 48)), float)
    assert np.abs(tall[100:148, :].astype(float) - below).mean() < 3  # the ground truth fills the lower half
    wide = frames.comparison(ckpt_source.n, 0, "side by side", 256, 48)  # landscape: side by side
    assert np.abs(wide[:, 128:192].astype(float) - gt).mean() < 3


def test_start_view_is_the_test_view_of_median_elevation():
    import torch

    from rave_viewer.scene.cameras import Cameras, intrinsics, look_at
    from rave_viewer.viewer.frames import start_view

    elev = [5.0, 60.0, 30.0, 85.0, 20.0]  # degrees above the horizon, z up; median 30 = view 2
    eyes = [(4 * np.cos(np.radians(e)) * np.cos(i), 4 * np.cos(np.radians(e)) * np.sin(i), 4 * np.sin(np.radians(e)))
            for i, e in enumerate(elev)]
    vm = torch.stack([look_at(torch.tensor(e, dtype=torch.float32), torch.zeros(3), torch.tensor([0.0, 0, 1]))
                      for e in eyes]).float()
    cams = Cameras(vm, intrinsics(32, 32, 0.8).expand(len(elev), 3, 3).clone(), 32, 32)
    assert start_view(cams, np.array([0.0, 0, 1])) == 2
    assert start_view(cams, np.array([0.0, 0, -1])) == 2  # the median is the median either way up
    assert start_view(Cameras(vm[:1], cams.Ks[:1], 32, 32), np.array([0.0, 0, 1])) == 0
