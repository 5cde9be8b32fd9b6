"""Keyboard behaviour of the viewer page: keys on a GUI control never move the camera; shortcuts press buttons.

viser's page moves the camera on W/A/S/D/Q/E and the arrow keys unless the key event comes from an <input>,
<textarea> or <select>; its sliders are <div role="slider">, so the arrow keys on a focused bitrate slider
also orbit the camera (and lose the test-view snap). A small script, added to the page viser serves, stops
those keys from reaching viser's document-level listener whenever the event comes from an element of the
control panel (after the control itself has handled it: React listens on the app's root, below <html>).

The same script maps :data:`SHORTCUTS` to clicks on the panel's buttons of the same label, when the focus is
on the scene (not in a text field), so every shortcut is also an ordinary button and goes through the panel.
Without WebGL the script puts one line on the page saying so (:data:`NO_WEBGL`). viser needs WebGL for the
panel too: its GUI messages are handled inside the 3D canvas' render loop, and it registers a tab only after the
canvas sent a first camera message, so such a page gets no panel, and the server never renders for it (other
tabs are not affected; ``tests/viewer/test_viewer_e2e_views.py`` runs Chromium with WebGL switched off).
The script is injected by wrapping viser's HTTP handler, *inside* the security gate: the gate's checks run
first (see :mod:`~rave_viewer.viewer.gate`), and only the page (``/`` or ``/index.html``) is changed.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from typing import Callable, Iterator

#: (key as KeyboardEvent.key, button label, what it does) -- the help panel lists these.
SHORTCUTS = (
    ("]", "Rate up ]", "next higher rate step"),
    ("[", "Rate down [", "next lower rate step"),
    ("n", "Next test view (N)", "snap the camera to the next test view"),
    ("b", "A/B split (B)", "toggle the A/B split screen"),
    ("f", "Frame the scene (F)", "centre the scene in the view"),
    ("r", "Reset view (R)", "back to the first camera"),
)
MOVEMENT_CODES = ("KeyW", "KeyA", "KeyS", "KeyD", "KeyQ", "KeyE", "ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight")
MARKER = b"<!-- rave-viewer keys -->"
NO_WEBGL = (
    "This browser cannot do WebGL, which the viewer's page needs (viser draws the 3D view and runs its panel "
    "with it): turn on hardware acceleration or use another browser. The server keeps running."
)

_JS = """
(() => {
  const MOVE = new Set(%(move)s);
  const SHORTCUTS = %(shortcuts)s;
  const onScene = (t) => !t || t === document || t === document.body || t === document.documentElement ||
    t.tagName === "CANVAS";
  const isText = (t) => t && (["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName) || t.isContentEditable);
  window.__raveKeys = {stopped: 0, shortcuts: 0};
  document.documentElement.addEventListener("keydown", (e) => {
    const t = e.target;
    if (!onScene(t)) {  // a GUI control has the focus: it already handled the key; the camera must not move
      if (MOVE.has(e.code)) { e.stopPropagation(); window.__raveKeys.stopped += 1; }
      return;
    }
    if (isText(t) || e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const label = SHORTCUTS[e.key.toLowerCase()];
    if (!label) return;
    const b = Array.from(document.querySelectorAll("button")).find((b) => b.textContent.trim() === label);
    if (b) { b.click(); e.preventDefault(); window.__raveKeys.shortcuts += 1; }
  });
  // no WebGL: say so on the page (viser draws frames and splats with it); the server is not affected
  window.addEventListener("DOMContentLoaded", () => {
    const c = document.createElement("canvas");
    if (c.getContext("webgl2") || c.getContext("webgl")) return;
    const d = document.createElement("div");
    d.id = "rave-no-webgl";
    d.textContent = %(no_webgl)s;
    d.style.cssText = "position:fixed;top:0;left:0;right:0;z-index:99999;padding:12px;background:#b00020;" +
      "color:#fff;font:14px sans-serif";
    document.body.appendChild(d);
  });
})();
"""


def script() -> bytes:
    """The <script> element added to viser's page."""
    js = _JS % {
        "move": json.dumps(list(MOVEMENT_CODES)),
        "shortcuts": json.dumps({k: label for k, label, _ in SHORTCUTS}),
        "no_webgl": json.dumps(NO_WEBGL),
    }
    return MARKER + b"<script>" + js.encode() + b"</script>"


def inject(html: bytes) -> bytes:
    """``html`` with :func:`script` right after ``<head>`` (unchanged if already there or there is no head)."""
    if MARKER in html:
        return html
    i = html.find(b"<head>")
    if i < 0:
        return html
    i += len(b"<head>")
    return html[:i] + script() + html[i:]


def wrap(process_request: Callable | None) -> Callable | None:
    """viser's HTTP handler, with the page's response rewritten by :func:`inject` (other files untouched)."""
    if process_request is None:
        return None
    cache: dict[bool, bytes] = {}

    def handler(connection, request):
        response = process_request(connection, request)
        path = request.path.partition("?")[0]
        if response is None or path not in ("/", "/index.html") or response.status_code != 200:
            return response
        gz = response.headers.get("Content-Encoding") == "gzip"
        if gz not in cache:
            body = gzip.decompress(response.body) if gz else bytes(response.body)
            body = inject(body)
            cache[gz] = gzip.compress(body) if gz else body
        response.body = cache[gz]
        del response.headers["Content-Length"]  # (a multi-dict: assigning would add a second one)
        response.headers["Content-Length"] = str(len(cache[gz]))
        return response

    return handler


@contextlib.contextmanager
def keys_on_page() -> Iterator[None]:
    """While viser builds its server (inside ``gated_viser``), add the key script to the page it serves."""
    import websockets.asyncio.server as wss

    outer = wss.serve  # the gate's serve, when used inside gated_viser

    def serve(handler, host=None, port=None, *args, process_request=None, **kwargs):
        return outer(handler, host, port, *args, process_request=wrap(process_request), **kwargs)

    wss.serve = serve
    try:
        yield
    finally:
        wss.serve = outer


__all__ = ["MOVEMENT_CODES", "NO_WEBGL", "SHORTCUTS", "inject", "keys_on_page", "script", "wrap"]
