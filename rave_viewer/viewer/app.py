"""The viewer server: viser for GUI and transport, nerfview's per-client render loop, our renderer and panel.

nerfview's render loop drives rendering, with our pacing (:mod:`~rave_viewer.viewer.pacing`: a minimum moving
resolution, a sharp frame at once for a rate change, a per-tab lock). We adapt it further:

* every browser tab gets its own render state, :class:`~rave_viewer.viewer.session.Session` and
  :class:`~rave_viewer.viewer.panel.Panel` (nerfview shares one render state between all clients);
* the render function is guarded: nerfview ends the whole process (``os._exit``) when a render raises, so an
  error becomes a message in the tab's panel and a black frame, and the next render proceeds;
* a frame rendered for a selection that changed meanwhile is dropped (unless the tab has shown nothing for
  :data:`STALE_GRACE_S`, so a continuous drag still shows progress); the pending re-render shows the new one;
* frames reach the browser through a sink that drops them after the tab closed or while the browser renders;
* a frame shows the render (RGB / alpha / depth), a GT comparison, the A/B split or what the slider adds
  (:meth:`ClientState._pixels`); the exact test-view PSNR is computed after the frame is out, not before;
* camera messages are sanitized (:func:`safe_camera_state`): render sizes are capped at
  :data:`MAX_RENDER_SIDE`, a 0x0 canvas or a non-finite pose keeps the last good camera.

Browser rendering (:mod:`~rave_viewer.viewer.browser`) sends one splat node per block of the ranked order, so a
rate change sends only the difference; it is the default above :data:`AUTO_BROWSER_GAUSSIANS` on a CPU server.
The page gets a small key script (:mod:`~rave_viewer.viewer.page_script`): keys on a GUI control never move the
camera, and the shortcuts press the panel's buttons.

Every request passes :mod:`~rave_viewer.viewer.gate` first (Origin/Host checks, the token off loopback), and
viser's share-URL button and handler are off unless ``share=True``.

GUI events never wait for a render: they update the session and hand nerfview a task (which replaces any
task still waiting), and the GUI updates of the render thread go through a small worker thread.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import traceback
import warnings

import numpy as np
import viser
import viser.transforms as vtf
from nerfview import CameraState, RenderTabState, Viewer
from nerfview._renderer import InterruptRenderException, RenderTask

from .browser import AUTO_BROWSER_GAUSSIANS, BlockSplats, block_for, LatestWorker, SplatArrays, splat_arrays
from .frames import FrameRenderer, match_test_view, pose_of_test_view, start_view, to_uint8
from .gate import Gate, gated_viser, is_wildcard_host
from .page_script import keys_on_page
from .pacing import PacedRenderer
from .panel import Panel
from .session import Session, fmt_bytes
from .sources import ViewSource
from .viewpoint import axis_vector, framing_pose, scene_frame

STALE_GRACE_S = 0.5  # show a stale frame anyway if the tab has had no new frame for this long
FPS_WINDOW_S = 2.0  # the FPS readout counts the frames delivered in this window
RECOLOUR_REST_S = 0.3  # browser rendering, SH scenes: re-colour this long after the camera stopped
BLACK = np.zeros((8, 8, 3), np.uint8)  # the server renders on black: so does the browser (a background image)
SPLATS_NAME = "/rave/splats"
MAX_RENDER_SIDE = 4096  # px: the longest side any client message can make the server render (live or screenshot)
MAX_ASPECT = 10.0  # canvas width/height (or height/width) beyond this is clamped
SHARE_SUFFIXES = (".share.viser.studio",)  # where viser's share tunnel serves the page (only with share=True)


def capped_size(width: float, height: float, limit: int = MAX_RENDER_SIDE) -> tuple[int, int] | None:
    """(W, H) scaled down to fit ``limit`` with the aspect kept (clamped to MAX_ASPECT); None for 0 or non-finite."""
    try:
        w, h = float(width), float(height)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(w) and np.isfinite(h)) or w < 1 or h < 1:
        return None
    w, h = min(w, h * MAX_ASPECT), min(h, w * MAX_ASPECT)
    s = min(1.0, limit / max(w, h))
    return max(int(w * s), 1), max(int(h * s), 1)


def safe_camera_state(camera: viser.CameraHandle, last: CameraState | None) -> CameraState:
    """nerfview's CameraState of a client's camera, or ``last`` when the message is degenerate (0 size, NaN)."""
    size = capped_size(camera.image_width, camera.image_height)
    try:
        wxyz = np.asarray(camera.wxyz, dtype=np.float64)
        pos = np.asarray(camera.position, dtype=np.float64)
        fov = float(camera.fov)
    except (TypeError, ValueError):
        wxyz, pos, fov = np.full(4, np.nan), np.full(3, np.nan), float("nan")
    ok = (
        size is not None and wxyz.shape == (4,) and pos.shape == (3,) and np.isfinite(wxyz).all()
        and np.linalg.norm(wxyz) > 1e-6 and np.isfinite(pos).all() and np.isfinite(fov) and 1e-3 < fov < 3.1
    )  # fmt: skip
    if not ok:
        if last is not None:
            return last
        size, wxyz, pos, fov = (1, 1), np.array([1.0, 0, 0, 0]), np.zeros(3), 1.0
    R = vtf.SO3(wxyz / np.linalg.norm(wxyz)).as_matrix()
    c2w = np.concatenate([np.concatenate([R, pos[:, None]], 1), [[0, 0, 0, 1]]], 0)
    return CameraState(fov=fov, aspect=size[0] / size[1], c2w=c2w)


def _no_render(*_):  # nerfview's global render_fn is never used: each client has its own
    raise InterruptRenderException()


class _ClientView:
    """The part of a nerfview ``Viewer`` that its ``Renderer`` thread uses, for one client."""

    def __init__(self, viewer: Viewer, render_fn, camera_state):
        self._viewer = viewer
        self.render_fn = render_fn
        self.render_tab_state = RenderTabState()
        self.render_tab_state.viewer_res = min(self.render_tab_state.viewer_res, MAX_RENDER_SIDE)
        self._camera_state = camera_state

    @property
    def state(self) -> str:
        return self._viewer.state

    def get_camera_state(self, client):
        return self._camera_state()

    def _after_render(self) -> None:
        pass


class _FrameSink:
    """Where nerfview's Renderer delivers frames: drops them once the tab closed or renders in the browser."""

    def __init__(self, cs: "ClientState"):
        self._cs = cs

    def set_background_image(self, image, **kw) -> None:
        cs = self._cs
        if cs.closed or cs.session.snapshot().browser:
            return
        with warnings.catch_warnings():  # a tab that closed while its frame was encoded: nothing to deliver
            warnings.filterwarnings("ignore", message=".*closed connection.*", category=UserWarning)
            cs.client.scene.set_background_image(image, **kw)
        cs.delivered_frames += 1


