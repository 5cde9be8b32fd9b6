"""Browser rendering: block nodes send only the difference on a rate change, SH colour per view, hostile values."""

from __future__ import annotations

import numpy as np
import torch

from rave_viewer.render import render
from rave_viewer.scene.gaussians import Gaussians
from rave_viewer.viewer.browser import BYTES_PER_SPLAT, BlockSplats, splat_arrays, stale, to_u8, view_colours
from rave_viewer.viewer.frames import intrinsics_from_fov, viewmat_from_c2w
from rave_viewer.viewer.video import look_at_c2w
from viewer_fakes import FakeScene


def _scene(n=1000, degree=0, seed=0, amp=0.5):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    return Gaussians(
        means=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
        scales=torch.full((n, 3), -3.0), opacities=torch.full((n,), 2.0),
        sh0=torch.randn(n, 1, 3, generator=g) * amp, shN=torch.randn(n, k, 3, generator=g) * amp / 4,
    )  # fmt: skip


def test_a_rate_change_sends_only_the_difference_and_the_browser_holds_exactly_the_prefix():
    g = _scene()
    arrays = splat_arrays(g)
    scene = FakeScene()
    bs = BlockSplats(scene, arrays, block=100)
    sent = []
    for k in (250, 420, 130, 420, 1000, 99, 1000):
        before = bs.bytes_sent
        bs.show(k)
        sent.append((bs.bytes_sent - before) // BYTES_PER_SPLAT)
        shown = scene.shown_centers()
        assert np.array_equal(shown, arrays.centers[:k]), k  # exactly the prefix, each Gaussian once
    # up: the new Gaussians plus at most one block re-sent (the old tail's block); down: only the new tail
    assert sent == [250, 220, 30, 20, 600, 99, 0]
    assert bs.bytes_sent < 3 * 1000 * BYTES_PER_SPLAT


def test_sh_colour_is_evaluated_for_the_camera_and_matches_the_server_render():
    g = _scene(400, degree=2, amp=0.25)  # colours inside [0, 1] (the browser's 8-bit colour clamps)
    scene = FakeScene()
    bs = BlockSplats(scene, splat_arrays(g), g, block=128, radius=1.0)
    cam = np.array([0.0, -6.0, 1.0])
    assert bs.recolour(cam, force=True)
    bs.show(400)
    rgb = np.concatenate([n.rgbs for _, n in sorted(scene.nodes.items())])
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, to_u8(view_colours(g, cam)))  # the 8 bits viser sends
    rgb = rgb / 255.0
    # the same colours drawn as a degree-0 scene render the same image as the SH scene from that camera
    flat = Gaussians(means=g.means, quats=g.quats, scales=g.scales, opacities=g.opacities,
                     sh0=((torch.as_tensor(rgb) - 0.5) / 0.28209479177387814)[:, None, :], shN=torch.zeros(400, 0, 3))
    vm, K = viewmat_from_c2w(look_at_c2w(cam, np.zeros(3), np.array([0, 0, 1.0]))), intrinsics_from_fov(0.9, 96, 64)
    a = render(g, vm[None], K[None], 96, 64, backend="cpu")[0]
    b = render(flat, vm[None], K[None], 96, 64, backend="cpu")[0]
    assert (a - b).abs().max() < 4.5e-3  # (8-bit colours: within 1/255)
    assert not bs.recolour(cam + 0.001)  # a camera that barely moved keeps its colours (nothing sent)
    moved = bs.recolour(np.array([6.0, 0.0, 1.0]))
    assert moved and not np.allclose(scene.nodes[sorted(scene.nodes)[0]].rgbs / 255.0, rgb[:128])


def test_a_recolour_resends_only_the_blocks_whose_colours_went_stale():
    """Blocks of Gaussians with view-dependent colour vs blocks of (nearly) flat ones: a move re-sends only the
    first; what the browser holds is never stale afterwards, hidden blocks included once shown again."""
    g = _scene(1024, degree=2, amp=0.25)
    g.shN[512:] *= 0.01  # the second half barely depends on the view
    scene = FakeScene()
    bs = BlockSplats(scene, splat_arrays(g), g, block=128, radius=1.0)
    bs.recolour(np.array([0.0, -6.0, 1.0]), force=True)
    bs.show(1024)
    assert bs.recolour_bytes == 0  # (nothing shown yet when forced: the blocks were sent with these colours)
    bs.show(640)  # blocks 5..7 hidden
    assert bs.recolour(np.array([3.0, -5.0, 1.5]))
    resent = bs.recolour_bytes // (128 * BYTES_PER_SPLAT)
    assert 1 <= resent <= 4 and bs.recolour_bytes % (128 * BYTES_PER_SPLAT) == 0  # some of blocks 0..3, not 4
    bs.show(1024)
    held = np.concatenate([scene.nodes[f"/rave/splats/block{j:05d}"].rgbs for j in range(8)])
    want = to_u8(view_colours(g, bs.campos))
    for j in range(8):
        assert not stale(held[128 * j:128 * (j + 1)], want[128 * j:128 * (j + 1)]), j
    sent = bs.bytes_sent
    assert bs.recolour(np.array([3.0, -5.0, 1.5]), force=True)  # force: every shown block again
    assert bs.recolour_bytes == 8 * 128 * BYTES_PER_SPLAT and bs.bytes_sent == sent + bs.recolour_bytes


def test_non_finite_gaussians_become_invisible_not_nan():
    g = _scene(50)
    g.means[3] = torch.tensor([float("inf"), 0, 0])
    g.scales[7] = torch.tensor([float("nan"), 0, 0])
    g.scales[9] = torch.tensor([40.0, 40.0, 40.0])  # exp(80): beyond float16
    g.opacities[11] = float("nan")
    a = splat_arrays(g)
    for arr in (a.centers, a.covariances, a.rgbs, a.opacities):
        assert np.isfinite(arr).all()
    assert np.abs(a.covariances).max() < 65_000
    assert (a.opacities[[3, 7, 9, 11], 0] == 0).all() and (a.opacities[[0, 1, 2], 0] > 0.5).all()


def test_the_key_script_goes_into_the_page_once_and_only_there():
    import gzip
    from types import SimpleNamespace

    from websockets.datastructures import Headers

    from rave_viewer.viewer.page_script import MARKER, SHORTCUTS, inject, wrap

    page = b"<!doctype html><html><head><title>x</title></head><body></body></html>"
    once = inject(page)
    assert once.count(MARKER) == 1 and inject(once) == once and once.index(MARKER) < once.index(b"<title>")
    assert all(label.encode() in once for _, label, _ in SHORTCUTS)

    def viser_handler(connection, request):  # what viser answers: the page gzipped, other files as they are
        body = gzip.compress(page) if request.path.partition("?")[0] in ("/", "/index.html") else b"js"
        h = Headers()
        h["Content-Encoding"] = "gzip"
        h["Content-Length"] = str(len(body))
        return SimpleNamespace(status_code=200, headers=h, body=body)

    handler = wrap(viser_handler)
    r = handler(None, SimpleNamespace(path="/?token=abc"))
    assert MARKER in gzip.decompress(r.body) and r.headers.get_all("Content-Length") == [str(len(r.body))]
    other = handler(None, SimpleNamespace(path="/assets/app.js"))
    assert other.body == b"js"  # other files untouched
