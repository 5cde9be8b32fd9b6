"""GUI callbacks without a browser: the panel on a real viser GuiApi, and a tab's render path with a fake client.

Setting a viser handle's ``value`` from Python runs its callbacks synchronously, exactly like a browser event
minus the transport, so these tests drive the same code the browser does.
"""

from __future__ import annotations

import csv
import io
import math
import time

import numpy as np
import pytest
import viser
from nerfview._renderer import InterruptRenderException
from PIL import Image

from rave_viewer.viewer.app import STALE_GRACE_S, ClientState, ViewerApp
from rave_viewer.viewer.frames import match_test_view, pose_of_test_view
from rave_viewer.viewer.panel import FREE_CAMERA, Panel
from rave_viewer.viewer.session import Session
from rave_viewer.viewer.sources import open_source
from viewer_fakes import FakeCamera, FakeClient, readout as _readout


class FakeHost:
    def __init__(self):
        self.renders = 0
        self.files: list[tuple[str, bytes]] = []
        self.notes: list[tuple[str, str, bool]] = []
        self.snapped: list[int] = []
        self.browser: list[bool] = []

    def request_render(self):
        self.renders += 1

    def send_file(self, name, data):
        self.files.append((name, data))

    def notify(self, title, body, error=False):
        self.notes.append((title, body, error))

    def snap_to_view(self, view):
        self.snapped.append(view)

    def set_browser_rendering(self, on):
        self.browser.append(on)

    def screenshot_image(self):
        return np.full((12, 20, 3), 7, np.uint8)


@pytest.fixture(scope="module")
def server():
    s = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    yield s
    s.stop()


def test_slider_number_and_mode_callbacks(server, ckpt_source):
    host = FakeHost()
    p = Panel(server.gui, Session(ckpt_source), host)
    k0 = ckpt_source.default_k()  # a new tab starts at the knee of the RD curve, not at the full model
    start_kb = round(ckpt_source.bytes_of(k0) / 1e3, 2)  # in KB (10^3 bytes)
    assert 200 < k0 < 1500 and p.slider.label == "Rate [KB]" and p.slider.value == start_kb <= p.slider.max
    assert _readout(p)["Gaussians"].startswith(f"{k0:,} of 1,500")
    p.slider.value = 8.0  # "drag" to 8 KB
    r = _readout(p)
    assert r["Target rate"] == "8.00 KB" and p.number.value == 8.0 and host.renders == 1
    k8 = p.session.k
    assert r["Gaussians"].startswith(f"{k8:,} of 1,500")
    assert r["Encoded size"].endswith(f"({ckpt_source.bytes_of(k8):,} bytes)")
    p.number.value = 12.5  # type a rate: the slider follows
    assert p.slider.value == 12.5 and p.session.k > k8 and host.renders == 2
    p.number.value = 1e6  # typed out of range: clamped to the highest rate
    assert p.session.k == ckpt_source.n
    # target by count: slider re-ranged in Gaussians, selection kept
    p.mode.value = "Gaussian count"
    assert p.slider.label == "Gaussians" and (p.slider.min, p.slider.max) == (200, 1500)
    assert p.slider.value == 1500 and p.number.label == "Type Gaussians"
    p.slider.value = 640
    assert p.session.k == 640 and _readout(p)["Target count"] == "640 Gaussians"
    p.mode.value = "PSNR"
    assert p.slider.label == "PSNR [dB]" and p.session.k == 640
    x, y, cur = p.plot.data  # current point marked on the RD curve
    i = int(np.flatnonzero(np.isfinite(cur))[0])
    assert x[i] == pytest.approx(ckpt_source.bytes_of(640) / 1e3) and cur[i] == pytest.approx(ckpt_source.psnr_at(640))
    assert not host.notes


def test_buttons_send_files(server, ckpt_source):
    host = FakeHost()
    p = Panel(server.gui, Session(ckpt_source), host)
    p.slider.value = 6.0
    p.btn_shot.value = True  # a click
    p.btn_rd.value = True
    p.btn_sel.value = True
    names = [n for n, _ in host.files]
    assert names[0].endswith("_20x12.png") and names[1] == "sphere_rd.csv" and names[2].endswith(".png")
    assert names[3].endswith(".rave") and names[4].endswith(".ply")
    rows = list(csv.DictReader(io.StringIO(host.files[1][1].decode())))
    assert all(int(a["bytes"]) < int(b["bytes"]) for a, b in zip(rows, rows[1:]))
    assert len(host.files[3][1]) == ckpt_source.bytes_of(p.session.k)