class _RendererClient:
    """The client as nerfview's Renderer sees it: the real one, with frames going through a :class:`_FrameSink`."""

    def __init__(self, cs: "ClientState"):
        self._client = cs.client
        self.scene = _FrameSink(cs)

    def __getattr__(self, name):
        return getattr(self._client, name)


class _NerfviewViewer(Viewer):
    """nerfview's Viewer without its shared render panel; client lifecycle goes to the app."""

    def __init__(self, server: viser.ViserServer, app: "ViewerApp"):
        self._app = app
        with warnings.catch_warnings():  # nerfview 0.1.3 passes viser's deprecated control_layout
            warnings.filterwarnings("ignore", message=".*control_layout.*", category=DeprecationWarning)
            super().__init__(server, render_fn=_no_render, mode="rendering")

    def _init_rendering_tab(self) -> None:
        self.render_tab_state = RenderTabState()
        self._rendering_tab_handles = {}
        self._rendering_folder = None

    def _populate_rendering_tab(self) -> None:
        pass

    def _connect_client(self, client: viser.ClientHandle) -> None:
        self._app._connect(client)

    def _disconnect_client(self, client: viser.ClientHandle) -> None:
        self._app._disconnect(client)

    def rerender(self, _=None) -> None:
        for c in list(self._app.clients.values()):
            c.request_render()


