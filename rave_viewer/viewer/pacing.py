"""A tab's render thread: nerfview's Renderer with our pacing (we own this loop; nerfview is pinned <0.2).

What changes against nerfview 0.1.3, and why:

* **No thumbnails while moving.** nerfview sizes a moving frame from the last frame's speed for 30 FPS, down
  to 30 px; on a CPU that is a 55-190 px blur. Here the moving size comes from a running (EMA) estimate of
  pixels per second for :data:`MOVE_FPS` and never goes below :data:`MIN_MOVING_SIDE` px on the long side
  (or the canvas, if smaller): fewer but readable frames, at a steady size (the EMA paces them).
* **A slider step on a still camera renders the sharp frame at once.** nerfview goes through a low-resolution
  frame and 0.2 s of idle time first; a rate change does not move the camera, so there is nothing to hide.
* **The camera resting gives the sharp frame after** :data:`REST_S` (nerfview: 0.2 s, then a second low frame).
* **A rate change never interrupts a frame in flight** (only a camera move does): a slider drag then shows
  one sharp frame per render time instead of nothing until the drag stops.
* **A failing render never ends the process** (nerfview calls ``os._exit(1)``), and each tab has its own lock
  (nerfview's is shared), so tabs render concurrently where the cores allow.
"""

from __future__ import annotations

import math
import threading
import time
import traceback

from nerfview._renderer import InterruptRenderException, Renderer, RenderTask, set_trace_context

MOVE_FPS = 12.0  # frames per second aimed at while the camera moves
MIN_MOVING_SIDE = 480  # px: the long side of a moving frame is never smaller (unless the canvas is)
REST_S = 0.12  # s without camera messages: the camera rests, render the sharp frame
EMA = 0.3  # weight of the newest frame in the pixels-per-second estimate
JPEG_MOVING_MAX = 60  # JPEG quality of moving frames is at most this (smaller, faster messages)


class PacedRenderer(Renderer):
    """One tab's render thread; ``on_frame(W, H, seconds, sharp)`` is called after each delivered frame."""

    def __init__(self, viewer, client, lock: threading.Lock | None = None, on_frame=None, jpeg_quality=None):
        super().__init__(viewer=viewer, client=client, lock=lock or threading.Lock())
        self._px_per_s: float | None = None
        self.on_frame = on_frame
        self.jpeg_quality = jpeg_quality or (lambda: 85)

    def _define_transitions(self) -> None:
        super()._define_transitions()
        t = self.transitions
        t["low_move"]["static"] = "high"  # rest: straight to the sharp frame
        t["low_move"]["rerender"] = "low_move"  # a rate change while moving stays a moving frame
        t["low_static"]["rerender"] = "high"
        t["high"]["rerender"] = "high"  # a rate change on a still camera: sharp at once

    def submit(self, task: RenderTask) -> None:
        was = self._may_interrupt_render
        super().submit(task)
        if task.action != "move":
            self._may_interrupt_render = was  # only a camera move interrupts a frame in flight

    def moving_size(self, aspect: float) -> tuple[int, int]:
        """(W, H) of a moving frame: the EMA pixel rate / MOVE_FPS, at least MIN_MOVING_SIDE on the long side."""
        full = max(int(self.viewer.render_tab_state.viewer_res), 1)
        aspect = max(float(aspect), 1e-3)
        px = (self._px_per_s or self.viewer.render_tab_state.num_view_rays_per_sec) / MOVE_FPS
        long = math.sqrt(max(px, 1.0) * max(aspect, 1.0 / aspect))
        long = int(min(max(long, MIN_MOVING_SIDE), full))
        W, H = (long, long / aspect) if aspect >= 1 else (long * aspect, long)
        return max(int(W), 1), max(int(H), 1)

    def _get_img_wh(self, aspect: float) -> tuple[int, int]:
        if self._state == "high":
            return super()._get_img_wh(aspect)
        return self.moving_size(aspect)

    def run(self) -> None:
        rts = self.viewer.render_tab_state
        while self.running:
            if not self._render_event.wait(REST_S):
                if self._state == "high" or self._task is None:
                    continue  # already sharp: nothing to do
                self.submit(RenderTask("static", self.viewer.get_camera_state(self.client)))
            self._render_event.clear()
            task = self._task
            if task is None or not self.running:
                continue
            if self._state == "high" and task.action == "static":
                continue
            self._state = self.transitions[self._state][task.action]
            sharp = self._state == "high"
            self._may_interrupt_render = False  # a flag raised while no frame was in flight is not for this one
            try:
                with self.lock, set_trace_context(self._may_interrupt_trace):
                    tic = time.perf_counter()
                    W, H = self._get_img_wh(task.camera_state.aspect)
                    rts.viewer_width, rts.viewer_height = W, H
                    img = self.viewer.render_fn(task.camera_state, rts)
                    dt = max(time.perf_counter() - tic, 1e-6)
            except InterruptRenderException:
                continue
            except Exception:  # _render_guarded turns render errors into panel messages; this is a last resort
                traceback.print_exc()
                continue
            rate = W * H / dt
            rts.num_view_rays_per_sec = rate
            self._px_per_s = rate if self._px_per_s is None else (1 - EMA) * self._px_per_s + EMA * rate
            q = int(self.jpeg_quality())
            self.client.scene.set_background_image(
                img, format="jpeg", jpeg_quality=q if sharp else min(q, JPEG_MOVING_MAX)
            )
            if self.on_frame is not None:
                self.on_frame(W, H, dt, sharp)


__all__ = ["JPEG_MOVING_MAX", "MIN_MOVING_SIDE", "MOVE_FPS", "PacedRenderer", "REST_S"]