def test_view_compare_browser_and_failures(server, ckpt_source):
    host = FakeHost()
    p = Panel(server.gui, Session(ckpt_source), host)
    assert p.view.options[0] == FREE_CAMERA and p.view.options[2] == "1: right"
    p.view.value = "1: right"
    assert host.snapped == [1]
    p.session.set_view(None)
    p.show_view(None)  # the camera left the view: dropdown follows, without snapping again
    assert p.view.value == FREE_CAMERA and host.snapped == [1]
    p.session.set_view(2)
    p.show_view(2)
    assert p.view.value == "2: back" and "PSNR, view back" in _readout(p)
    p.compare.value = "difference"
    assert p.session.snapshot().compare == "difference"
    p.browser.value = True
    assert host.browser == [True] and p.session.snapshot().browser and "browser" in p.status.content

    def boom():
        raise RuntimeError("disk full")

    host.screenshot_image = boom
    p.btn_shot.value = True  # an action failing becomes a notification, not a crash
    assert host.notes and host.notes[-1][2] and "disk full" in host.notes[-1][1]


def test_ply_panel_has_no_rave_controls(server, scene_files):
    src = open_source(scene_files["ply"])
    p = Panel(server.gui, Session(src), FakeHost())
    assert p.slider is None and p.mode is None and p.btn_rd is None and p.btn_sel is None
    assert p.note.visible and "no RAVE ranking" in p.note.content
    assert _readout(p)["Gaussians"] == "1,500 of 1,500 (100.0 %)"


# -- a tab's render path, with a fake client ----------------------------------------------------------------
@pytest.fixture(scope="module")
def app(ckpt_source):
    a = ViewerApp(ckpt_source, port=0)
    yield a
    a.stop()


def _wait(cond, timeout=10.0):
    t = time.monotonic()
    while not cond():
        assert time.monotonic() - t < timeout, "timed out"
        time.sleep(0.02)


def _tab(app, view=0):
    c2w, _, fov = pose_of_test_view(app.source.test_cameras, view)
    client = FakeClient(app.server.gui, FakeCamera(c2w, fov))
    cs = ClientState(app, client)
    cs.on_camera(client.camera)  # the tab's camera sits on test view ``view``
    return cs, client


def test_render_error_shows_a_message_and_the_next_render_works(app, monkeypatch):
    cs, client = _tab(app)
    rts = cs.view.render_tab_state
    rts.viewer_width, rts.viewer_height = 80, 60
    real = app.frames.render_c2w
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory in the rasterizer")
        return real(*a, **kw)

    monkeypatch.setattr(app.frames, "render_c2w", flaky)
    img = cs._render_guarded(cs.camera_state(), rts)  # would be os._exit(1) in plain nerfview
    assert img.shape == (60, 80, 3) and not img.any()
    _wait(lambda: cs.panel.error_md.visible)
    assert "RuntimeError: out of memory in the rasterizer" in cs.panel.error_md.content
    img = cs._render_guarded(cs.camera_state(), rts)
    assert img.shape == (60, 80, 3) and img.max() > 100  # a real frame of the coloured sphere
    _wait(lambda: not cs.panel.error_md.visible)
    assert cs.panel.error is None and "FPS" in cs.panel.status.content and cs.errors == 1
    cs.close()


def test_exact_view_psnr_and_comparisons(app):
    cs, client = _tab(app, view=1)
    assert cs.session.snapshot().view == 1
    rts = cs.view.render_tab_state
    rts.viewer_width, rts.viewer_height = 120, 60
    cs._render_guarded(cs.camera_state(), rts)
    exact = app.frames.test_psnr(cs.session.k, 1)
    _wait(lambda: cs.session.view_psnr() is not None)  # computed after the frame was delivered
    assert cs.session.view_psnr() == pytest.approx(exact)
    _wait(lambda: f"{exact:.2f}\u00a0dB" in cs.panel.readout.content)
    cs.panel.compare.value = "side by side"
    img = cs._render_guarded(cs.camera_state(), rts)
    assert img.shape == (60, 120, 3)
    # the right half is the ground truth of view 1, fitted into 60 px of height
    gt = (app.source.test_cameras.images[1].numpy() * 255).round()
    right = np.asarray(Image.fromarray(gt.astype(np.uint8)).resize((60, 45)), float)
    fitted = img[7:52, 60:120].astype(float)
    assert np.abs(fitted - right).mean() < 3
    assert np.abs(img[7:52, :60].astype(float) - right).mean() > 0.5  # the left half is the render
    cs.close()