class ClientState:
    """One browser tab: session, panel, nerfview render thread, and the tab's side of browser rendering."""

    def __init__(self, app: "ViewerApp", client: viser.ClientHandle):
        self.app, self.client = app, client
        self.session = Session(app.source, app.start)
        if app.auto_browser:
            self.session.set_browser(True)
        self._last_camera: CameraState | None = None
        self.view = _ClientView(app.nerfview, self._render_guarded, self.camera_state)
        self.fps: float | None = None  # frames delivered per second (over FPS_WINDOW_S)
        self.frame_ms: float | None = None  # render time of the last frame
        self._times: collections.deque[float] = collections.deque()
        self.last_frame = 0.0
        self.frames_shown = 0
        self.delivered_frames = 0  # frames that reached the browser (the sink's count)
        self.camera_messages = 0  # camera updates received from the browser
        self.errors = 0
        self._frame_size = (0, 0)
        self._ui_dirty = False
        self._psnr_due = None
        self._error: str | None = None
        self.up = np.asarray(app.up, dtype=np.float64)
        self.ui_worker = LatestWorker("rave-view-ui")
        self.splat_worker = LatestWorker("rave-view-splats")
        self.splats: BlockSplats | None = None
        self._rest_timer: threading.Timer | None = None
        self.keyframes: list[tuple[np.ndarray, np.ndarray, float]] = []  # (position, look-at, fov) for videos
        self.exporting = False
        self.panel = Panel(client.gui, self.session, self, backend=app.frames.backend, up_reason=app.up_reason)
        self.closed = False
        self.renderer = PacedRenderer(self.view, _RendererClient(self), on_frame=self._on_frame,
                                      jpeg_quality=lambda: self.panel.jpeg_quality)  # fmt: skip

    @property
    def splat_handle(self):  # (the browser's splats, None when the server renders)
        return self.splats

    def start(self) -> None:
        self.client.camera.on_update(self.on_camera)
        self.on_camera(self.client.camera)
        if self.session.snapshot().browser:
            self.set_browser_rendering(True)
        self.renderer.start()

    def close(self) -> None:
        self.closed = True
        self.renderer.running = False
        self.renderer._render_event.set()
        if self._rest_timer is not None:
            self._rest_timer.cancel()
        self.ui_worker.stop()
        self.splat_worker.stop()

    # -- PanelHost ------------------------------------------------------------------------------------------
    def camera_state(self) -> CameraState:
        self._last_camera = safe_camera_state(self.client.camera, self._last_camera)
        return self._last_camera

    def _apply_resolution(self, camera) -> None:
        """Sharp frames at the canvas size (capped) x the panel's resolution share."""
        size = capped_size(camera.image_width, camera.image_height)
        if size is not None:
            scale = getattr(getattr(self, "panel", None), "resolution_scale", 1.0)
            self.view.render_tab_state.viewer_res = max(int(max(size) * scale), 1)

    def request_render(self) -> None:
        self._apply_resolution(self.client.camera)
        if self.session.snapshot().browser:
            self._sync_browser()
        else:
            self.renderer.submit(RenderTask("rerender", self.camera_state()))

    def send_file(self, name: str, data: bytes) -> None:
        self.client.send_file_download(name, data, save_immediately=True)

    def notify(self, title: str, body: str, error: bool = False) -> None:
        self.client.add_notification(
            title, body, color="red" if error else None, auto_close_seconds=None if error else 4.0
        )

    def snap_to_view(self, view: int) -> None:
        c2w, fwd, fov_y = pose_of_test_view(self.app.source.test_cameras, view)
        pos = c2w[:3, 3]
        dist = max(float(np.dot(self.app.centre - pos, fwd)), 0.1 * self.app.radius)
        cam = self.client.camera
        with self.client.atomic():
            cam.fov = fov_y
            cam.up_direction = tuple(float(x) for x in self.up)
            cam.position = pos
            cam.look_at = pos + fwd * dist

    def set_browser_rendering(self, on: bool) -> None:
        if on:
            self.client.scene.set_background_image(BLACK, format="png")  # the server's background colour
        self._sync_browser()
        if not on:
            self.renderer.submit(RenderTask("rerender", self.camera_state()))

    # -- camera framing ---------------------------------------------------------------------------------------
    def set_up(self, choice: str) -> None:
        """The up axis: "auto" (the app's automatic one) or "+X" .. "-Z"; the view is re-framed around it."""
        self.up = np.asarray(self.app.up if choice == "auto" else axis_vector(choice), dtype=np.float64)
        self.reset_view(keep_test_view=False)

    def _place(self, position: np.ndarray, look_at: np.ndarray, fov: float | None = None) -> None:
        cam = self.client.camera
        with self.client.atomic():
            if fov is not None:
                cam.fov = fov
            cam.up_direction = tuple(float(x) for x in self.up)
            cam.position = tuple(float(x) for x in position)
            cam.look_at = tuple(float(x) for x in look_at)

    def frame_scene(self) -> None:
        """Centre the scene's bounding sphere in the view, keeping the viewing direction."""
        cam = self.client.camera
        fwd = np.asarray(cam.look_at, float) - np.asarray(cam.position, float)
        pos, look = framing_pose(self.app.frame, self.up, float(cam.fov), float(cam.aspect), forward=fwd)
        self._place(pos, look)

    def reset_view(self, keep_test_view: bool = True) -> None:
        """Back to the first camera: the start test view when there are test views, else the scene framed."""
        if keep_test_view and self.app.source.test_cameras is not None:
            self.snap_to_view(self.app.start_view)
            return
        cam = self.client.camera
        pos, look = framing_pose(self.app.frame, self.up, float(cam.fov), float(cam.aspect))
        self._place(pos, look)

    # -- rate-sweep video ----------------------------------------------------------------------------------------
    def add_keyframe(self) -> int:
        cam = self.client.camera
        self.keyframes.append((np.asarray(cam.position, float).copy(), np.asarray(cam.look_at, float).copy(),
                               float(cam.fov)))  # fmt: skip
        return len(self.keyframes)

    def export_video(self, n_frames: int, size: tuple[int, int], fps: int = 24) -> threading.Thread:
        """Render the rate sweep along the keyframes (none: one turn around the scene) on a thread of its own;
        the MP4 is downloaded when done, a failure is a message in the panel (the server keeps serving)."""
        from . import video

        if self.exporting:
            raise RuntimeError("a video export is already running in this tab")
        cam = self.client.camera
        if self.keyframes:
            poses = video.camera_path(list(self.keyframes), n_frames)
        else:
            poses = video.orbit_path(self.app.centre, self.up, np.asarray(cam.position, float), float(cam.fov),
                                     n_frames)  # fmt: skip
        self.exporting = True

        def job():
            import tempfile
            from pathlib import Path

            try:
                with tempfile.TemporaryDirectory(prefix="rave-view-") as tmp:
                    out = Path(tmp) / "sweep.mp4"
                    video.write_sweep(out, self.app.frames, self.app.source, poses, self.up, size, fps,
                                      progress=self.panel.video_progress)  # fmt: skip
                    data = out.read_bytes()
                name = f"{self.app.source.name}_rate_sweep_{n_frames}f_{size[0]}x{size[1]}.mp4"
                self.send_file(name, data)
                self.panel.video_done(f"Video sent: {name} ({n_frames} frames, {n_frames / fps:.1f} s).")
            except Exception as e:  # a failed export is a message, never a stopped server
                traceback.print_exc()
                self.panel.video_done(f"Video export failed: {type(e).__name__}: {' '.join(str(e).split())}",
                                      error=True)  # fmt: skip
            finally:
                self.exporting = False

        t = threading.Thread(target=job, name="rave-view-video", daemon=True)
        t.start()
        return t

    def next_test_view(self) -> None:
        cams = self.app.source.test_cameras
        if cams is None or not len(cams):
            self.notify("No test views", "This file holds no test views.")
            return
        v = self.session.snapshot().view
        self.snap_to_view(0 if v is None else (v + 1) % len(cams))

    def screenshot_image(self) -> np.ndarray:
        """The current view at the browser canvas' resolution (server-rendered, at most MAX_RENDER_SIDE px)."""
        cam = self.client.camera
        W, H = capped_size(cam.image_width, cam.image_height) or capped_size(*self._frame_size) or (640, 480)
        st = self.camera_state()
        return self._pixels(self.session.snapshot(), st.c2w, st.fov, W, H)

    # -- browser rendering ------------------------------------------------------------------------------------
    def _sync_browser(self) -> None:
        """Bring the browser's splats in line with the session (on the splat worker: newest request wins)."""
        self.splat_worker.submit(self._browser_job)

    def _browser_job(self) -> None:
        snap = self.session.snapshot()
        if not snap.browser:
            self._remove_splats()
            return
        if self.splats is None:
            self.splats = BlockSplats(self.client.scene, self.app.splats(), self.app.source.gaussians,
                                      block=self.app.splat_block, name=SPLATS_NAME, radius=self.app.radius)
            self.splats.recolour(np.asarray(self.client.camera.position, float), force=True)
            self.client.scene.set_background_image(BLACK, format="png")  # in case a server frame slipped in
        if snap.k != self.splats.k:
            t0 = time.perf_counter()
            self.splats.show(snap.k)
            self.panel.browser_done(snap.k, self.splats.bytes_sent, time.perf_counter() - t0)
        # no server frames: the exact test-view PSNR is computed here (a small test-view render)
        if snap.view is not None and self.app.frames.cams is not None and self.session.view_psnr() is None:
            self.session.record_view_psnr(snap.k, snap.view, self.app.frames.test_psnr(snap.k, snap.view))
            self.panel.refresh()

    def _remove_splats(self) -> None:
        if self.splats is not None:
            self.splats.remove()
            self.splats = None

    def _recolour_job(self) -> None:
        if self.splats is not None and self.session.snapshot().browser:
            self.splats.recolour(np.asarray(self.client.camera.position, float))

    def _camera_rests(self) -> None:
        self.splat_worker.submit(self._recolour_job)

    # -- camera -----------------------------------------------------------------------------------------------
    def on_camera(self, camera: viser.CameraHandle) -> None:
        self.camera_messages += 1
        self._apply_resolution(camera)
        st = self.camera_state()
        view = match_test_view(st.c2w, self.app.source.test_cameras, self.app.radius)
        if self.session.set_view(view):
            self.panel.show_view(view)
            if view is not None and self.session.snapshot().browser:
                self._sync_browser()
        if self.session.snapshot().browser:
            if self._rest_timer is not None:
                self._rest_timer.cancel()
            self._rest_timer = threading.Timer(RECOLOUR_REST_S, self._camera_rests)
            self._rest_timer.daemon = True
            self._rest_timer.start()
            return
        self.renderer.submit(RenderTask("move", st))

    # -- rendering (runs on nerfview's render thread, under its sys.settrace interruption) --------------------
    def _render_guarded(self, camera_state, rts: RenderTabState) -> np.ndarray:
        try:
            return self._render_frame(camera_state, rts)
        except InterruptRenderException:
            raise
        except Exception as e:  # nerfview would os._exit(1): show it and keep serving instead
            traceback.print_exc()
            self.errors += 1
            self._error = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
            self.ui_worker.submit(self._update_ui)
            return np.zeros((max(int(rts.viewer_height), 1), max(int(rts.viewer_width), 1), 3), np.uint8)

    def _render_frame(self, camera_state, rts: RenderTabState) -> np.ndarray:
        snap = self.session.snapshot()
        if snap.browser:
            raise InterruptRenderException()  # the browser renders: send no server frames
        W, H = capped_size(rts.viewer_width, rts.viewer_height) or (1, 1)
        frames = self.app.frames
        t0 = time.perf_counter()
        img = self._pixels(snap, camera_state.c2w, camera_state.fov, W, H)
        dt = max(time.perf_counter() - t0, 1e-6)
        now = time.monotonic()
        stale = not self.session.is_current(snap.version) or self.session.snapshot().browser
        if stale and (now - self.last_frame < STALE_GRACE_S or self.session.snapshot().browser):
            raise InterruptRenderException()  # drop it: the re-render for the new selection is queued
        self._times.append(now)
        while self._times and now - self._times[0] > FPS_WINDOW_S:
            self._times.popleft()
        span = self._times[-1] - self._times[0] if len(self._times) > 1 else 0.0
        self.fps = (len(self._times) - 1) / span if span > 0 else None  # frames delivered, not 1 / render time
        self.frame_ms = 1e3 * dt
        self.last_frame = now
        self.frames_shown += 1
        self._frame_size = (W, H)
        self._error = None
        if snap.view is not None and frames.cams is not None and self.session.view_psnr() is None:
            self._psnr_due = snap  # exact PSNR after the frame is out, not before it (on the UI worker)
        self.ui_worker.submit(self._update_ui)
        return img

    def _pixels(self, snap, c2w: np.ndarray, fov: float, W: int, H: int) -> np.ndarray:
        """The frame the tab's settings ask for: render, GT comparison, A/B split or what the slider adds."""
        frames = self.app.frames
        if snap.view is not None and snap.compare != "off":
            return frames.comparison(snap.k, snap.view, snap.compare, W, H)
        if snap.show == "A/B split" and self.app.source.has_rate_control:
            a, b = self.session.selection(), self.session.selection_b()
            return frames.render_split(snap.k, snap.k_b, c2w, fov, W, H, labels=(self._label("A", a),
                                                                                   self._label("B", b)))
        if snap.show == "what the slider adds" and self.app.source.has_rate_control:
            return to_uint8(frames.render_adds(snap.k, snap.k_b, c2w, fov, W, H))
        return to_uint8(frames.render_mode(snap.k, c2w, fov, W, H, snap.render_mode))

    @staticmethod
    def _label(name: str, sel) -> str:
        size = fmt_bytes(sel.nbytes) if sel.nbytes is not None else f"{sel.k:,} Gaussians"
        return f"{name}: {size}" + (f", {sel.psnr:.2f} dB" if sel.psnr is not None else "")

    def _view_psnr(self, snap) -> None:
        """Exact PSNR of the selection on the test view (a small test-view render), then the readouts."""
        if self.closed or not self.session.is_current(snap.version):
            return
        self.session.record_view_psnr(snap.k, snap.view, self.app.frames.test_psnr(snap.k, snap.view))
        self.panel.refresh()

    def _on_frame(self, W: int, H: int, seconds: float, sharp: bool) -> None:
        pass  # (the FPS readout is kept in _render_frame; the hook is for benchmarks)

    def _update_ui(self) -> None:
        """GUI side of a finished render (runs on the UI worker, outside nerfview's traced render call)."""
        snap, self._psnr_due = self._psnr_due, None
        if snap is not None:
            self._view_psnr(snap)
        if self._error is not None:
            self.panel.show_error(self._error)
        elif self.frame_ms is not None:
            self.panel.frame_done(self.fps, self.frame_ms, *self._frame_size)
        if self._ui_dirty:
            self._ui_dirty = False
            self.panel.refresh()


