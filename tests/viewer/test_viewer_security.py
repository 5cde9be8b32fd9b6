"""Only the user's own pages may talk to ``rave-view``: Origin/Host checks, the token off loopback, capped renders.

The websocket tests speak viser's real protocol (its subprotocol, its first messages) to a real ViewerApp;
a refused handshake means the page got nothing at all: no GUI, so no Export button and no splats.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import viser
import websockets.exceptions
from websockets.sync.client import connect

import rave_viewer
from rave_viewer.viewer.app import MAX_RENDER_SIDE, ClientState, ViewerApp, capped_size, safe_camera_state
from rave_viewer.viewer.frames import pose_of_test_view
from rave_viewer.viewer.gate import Gate, normalize_origin

from viewer_fakes import FakeCamera, FakeClient, one_line_error, spawn_view, stop_view, wait_for_line
from viewer_fakes import readout as _readout

PROTO = f"viser-v{viser.__version__}"
_ROOT = os.pathsep.join([os.path.dirname(os.path.dirname(rave_viewer.__file__)), os.environ.get("PYTHONPATH", "")])


def ws_first_message(port: int, origin: str | None, headers: dict | None = None, host: str = "127.0.0.1"):
    """The first message the viewer sends to a websocket opened with ``origin`` (raises if refused)."""
    with connect(
        f"ws://{host}:{port}/", origin=origin, subprotocols=[PROTO], additional_headers=headers or {},
        open_timeout=20, max_size=2**26,
    ) as ws:  # fmt: skip
        return ws.recv(timeout=20)


def refused_status(fn) -> int:
    with pytest.raises(websockets.exceptions.InvalidStatus) as e:
        fn()
    return e.value.response.status_code


def http_get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.fixture(scope="module")
def app(ckpt_source):
    a = ViewerApp(ckpt_source, port=0, allow_origins=["https://embed.example"])
    yield a
    a.stop()


def test_foreign_origin_gets_nothing_own_origin_works(app, capfd):
    p = app.port
    for evil in ("http://evil.example.com", f"http://evil.example.com:{p}", "null", f"http://127.0.0.1:{p + 1}",
                 f"https://127.0.0.1:{p}", "http://embed.example", "https://embed.example:444"):  # fmt: skip
        assert refused_status(lambda: ws_first_message(p, evil)) == 403, evil
        status, body, _ = http_get(f"http://127.0.0.1:{p}/", {"Origin": evil})
        assert status == 403 and b"<html" not in body.lower() and len(body) < 200
    assert "refused origin 'http://evil.example.com'" in capfd.readouterr().err  # a clear log line
    assert len(app.clients) == 0  # no tab was ever created for them: no panel, no Export button, no splats
    for own in (f"http://127.0.0.1:{p}", f"http://localhost:{p}", f"http://[::1]:{p}", "https://embed.example",
                None):  # fmt: skip
        assert isinstance(ws_first_message(p, own), bytes), own
    status, body, _ = http_get(f"http://localhost:{p}/", {"Origin": f"http://localhost:{p}"})
    assert status == 200 and b"<html" in body[:2000].lower()


def test_dns_rebinding_host_is_refused(app):
    p = app.port
    status, body, _ = http_get(f"http://127.0.0.1:{p}/", {"Host": f"evil.example.com:{p}"})
    assert status == 403
    status, _, _ = http_get(f"http://127.0.0.1:{p}/", {"Host": f"localhost:{p}"})
    assert status == 200


def test_gate_rules_without_a_server():
    g = Gate("0.0.0.0", token="s3cret")
    h = {"Host": "192.168.7.9:8080", "Origin": "http://192.168.7.9:8080", "Cookie": ""}
    assert g.check("/", h, 8080)[0][0] == 403  # right origin, no token
    refusal, set_cookie = g.check("/?token=s3cret", h, 8080)
    assert refusal is None and set_cookie
    assert g.check("/", {**h, "Cookie": "a=b; rave_token_8080=s3cret"}, 8080) == (None, False)
    assert g.check("/", {**h, "Cookie": "rave_token_8081=s3cret"}, 8080)[0][0] == 403  # another viewer's cookie
    assert g.check("/?token=wrong", h, 8080)[0][0] == 403
    assert g.check("/?token=s3cret", {**h, "Origin": "http://evil.example"}, 8080)[0][0] == 403
    assert normalize_origin("HTTPS://Example.com:443/") == "https://example.com"
    with pytest.raises(rave_viewer.errors.RaveError, match="--allow-origin"):
        normalize_origin("example.com/path")


def test_non_loopback_host_requires_the_token(scene_files, tmp_path):
    proc = spawn_view([scene_files["ckpt"], "--host", "0.0.0.0", "--port", "0"], tmp_path)
    try:
        m, text = wait_for_line(proc, r"open http://localhost:(\d+)/\?token=([\w-]+) ")
        assert m is not None, text
        port, token = int(m.group(1)), m.group(2)
        base = f"http://127.0.0.1:{port}/"  # only ever through loopback
        status, body, _ = http_get(base)
        assert status == 403 and len(body) < 200 and b"token" in body
        assert http_get(base + "?token=" + "x" * len(token))[0] == 403
        assert refused_status(lambda: ws_first_message(port, f"http://127.0.0.1:{port}")) == 403
        status, body, hdrs = http_get(base + "?token=" + token)
        assert status == 200 and b"<html" in body[:2000].lower()
        cookie = hdrs["Set-Cookie"].split(";")[0]
        assert cookie == f"rave_token_{port}={token}" and "HttpOnly" in hdrs["Set-Cookie"]
        # the viser client drops the query when it opens its websocket: the cookie carries the token
        assert isinstance(ws_first_message(port, f"http://127.0.0.1:{port}", {"Cookie": cookie}), bytes)
        assert refused_status(lambda: ws_first_message(port, "http://evil.example", {"Cookie": cookie})) == 403
    finally:
        stop_view(proc)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--host", "no-such-host.invalid"], "--host 'no-such-host.invalid'"),
        (["--host", "203.0.113.77"], "cannot listen there"),
        (["--allow-origin", "example.com/x"], "--allow-origin"),
    ],
)
def test_bad_host_or_origin_is_one_line(scene_files, capsys, argv, needle):
    from rave_viewer.cli import view_main

    assert view_main([str(scene_files["ckpt"]), "--port", "0", *argv]) == 2
    assert needle in one_line_error(capsys)


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_bad_port_is_one_line(scene_files, capsys, port):
    from rave_viewer.cli import view_main

    try:
        code = view_main([str(scene_files["ckpt"]), "--port", port])
    except SystemExit as e:  # argparse's own exit
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "argument --port: must be an integer in 0..65535" in err and "Traceback" not in err


def test_share_is_off_unless_asked(app, capfd):
    assert app.server.request_share_url() is None  # a crafted ShareUrlRequest publishes nothing
    assert "refused a share-URL request" in capfd.readouterr().err


def test_capped_sizes():
    assert capped_size(12000, 12000) == (MAX_RENDER_SIDE, MAX_RENDER_SIDE)
    assert capped_size(800, 600) == (800, 600)
    w, h = capped_size(12000, 6000)
    assert w == MAX_RENDER_SIDE and abs(w / h - 2.0) < 0.01
    assert capped_size(0, 0) is None and capped_size(float("nan"), 5) is None and capped_size(-3, 5) is None
    w, h = capped_size(100000, 1)  # an absurd aspect is clamped, never a 0-high frame
    assert h >= 1 and w <= MAX_RENDER_SIDE and w / h <= 10.0 + 1e-6


def test_huge_and_zero_camera_messages_are_bounded_and_survive(app, monkeypatch):
    """The real nerfview render thread: 0x0 keeps the last camera, 12000x12000 renders at most 4096 px."""
    sizes: list[tuple[int, int]] = []

    def fake_render(k, c2w, fov, W, H):
        sizes.append((W, H))
        return torch.zeros(H, W, 3)

    monkeypatch.setattr(app.frames, "render_c2w", fake_render)
    c2w, _, fov = pose_of_test_view(app.source.test_cameras, 0)
    client = FakeClient(app.server.gui, FakeCamera(c2w, fov, 0, 0))  # a 0x0 canvas from the start
    cs = ClientState(app, client)
    try:
        cs.start()
        time.sleep(1.0)
        assert cs.renderer.is_alive()
        client.camera.image_width = client.camera.image_height = 12000
        cs.on_camera(client.camera)
        t0 = time.monotonic()
        while not any(max(s) == MAX_RENDER_SIDE for s in sizes) and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        assert max(max(s) for s in sizes) == MAX_RENDER_SIDE, sizes
        assert all(b.shape[0] <= MAX_RENDER_SIDE and b.shape[1] <= MAX_RENDER_SIDE for b in client.scene.backgrounds)
        client.camera.image_width = client.camera.image_height = 0
        cs.on_camera(client.camera)
        client.camera.position = np.array([np.nan, 0, 0])
        cs.on_camera(client.camera)
        n = len(sizes)
        time.sleep(1.0)
        assert cs.renderer.is_alive()
        client.camera.position = c2w[:3, 3].copy()
        client.camera.image_width, client.camera.image_height = 160, 120
        cs.on_camera(client.camera)
        t0 = time.monotonic()
        while (160, 120) not in sizes[n:] and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        assert (160, 120) in sizes[n:]  # the tab still renders after the degenerate messages
        client.camera.image_width = client.camera.image_height = 12000
        shot = cs.screenshot_image()
        assert shot.shape[:2] == (MAX_RENDER_SIDE, MAX_RENDER_SIDE)
        client.camera.image_width = client.camera.image_height = 0
        assert max(cs.screenshot_image().shape[:2]) <= MAX_RENDER_SIDE
    finally:
        cs.close()
        cs.renderer.join(timeout=10)


def test_safe_camera_state_falls_back_to_the_last_good_one(app):
    c2w, _, fov = pose_of_test_view(app.source.test_cameras, 0)
    cam = FakeCamera(c2w, fov)
    good = safe_camera_state(cam, None)
    assert np.allclose(good.c2w, c2w, atol=1e-6) and good.aspect == pytest.approx(160 / 120)
    cam.wxyz = np.array([np.inf, 0, 0, 0])
    assert safe_camera_state(cam, good) is good
    cam.set_c2w(c2w)
    cam.fov = 0.0
    assert safe_camera_state(cam, good) is good


def test_slider_bursts_coalesce_to_the_latest_value(app):
    """2,000 slider updates from another thread: the readout shows the last one, and few renders ran."""
    c2w, _, fov = pose_of_test_view(app.source.test_cameras, 0)
    client = FakeClient(app.server.gui, FakeCamera(c2w, fov))
    cs = ClientState(app, client)
    renders = {"n": 0}
    real = app.frames.render_c2w

    def counting(*a, **kw):
        renders["n"] += 1
        return real(*a, **kw)

    app.frames.render_c2w = counting
    try:
        cs.start()
        lo, hi = cs.panel.slider.min, cs.panel.slider.max
        values = np.linspace(lo, hi, 2000)[::-1]  # the last value is the lowest rate
        t = threading.Thread(target=lambda: [setattr(cs.panel.slider, "value", float(v)) for v in values])
        t.start()
        t.join(timeout=120)
        assert not t.is_alive()
        t_done = time.monotonic()
        last_k = cs.session.k
        spec = cs.session.spec()
        expected = cs.session.source.select(spec.mode, spec.from_ui(float(values[-1])))
        assert last_k == expected
        deadline = t_done + 5.0
        while f"{last_k:,} of" not in _readout(cs.panel)["Gaussians"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _readout(cs.panel)["Gaussians"].startswith(f"{last_k:,} of")
        assert renders["n"] < len(values) // 2  # coalesced: a render serves many updates, never one each
    finally:
        app.frames.render_c2w = real
        cs.close()
        cs.renderer.join(timeout=10)