def test_stale_frames_are_dropped_and_screenshots_are_full_size(app, monkeypatch):
    cs, client = _tab(app)
    client.camera.set_c2w(np.linalg.inv(app.source.test_cameras.viewmats[0].double().numpy()) @ _orbit(0.3))
    cs.on_camera(client.camera)
    assert cs.session.snapshot().view is None
    rts = cs.view.render_tab_state
    rts.viewer_width, rts.viewer_height = 40, 30
    real = app.frames.render_c2w

    def slider_moves_meanwhile(*a, **kw):
        cs.session.set_target(cs.session.target * 0.5)
        return real(*a, **kw)

    monkeypatch.setattr(app.frames, "render_c2w", slider_moves_meanwhile)
    cs.last_frame = time.monotonic()  # a frame was just shown: the stale one is dropped
    with pytest.raises(InterruptRenderException):
        cs._render_guarded(cs.camera_state(), rts)
    cs.last_frame = time.monotonic() - 2 * STALE_GRACE_S  # nothing shown for a while: show progress
    assert cs._render_guarded(cs.camera_state(), rts).shape == (30, 40, 3)
    monkeypatch.setattr(app.frames, "render_c2w", real)
    shot = cs.screenshot_image()
    assert shot.shape == (120, 160, 3)
    st = cs.camera_state()
    assert np.array_equal(shot, cs.screenshot_image())  # deterministic
    assert st.c2w.shape == (4, 4)
    cs.close()


def test_browser_rendering_sends_the_selection_and_stops_server_frames(app):
    cs, client = _tab(app)
    cs.panel.slider.value = 5.0
    k = cs.session.k
    cs.panel.browser.value = True
    _wait(lambda: client.scene.splats)
    assert sum(client.scene.splats) == k and not client.scene.backgrounds[-1].any()  # on black, as the server
    with pytest.raises(InterruptRenderException):
        cs._render_guarded(cs.camera_state(), cs.view.render_tab_state)
    cs.panel.slider.value = 9.0  # the browser gets the new selection
    _wait(lambda: client.scene.splats[-1] == cs.session.k)
    assert cs.session.k > k
    # no server frames, yet the camera sits on test view 0: its exact PSNR is still computed
    _wait(lambda: cs.session.view_psnr() is not None)
    assert cs.session.view_psnr() == pytest.approx(app.frames.test_psnr(cs.session.k, 0))
    cs.panel.browser.value = False  # back to server frames: splats removed, frames flow again
    _wait(lambda: cs.splat_handle is None)
    rts = cs.view.render_tab_state
    rts.viewer_width, rts.viewer_height = 32, 24
    assert cs._render_guarded(cs.camera_state(), rts).shape == (24, 32, 3)
    cs.close()


def test_snap_to_test_view(app):
    cs, client = _tab(app)
    cs.panel.view.value = "2: back"
    c2w, fwd, fov = pose_of_test_view(app.source.test_cameras, 2)
    cam = client.camera
    assert np.allclose(cam.position, c2w[:3, 3]) and cam.fov == pytest.approx(fov)
    d = (cam.look_at - cam.position) / np.linalg.norm(cam.look_at - cam.position)
    assert np.allclose(d, fwd, atol=1e-6)
    cs.close()


def test_match_test_view(ckpt_source):
    cams = ckpt_source.test_cameras
    for i in range(len(cams)):
        c2w, _, _ = pose_of_test_view(cams, i)
        assert match_test_view(c2w, cams, 1.0) == i
        assert match_test_view(c2w @ _orbit(0.01), cams, 1.0) is None  # 0.6 degrees off
    assert match_test_view(np.eye(4), None, 1.0) is None


def _orbit(angle):
    """A small rotation about the camera's own y axis (a 4x4 to right-multiply a c2w)."""
    m = np.eye(4)
    c, s = math.cos(angle), math.sin(angle)
    m[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    return m
