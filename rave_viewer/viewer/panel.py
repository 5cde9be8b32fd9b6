"""The control panel of one browser tab: bitrate slider, readouts, RD plot, view controls and export buttons.

The panel turns GUI events into :class:`~rave_viewer.viewer.session.Session` changes and asks its host (the
app, or a test double) to render, move the camera or send files. Callbacks run on viser's thread pool, so
they are serialised by a lock and always read the *latest* widget value (events can arrive out of order).
Values the panel sets itself fire callbacks synchronously in the same thread; a thread-local flag mutes them.
"""

from __future__ import annotations

import threading
import traceback
from typing import Protocol

import numpy as np

from . import exports
from .page_script import SHORTCUTS
from .session import COMPARE_MODES, MB, SHOW_MODES, Session, fmt_bytes, fmt_int, markdown_table, readout_rows
from .frames import RENDER_MODES
from .viewpoint import UP_CHOICES

FREE_CAMERA = "free camera"
LABEL = {key: label for key, label, _ in SHORTCUTS}  # button labels the page's shortcuts press
COMPARE_NEEDS_VIEW = (
    "_Compare with GT needs the camera on a test view (only they have ground truth): pick one under "
    "**Test view** or press N. Until then the view shows the render._"
)


class PanelHost(Protocol):
    """What the panel needs from its surroundings (the app implements it per client)."""

    def request_render(self) -> None: ...

    def send_file(self, name: str, data: bytes) -> None: ...

    def notify(self, title: str, body: str, error: bool = False) -> None: ...

    def snap_to_view(self, view: int) -> None: ...

    def set_browser_rendering(self, on: bool) -> None: ...

    def screenshot_image(self) -> np.ndarray: ...

    def frame_scene(self) -> None: ...

    def reset_view(self) -> None: ...

    def set_up(self, choice: str) -> None: ...

    def next_test_view(self) -> None: ...

    def add_keyframe(self) -> int: ...

    def export_video(self, n_frames: int, size: tuple[int, int], fps: int = 24): ...


def view_options(session: Session) -> list[str]:
    cams = session.source.test_cameras
    if cams is None:
        return []
    names = cams.names if cams.names and len(cams.names) == len(cams) else [f"test {i}" for i in range(len(cams))]
    return [FREE_CAMERA] + [f"{i}: {n}" for i, n in enumerate(names)]