class ViewerApp:
    """A running viewer for one source: ``ViewerApp(open_source(path)).url``; ``stop()`` shuts it down."""

    def __init__(
        self, source: ViewSource, host: str = "127.0.0.1", port: int = 8080, backend: str = "auto",
        verbose: bool = False, allow_origins: tuple[str, ...] | list[str] = (), token: str | None = None,
        share: bool = False, start: tuple[str, float] | None = None, splat_block: int | None = None,
        browser: bool | None = None,
    ):  # fmt: skip
        """``token``: required on every request (the printed URL carries it); ``allow_origins``: pages besides
        the viewer's own that may connect; ``share``: keep viser's share-URL button (publishes the viewer);
        ``start``: the first selection of every tab, e.g. ("rate", 2e6); ``splat_block``: Gaussians per splat
        node in browser rendering (None: :func:`~rave_viewer.viewer.browser.block_for` the scene); ``browser``: tabs start in browser rendering (None: above
        :data:`AUTO_BROWSER_GAUSSIANS` on a CPU server)."""
        self.splat_block = int(splat_block or block_for(source.n))
        self.source = source
        self.share = share
        self.start = start  # (mode, raw target) every new tab starts at; None: the source's knee (default_k)
        self.gate = Gate(host, allow_origins, token, extra_origin_suffixes=SHARE_SUFFIXES if share else ())
        self.frames = FrameRenderer(source, backend)
        self.frame = scene_frame(source)
        self.centre, self.radius, self.up, self.up_reason = self.frame.centre, self.frame.radius, self.frame.up, \
            self.frame.up_reason
        #: the test view new tabs open on (and "reset view" returns to): median elevation, see frames.start_view
        self.start_view = start_view(source.test_cameras, self.up) if source.test_cameras is not None else 0
        #: tabs start in browser rendering for large scenes on a CPU server (the user can switch back)
        self.auto_browser = (source.n > AUTO_BROWSER_GAUSSIANS and self.frames.backend == "cpu") if browser is None \
            else bool(browser)
        if self.auto_browser and source.browser_note:  # (e.g. view-dependent anchors): the server renders
            if browser:
                print(f"rave-view: {source.browser_note}", file=sys.stderr)
            self.auto_browser = False
        self.clients: dict[int, ClientState] = {}
        self._lock = threading.Lock()
        self._splats: SplatArrays | None = None
        if source.kind == "ckpt":  # quantize once now; exact sizes = the ckpt's chunk table + one partial chunk
            source.bytes_of(min(source.min_count + 1, source.n))
        self.frames.warm_up()  # the first render loads the rasterizer and allocates: do it before serving
        with gated_viser(self.gate), keys_on_page():  # (the gate's checks run before the page is served)
            self.server = viser.ViserServer(host=host, port=port, verbose=verbose)
        if not share:  # a crafted ShareUrlRequest must not publish the viewer either
            self.server.request_share_url = self._share_refused  # type: ignore[method-assign]
        self.server.scene.set_up_direction(tuple(float(x) for x in self.up))
        self._set_initial_camera()
        self.nerfview = _NerfviewViewer(self.server, self)
        self.server.gui.set_panel_label("RAVE viewer")
        self.server.gui.configure_theme(
            control_width="large", dark_mode=True, brand_color=(255, 211, 105), show_share_button=share
        )

    @staticmethod
    def _share_refused(*_a, **_k) -> None:
        print("rave-view: refused a share-URL request (start with --share to allow it)", file=sys.stderr)
        return None

    @property
    def host(self) -> str:
        return self.server.get_host()

    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        host = self.host
        host = "localhost" if is_wildcard_host(host) else host
        host = f"[{host}]" if ":" in host else host
        token = f"?token={self.gate.token}" if self.gate.token else ""
        return f"http://{host}:{self.port}/{token}"

    def splats(self) -> SplatArrays:
        with self._lock:
            if self._splats is None:
                self._splats = splat_arrays(self.source.gaussians)
            return self._splats

    def _set_initial_camera(self) -> None:
        ic = self.server.initial_camera
        cams = self.source.test_cameras
        ic.up = tuple(float(x) for x in self.up)
        if cams is not None:
            c2w, fwd, fov_y = pose_of_test_view(cams, self.start_view)
            pos = c2w[:3, 3]
            dist = max(float(np.dot(self.centre - pos, fwd)), 0.1 * self.radius)
            ic.fov = fov_y
            ic.position = tuple(pos)
            ic.look_at = tuple(pos + fwd * dist)
        else:
            pos, look = framing_pose(self.frame, self.up, float(ic.fov), 16 / 9)
            ic.look_at = tuple(float(x) for x in look)
            ic.position = tuple(float(x) for x in pos)

    def _connect(self, client: viser.ClientHandle) -> None:
        cs = ClientState(self, client)
        with self._lock:
            self.clients[client.client_id] = cs
        cs.start()

    def _disconnect(self, client: viser.ClientHandle) -> None:
        with self._lock:
            cs = self.clients.pop(client.client_id, None)
        if cs is not None:
            cs.close()

    def stop(self) -> None:
        with self._lock:
            clients = list(self.clients.values())
            self.clients.clear()
        for cs in clients:
            cs.close()
        for cs in clients:  # let a render in flight finish before the connections close
            cs.renderer.join(timeout=5.0) if cs.renderer.is_alive() else None
        self.server.stop()


__all__ = ["ClientState", "STALE_GRACE_S", "ViewerApp"]