class Panel:
    """Builds the GUI for one tab with ``gui`` (a viser GuiApi: ``client.gui``, or ``server.gui`` in tests)."""

    def __init__(self, gui, session: Session, host: PanelHost, backend: str = "cpu", up_reason: str = ""):
        self.gui, self.session, self.host, self.backend = gui, session, host, backend
        self.up_reason = up_reason
        self.source = session.source
        self._lock = threading.RLock()
        self._tl = threading.local()
        self._views = view_options(session)
        self._status = {"fps": None, "ms": None, "size": None, "mode": "browser" if session.browser else "server",
                        "browser": ""}  # fmt: skip
        self.error: str | None = None
        self.typed_cap: int | None = None  # bytes of the rate last typed in the number box (a cap), until moved
        self._build()
        self.refresh()

    # -- construction ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        gui, src = self.gui, self.source
        n_lv = f", {src.n_levels} levels" if src.n_levels else ""
        self.title = gui.add_markdown(
            f"**{src.path.name}** ({src.kind}): {fmt_int(src.n)} {src.unit_label}{n_lv}. "
            "Sizes in KB = 10^3 and MB = 10^6 bytes."
        )
        self.note = gui.add_markdown(f"_{src.note}_", visible=bool(src.note))
        self.mode = self.slider = self.number = self.readout = self.plot = None
        if src.has_rate_control:
            spec = self.session.spec()
            with gui.add_folder("Bitrate"):
                self.mode = gui.add_dropdown(
                    "Target by", [src.mode_labels[m] for m in src.modes],
                    initial_value=src.mode_labels[self.session.mode],
                    hint="What the slider and the number field set: rate (Eq. 3), Gaussian count, or mean PSNR.",
                )  # fmt: skip
                value = spec.to_ui(self.session.target)
                self.slider = gui.add_slider(
                    spec.label, min=spec.lo, max=spec.hi, step=spec.step, initial_value=value,
                    hint="Drag (or use the arrow keys) to re-select the Gaussians at this target.",
                )  # fmt: skip
                self.number = gui.add_number(
                    f"Type {spec.label}", value, min=spec.lo, max=spec.hi, step=spec.step,
                    hint="Type a target. A typed rate is a cap: the most Gaussians whose file fits in it "
                         "(exact bytes below). Other targets are clamped to the range the file holds.",
                )  # fmt: skip
                self.readout = gui.add_markdown("")
                self.btn_down = gui.add_button(LABEL["["], hint="One rate step down (1/50 of the range).")
                self.btn_up = gui.add_button(LABEL["]"], hint="One rate step up (1/50 of the range).")
                self.btn_down.on_click(lambda _: self._guarded(lambda: self.on_step(-1)))
                self.btn_up.on_click(lambda _: self._guarded(lambda: self.on_step(+1)))
                self.plot = self._add_plot()
            with gui.add_folder("A/B: only RAVE can"):
                self.show = gui.add_dropdown(
                    "View shows", list(SHOW_MODES), initial_value="render",
                    hint="A/B split: the left half at A (the slider above), the right half at B, same camera. "
                         "What the slider adds: the Gaussians between A and B in magenta over the rest.",
                )  # fmt: skip
                self.slider_b = gui.add_slider(
                    f"B: {spec.label}", min=spec.lo, max=spec.hi, step=spec.step,
                    initial_value=spec.to_ui(self.session.target_b), hint="The second operating point (B).",
                )  # fmt: skip
                self.btn_split = gui.add_button(LABEL["b"], hint="Toggle the A/B split screen.")
                self.ab_readout = gui.add_markdown("")
            self.show.on_update(lambda _: self._guarded(self.on_show))
            self.slider_b.on_update(lambda _: self._guarded(self.on_slider_b))
            self.btn_split.on_click(lambda _: self._guarded(self.on_toggle_split))
            self.mode.on_update(lambda _: self._guarded(self.on_mode))
            self.slider.on_update(lambda _: self._guarded(self.on_slider))
            self.number.on_update(lambda _: self._guarded(self.on_number))
        else:
            self.readout = gui.add_markdown("")
            self.show = self.slider_b = self.ab_readout = None
        with gui.add_folder("View"):
            self.view = self.compare = None
            if self._views:
                self.view = gui.add_dropdown(
                    "Test view", self._views, initial_value=FREE_CAMERA,
                    hint="Snap the camera to a test view (exact PSNR against its ground truth).",
                )  # fmt: skip
                self.compare = gui.add_dropdown(
                    "Compare with GT", list(COMPARE_MODES), initial_value="off",
                    hint="On a test view: show the render next to its ground truth, or their difference.",
                )  # fmt: skip
                self.compare_note = gui.add_markdown(COMPARE_NEEDS_VIEW, visible=False)
                self.btn_next = gui.add_button(LABEL["n"], hint="Snap the camera to the next test view.")
                self.view.on_update(lambda _: self._guarded(self.on_view))
                self.compare.on_update(lambda _: self._guarded(self.on_compare))
                self.btn_next.on_click(lambda _: self._guarded(self.host.next_test_view))
            self.up = gui.add_dropdown(
                "Up axis", list(UP_CHOICES), initial_value="auto",
                hint=f"Which way is up for orbiting. auto: {self.up_reason or 'from the scene'}.",
            )  # fmt: skip
            self.up.on_update(lambda _: self._guarded(lambda: self.host.set_up(self.up.value)))
            self.btn_frame = gui.add_button(LABEL["f"], hint="Centre the whole scene in the view.")
            self.btn_reset = gui.add_button(LABEL["r"], hint="Back to the first camera.")
            self.btn_frame.on_click(lambda _: self._guarded(self.host.frame_scene))
            self.btn_reset.on_click(lambda _: self._guarded(self.host.reset_view))
            self.browser = gui.add_checkbox(
                "Browser rendering", bool(self.session.browser), disabled=bool(src.browser_note),
                hint=src.browser_note or "Render in the browser (WebGL splats; a rate change sends only the Gaussians "
                     "it adds; SH colour evaluated for the camera when it rests) instead of on the server.",
            )  # fmt: skip
            self.browser.on_update(lambda _: self._guarded(self.on_browser))
            self.jpeg = gui.add_slider("JPEG quality", min=40, max=95, step=5, initial_value=85,
                                       hint="Quality of the server's still frames (moving frames: at most 60).")
            self.jpeg.on_update(lambda _: self._guarded(self.host.request_render))
            self.render_mode = gui.add_dropdown(
                "Render", list(RENDER_MODES), initial_value="RGB",
                hint="Server frames: colour, accumulated opacity (alpha), or depth (near = bright).",
            )  # fmt: skip
            self.render_mode.on_update(lambda _: self._guarded(self.on_render_mode))
            self.resolution = gui.add_slider("Resolution %", min=25, max=100, step=5, initial_value=100,
                                             hint="Sharp server frames at this share of the canvas size.")
            self.resolution.on_update(lambda _: self._guarded(self.host.request_render))
            self.status = gui.add_markdown("")
            self.error_md = gui.add_markdown("", visible=False)
        with gui.add_folder("Export"):
            self.btn_shot = gui.add_button("Screenshot", hint="PNG of the current view at full resolution.")
            self.btn_shot.on_click(lambda _: self._guarded(self.on_screenshot))
            self.btn_rd = self.btn_sel = None
            if self.source.rd_points() is not None:
                self.btn_rd = gui.add_button("Export RD", hint="RD table (CSV) and plot (PNG) with the current point.")
                self.btn_rd.on_click(lambda _: self._guarded(self.on_export_rd))
            if src.has_rate_control:
                self.btn_sel = gui.add_button(
                    "Export at this rate", hint="The current selection as a .rave stream and a standard .ply."
                )
                self.btn_sel.on_click(lambda _: self._guarded(self.on_export_selection))
        self.btn_video = None
        if src.has_rate_control:
            with gui.add_folder("Rate-sweep video", expand_by_default=False):
                self.video_frames = gui.add_number("Frames", 48, min=2, max=1200, step=1,
                                                   hint="Frames of the MP4 (24 per second).")
                self.btn_key = gui.add_button("Add keyframe", hint="The current camera becomes the next keyframe.")
                self.btn_key_clear = gui.add_button("Clear keyframes")
                self.btn_video = gui.add_button(
                    "Export rate-sweep MP4",
                    hint="Renders the keyframed path (none: one turn around the scene) while the rate sweeps "
                         "from the lowest to the highest point, with bytes and PSNR on every frame.",
                )  # fmt: skip
                self.video_md = gui.add_markdown("_No keyframes: the video turns once around the scene._")
            self.btn_key.on_click(lambda _: self._guarded(self.on_add_keyframe))
            self.btn_key_clear.on_click(lambda _: self._guarded(self.on_clear_keyframes))
            self.btn_video.on_click(lambda _: self._guarded(self.on_export_video))
        with gui.add_folder("Help", expand_by_default=False):
            keys = "\n".join(f"| `{k.upper() if k.isalpha() else k}` | {what} |" for k, _, what in SHORTCUTS)
            gui.add_markdown(
                "| key | |\n|:--|:--|\n" + keys + "\n| W A S D Q E, arrows | move / turn the camera |\n\n"
                "Keys act when the 3D view has the focus (click it first); on a focused control (slider, "
                "box) they only change that control. Drag: orbit; right-drag: pan; wheel: zoom."
            )

    def _plot_unit(self) -> tuple[float, str]:
        pts = self.source.rd_points()
        return (MB, "MB") if pts is not None and pts[0].max() >= MB else (1e3, "KB")

    def _plot_data(self) -> tuple[np.ndarray, ...]:
        xb, yp = self.source.rd_points()
        sel = self.session.selection()
        scale, _ = self._plot_unit()
        x, y = xb / scale, yp.copy()
        cur = np.full_like(y, np.nan)
        if sel.nbytes is not None and sel.psnr is not None:  # insert the current point into the curve
            cx = sel.nbytes / scale
            i = int(np.searchsorted(x, cx))
            x, y, cur = np.insert(x, i, cx), np.insert(y, i, sel.psnr), np.insert(cur, i, sel.psnr)
        return x, y, cur

    def _add_plot(self):
        if self.source.rd_points() is None:
            return None
        _, unit = self._plot_unit()
        x, y, cur = self._plot_data()
        lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
        pad = max(0.05 * (hi - lo), 0.05)
        return self.gui.add_uplot(
            data=(x, y, cur),
            series=(
                {"label": f"size [{unit}]"},
                {"label": "PSNR [dB]", "stroke": "#1f77b4", "width": 2},
                {"label": "current", "stroke": "#d62728", "width": 0, "auto": False,
                 "points": {"show": True, "size": 11, "fill": "#d62728", "stroke": "#d62728"}},
            ),  # fmt: skip
            scales={"x": {"time": False}, "y": {"range": (lo - pad, hi + pad)}},
            axes=({"label": f"size [{unit}]"}, {"label": "PSNR [dB]"}),
            title="RD curve (test-view mean)",
            aspect=1.4,
        )

    # -- helpers --------------------------------------------------------------------------------------------
    def _quiet(self) -> bool:
        return getattr(self._tl, "quiet", False)

    def _set_quietly(self, handle, **props) -> None:
        self._tl.quiet = True
        try:
            for k, v in props.items():
                setattr(handle, k, v)
        finally:
            self._tl.quiet = False

    def _guarded(self, fn) -> None:
        """Run a callback; a failure becomes a notification (the server keeps serving)."""
        if self._quiet():
            return
        try:
            with self._lock:
                fn()
        except Exception as e:
            traceback.print_exc()
            self.host.notify("Action failed", f"{type(e).__name__}: {e}", error=True)

    # -- callbacks (public so tests can drive them without a browser) ---------------------------------------
    def on_mode(self) -> None:
        self.typed_cap = None
        spec = self.session.set_mode(self.source.mode_of(self.mode.value))
        value = spec.to_ui(self.session.target)
        for h, label in ((self.slider, spec.label), (self.number, f"Type {spec.label}")):
            # widen first so the new value is always inside [min, max] while the range changes
            self._set_quietly(h, min=min(h.min, spec.lo), max=max(h.max, spec.hi))
            self._set_quietly(h, step=spec.step, precision=spec.precision, value=value, label=label)
            self._set_quietly(h, min=spec.lo, max=spec.hi)
        if self.slider_b is not None:
            h, vb = self.slider_b, spec.to_ui(self.source.value_of(spec.mode, self.session.k_b))
            self._set_quietly(h, min=min(h.min, spec.lo), max=max(h.max, spec.hi))
            self._set_quietly(h, step=spec.step, precision=spec.precision, value=vb, label=f"B: {spec.label}")
            self._set_quietly(h, min=spec.lo, max=spec.hi)
            self.session.set_target_b(spec.from_ui(vb))
        self.refresh()

    def on_slider(self) -> None:
        self.typed_cap = None
        self._apply(self.slider.value, sync=self.number)

    def on_number(self) -> None:
        spec = self.session.spec()
        if spec is not None and spec.mode == "rate":
            self._apply_rate_cap(self.number.value, spec)
        else:
            self.typed_cap = None
            self._apply(self.number.value, sync=self.slider)

    def _apply_rate_cap(self, ui_value: float, spec) -> None:
        """A typed rate is a cap: select the largest prefix whose exact size fits in it (the slider keeps
        Eq. 3's nearest rule). Below the lowest operating point nothing fits: say so, show the lowest one."""
        from ..errors import RaveError
        from ..rave.selection import parse_rate

        src = self.source
        try:
            cap = parse_rate(f"{float(ui_value)!r}{spec.unit}")  # exact: 12.5 KB is 12,500 bytes
        except RaveError as e:
            self.host.notify("Rate not valid", str(e), error=True)
            return
        lo, hi = (int(x) for x in src.bounds("rate"))
        if cap < lo:
            self.host.notify(
                "Rate below the lowest operating point",
                f"No prefix fits in {cap:,} bytes: the lowest operating point is {lo:,} bytes; valid range "
                f"{lo:,}..{hi:,} bytes. Showing the lowest point.",
            )  # fmt: skip
        self.typed_cap = cap
        self._set_quietly(self.slider, value=spec.to_ui(float(cap)))
        before = self.session.snapshot().version
        self.session.set_target(float(cap), cap=True)
        self.refresh()
        if self.session.snapshot().version != before:
            self.host.request_render()

    def _apply(self, ui_value: float, sync) -> None:
        spec = self.session.spec()
        v = min(max(float(ui_value), spec.lo), spec.hi)
        for h in (self.slider, self.number):  # both show the clamped target (a typed 99 dB becomes the best)
            if h is not None and (h is sync or float(h.value) != spec.to_ui(spec.from_ui(v))):
                self._set_quietly(h, value=spec.to_ui(spec.from_ui(v)))
        before = self.session.snapshot().version
        self.session.set_target(spec.from_ui(v))
        if self.session.snapshot().version != before:
            self.host.request_render()  # first: the frame renders while the readouts are written
        self.refresh()

    def on_step(self, direction: int) -> None:
        """The Rate up / Rate down buttons (and the ] / [ keys)."""
        self.typed_cap = None
        if self.session.step(direction):
            self.host.request_render()  # first: the frame renders while the widgets and readouts are updated
        spec = self.session.spec()
        value = spec.to_ui(self.session.target)
        self._set_quietly(self.slider, value=value)
        self._set_quietly(self.number, value=value)
        self.refresh()

    def on_show(self) -> None:
        self.session.set_show(self.show.value)
        self.refresh()
        self.host.request_render()

    def on_toggle_split(self) -> None:
        show = "render" if self.session.snapshot().show == "A/B split" else "A/B split"
        self._set_quietly(self.show, value=show)
        self.on_show()

    def on_slider_b(self) -> None:
        spec = self.session.spec()
        v = min(max(float(self.slider_b.value), spec.lo), spec.hi)
        before = self.session.snapshot().version
        self.session.set_target_b(spec.from_ui(v))
        self.refresh()
        if self.session.snapshot().version != before:
            self.host.request_render()

    def on_add_keyframe(self) -> None:
        n = self.host.add_keyframe()
        self.video_md.content = f"_{n} keyframe{'s' if n > 1 else ''}: the video follows them._"

    def on_clear_keyframes(self) -> None:
        self.host.keyframes.clear()
        self.video_md.content = "_No keyframes: the video turns once around the scene._"

    def on_export_video(self) -> None:
        n = int(self.video_frames.value)
        self.video_md.content = f"_Rendering {n} frames…_"
        self.host.export_video(n, (640, 352))

    def video_progress(self, done: int, total: int) -> None:
        if done == total or done % 4 == 0:
            self.video_md.content = f"_Rendering the video: {done} of {total} frames…_"

    def video_done(self, message: str, error: bool = False) -> None:
        self.video_md.content = f"**{message}**" if error else f"_{message}_"
        if error:
            self.host.notify("Video export failed", message, error=True)

    def on_render_mode(self) -> None:
        self.session.set_render_mode(self.render_mode.value)
        self.host.request_render()

    @property
    def resolution_scale(self) -> float:
        return float(self.resolution.value) / 100.0

    @property
    def jpeg_quality(self) -> int:
        return int(self.jpeg.value)

    def on_view(self) -> None:
        opt = self.view.value
        if opt == FREE_CAMERA:
            return
        self.host.snap_to_view(self._views.index(opt) - 1)

    def on_compare(self) -> None:
        self.session.set_compare(self.compare.value)
        self.refresh()
        self.host.request_render()

    def on_browser(self) -> None:
        on = bool(self.browser.value)
        if on and self.source.browser_note:  # the source cannot be drawn as fixed splats: say why, stay on the server
            self._set_quietly(self.browser, value=False)
            self.session.set_browser(False)
            self.host.notify("Browser rendering is not available", self.source.browser_note)
            return
        self.session.set_browser(on)
        self._status["mode"] = "browser" if on else "server"
        self.host.set_browser_rendering(on)
        self._write_status()

    def on_screenshot(self) -> None:
        img = self.host.screenshot_image()
        snap = self.session.snapshot()
        mode = snap.compare if snap.view is not None and snap.compare != "off" else snap.show
        name, data = exports.screenshot(self.source, self.session.selection(), img, mode=mode)
        self.host.send_file(name, data)

    def on_export_rd(self) -> None:
        for name, data in exports.rd_files(self.source, self.session.selection()):
            self.host.send_file(name, data)

    def on_export_selection(self) -> None:
        for name, data in exports.selection_files(self.source, self.session.selection()):
            self.host.send_file(name, data)

    # -- updates from the app -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rewrite the readouts and the plot's current point from the session."""
        sel = self.session.selection()
        view = self.session.snapshot().view
        name = None if view is None or not self._views else f"view {self._views[view + 1].split(': ', 1)[-1]}"
        rows = readout_rows(sel, self.session.view_psnr(), name, targets=self.source.targets,
                            unit=self.source.unit_label)
        cap = self.typed_cap
        if cap is not None and sel.mode == "rate" and sel.nbytes is not None:
            how = f"{fmt_int(cap - sel.nbytes)} under" if sel.nbytes <= cap else "over: the lowest point"
            rows.insert(1, ("Typed cap", f"{fmt_int(cap)} bytes (file {fmt_int(sel.nbytes)} bytes, {how})"))
        self.readout.content = markdown_table(rows)
        if self.plot is not None:
            self.plot.data = self._plot_data()
        snap = self.session.snapshot()
        if self._views:
            need = snap.compare != "off" and snap.view is None
            if self.compare_note.visible != need:
                self.compare_note.visible = need
        if self.ab_readout is not None:
            b = self.session.selection_b()
            lo, hi = sorted((sel.k, b.k))

            def row(name, s):
                size = f"{fmt_bytes(s.nbytes)} ({fmt_int(s.nbytes)} bytes)" if s.nbytes is not None else "n/a"
                ps = f"{s.psnr:.2f} dB" if s.psnr is not None else "n/a"
                return (name, f"{size}, {fmt_int(s.k)} {unit}, {ps}")

            unit = self.source.unit_label
            ab = [row("A (left)", sel), row("B (right)", b)]
            if sel.nbytes is not None and b.nbytes is not None:
                ab.append(("B - A", f"{fmt_int(b.nbytes - sel.nbytes)} bytes, {fmt_int(b.k - sel.k)} {unit}"))
            ab.append(("Added (magenta)", f"{unit.capitalize()} {fmt_int(lo)}..{fmt_int(hi)} of the ranked order"))
            self.ab_readout.content = markdown_table(ab)

    def show_view(self, view: int | None) -> None:
        """The camera arrived on (or left) a test view: reflect it in the dropdown and the readouts."""
        if self.view is not None:
            opt = FREE_CAMERA if view is None else self._views[view + 1]
            if self.view.value != opt:
                self._set_quietly(self.view, value=opt)
        self.refresh()

    def frame_done(self, fps: float | None, frame_ms: float, width: int, height: int) -> None:
        """A frame reached the browser: update the FPS readout and clear a shown render error."""
        self._status.update(fps=fps, ms=frame_ms, size=(width, height))
        self._write_status()  # first: once the error is hidden, the FPS readout is already there
        if self.error is not None:
            self.error = None
            self.error_md.visible = False

    def show_error(self, message: str) -> None:
        """A render failed: say so in the panel (cleared by the next good frame)."""
        self.error = message
        self.error_md.content = f"**Render error:** {message}"
        self.error_md.visible = True

    def browser_done(self, k: int, bytes_sent: int, seconds: float) -> None:
        """The browser's splats now hold ``k`` Gaussians (``bytes_sent`` splat bytes so far in this tab)."""
        self._status["browser"] = f": {fmt_int(k)} Gaussians, {fmt_bytes(bytes_sent)} of splats sent so far"
        self._write_status()

    def _write_status(self) -> None:
        st = self._status
        if st["mode"] == "browser":
            text = f"Rendering in the browser (WebGL splats){st['browser']}."
        elif st["ms"] is None:
            text = f"Rendering on the server ({self.backend}): waiting for the first frame."
        else:
            w, h = st["size"]
            fps = "…" if st["fps"] is None else f"{st['fps']:.1f}"
            text = (f"Server ({self.backend}): **{fps} FPS** delivered; last frame {st['ms']:.0f} ms at "
                    f"{w}x{h}\u00a0px")  # fmt: skip
        if self.status.content != text:  # (the frame's FPS readout: unchanged text sends nothing)
            self.status.content = text


__all__ = ["FREE_CAMERA", "Panel", "PanelHost", "view_options"]
