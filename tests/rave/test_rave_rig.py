"""Camera rig for dataset-free builds: robust bounds under floaters and far shells, shape/up choice, camera files."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rave_viewer.errors import RaveError
from rave_viewer.rave.rig import choose_shape, default_size, place_rig, robust_bounds, scene_scale
from rave_viewer.scene.gaussians import Gaussians
from rave_viewer.scene.rig_cameras import read_camera_file


def blob(n: int, seed: int = 0, radius: float = 1.0, center=(0.0, 0.0, 0.0), flat: float = 1.0) -> Gaussians:
    """``n`` small opaque Gaussians uniform in a ball (z squashed by ``flat``)."""
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=gen)
    d = d / d.norm(dim=1, keepdim=True) * torch.rand(n, 1, generator=gen) ** (1 / 3) * radius
    d[:, 2] *= flat
    return Gaussians(means=d + torch.tensor(center), quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                     scales=torch.full((n, 3), math.log(0.02 * radius)), opacities=torch.full((n,), 2.0),
                     sh0=torch.zeros(n, 1, 3), shN=torch.zeros(n, 0, 3))


def shell(n: int, radius: float, seed: int = 1, size: float = 0.3) -> Gaussians:
    """A sparse far shell (sky / background) of big opaque Gaussians."""
    g = blob(n, seed)
    g.means = g.means / g.means.norm(dim=1, keepdim=True) * radius
    g.scales = torch.full((n, 3), math.log(size))
    return g


def ground_scene(up: str = "+z", n_ground: int = 4000, n_obj: int = 1500, seed: int = 0) -> Gaussians:
    """A dense ground plane with objects standing on it, the ground's normal along ``up``."""
    gen = torch.Generator().manual_seed(seed)
    gp = torch.cat([(torch.rand(n_ground, 2, generator=gen) * 2 - 1) * 1.5,
                    torch.randn(n_ground, 1, generator=gen) * 0.005], dim=1)
    ob = torch.cat([(torch.rand(n_obj, 2, generator=gen) * 2 - 1) * 0.8,
                    torch.rand(n_obj, 1, generator=gen) * 0.6 + 0.02], dim=1)
    pts = torch.cat([gp, ob])
    axis, sign = "xyz".index(up[1]), 1.0 if up[0] == "+" else -1.0
    perm = {0: [1, 2, 0], 1: [2, 0, 1], 2: [0, 1, 2]}[axis]  # put the height coordinate on ``axis``
    means = torch.zeros_like(pts)
    means[:, perm] = pts
    means[:, axis] *= sign
    n = len(pts)
    return Gaussians(means=means, quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                     scales=torch.full((n, 3), math.log(0.02)), opacities=torch.full((n, ), 2.0),
                     sh0=torch.zeros(n, 1, 3), shN=torch.zeros(n, 0, 3))


def test_bounds_ignore_one_percent_of_far_floaters():
    clean = blob(5000)
    floaters = blob(50, seed=7, radius=1.0, center=(0.0, 0.0, 0.0))
    floaters.means = floaters.means / floaters.means.norm(dim=1, keepdim=True) * 50.0  # 50x the content
    dirty = Gaussians.cat([clean, floaters])
    b0, b1 = robust_bounds(clean), robust_bounds(dirty)
    print(f"\nradius clean {b0.radius:.3f}, with 1 % floaters at 50x {b1.radius:.3f}")
    assert 0.8 < b0.radius < 1.2  # the content is a unit ball
    assert b1.radius / b0.radius < 1.1 and b0.radius / b1.radius < 1.1
    assert float((b1.center - b0.center).norm()) < 0.1
    r0, r1 = place_rig(clean, views=16), place_rig(dirty, views=16)
    d0, d1 = r0.cameras.centers.norm(dim=1).max(), r1.cameras.centers.norm(dim=1).max()
    assert float(d1 / d0) < 1.15


def test_bounds_ignore_a_far_background_shell_holding_most_gaussians():
    """Like demo_objects: 68 % of the Gaussians are a sky shell 12 units out around content of radius ~1."""
    content = blob(4000)
    sky = shell(8500, radius=12.0)
    b = robust_bounds(Gaussians.cat([content, sky]))
    print(f"\nradius with a 68 % far shell: {b.radius:.3f} (content: unit ball)")
    assert 0.7 < b.radius < 1.5
    assert float(b.center.norm()) < 0.2


def test_transparent_floaters_do_not_count():
    clean = blob(3000)
    fog = blob(3000, seed=3, radius=6.0)
    fog.opacities = torch.full((3000,), -9.0)  # alpha 1e-4
    b = robust_bounds(Gaussians.cat([clean, fog]))
    assert b.radius < 1.3


@pytest.mark.parametrize("up", ["+z", "-z", "-y", "+y", "+x"])
def test_flat_scene_with_ground_gets_a_hemisphere_above_the_ground(up):
    g = ground_scene(up)
    rig = place_rig(g, views=24)
    want = torch.zeros(3, dtype=torch.float64)
    want["xyz".index(up[1])] = 1.0 if up[0] == "+" else -1.0
    assert rig.shape == "hemisphere", rig.reason
    assert torch.allclose(rig.up, want), rig.reason
    # every camera above the ground, looking at the content centre, images upright (image up = rig up)
    heights = (rig.cameras.centers.double() - rig.bounds.center) @ want
    assert bool((heights > 0).all())
    R = rig.cameras.viewmats[:, :3, :3].double()
    fwd = R[:, 2, :]
    to_center = rig.bounds.center - rig.cameras.centers.double()
    assert torch.allclose(fwd, to_center / to_center.norm(dim=1, keepdim=True), atol=1e-5)
    down = R[:, 1, :]  # camera +y (image down) in world
    assert bool(((down @ want) < 0).all())


def test_round_object_gets_a_sphere_and_flags_override():
    g = blob(3000)
    rig = place_rig(g, views=40)
    assert rig.shape == "sphere"
    heights = rig.cameras.centers.double() @ rig.up
    assert heights.min() < -0.5 * heights.max()  # views from below too
    shape, up, _ = choose_shape(rig.bounds, "hemisphere", "-y")
    assert shape == "hemisphere" and up.tolist() == [0.0, -1.0, 0.0]


def test_rig_geometry_and_split():
    g = blob(2000)
    rig = place_rig(g, views=20, size=96, fov_deg=40.0, distances=[1.0, 2.0])
    c = rig.cameras
    assert len(c) == 20 and c.width == c.height == 96 and c.images is None
    assert torch.allclose(c.Ks[:, 0, 0], torch.tensor(48 / math.tan(math.radians(20))), rtol=1e-5)
    fit = rig.bounds.radius / math.sin(math.radians(20))
    dist = (c.centers.double() - rig.bounds.center).norm(dim=1)
    assert torch.allclose(dist[0::2], torch.tensor(fit, dtype=torch.float64), rtol=1e-4)
    assert torch.allclose(dist[1::2], torch.tensor(2 * fit, dtype=torch.float64), rtol=1e-4)
    train, test = rig.split()
    assert len(test) == 3 and len(train) == 17  # views 0, 8, 16 held out
    assert test.names == ["rig_000", "rig_008", "rig_016"]
    assert scene_scale(c) == pytest.approx(1.1 * float((c.centers - c.centers.mean(0)).norm(dim=1).max()), rel=1e-5)
    assert default_size(10) == 128 and default_size(33_000) == 192 and default_size(10**6) == 512


def test_empty_scene_is_one_error():
    with pytest.raises(RaveError, match="empty"):
        robust_bounds(Gaussians.empty())


def _write(path, doc) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def test_camera_file(tmp_path):
    c2w = [[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 3.0], [0, 0, 0, 1]]
    p = _write(tmp_path / "cams.json", {"camera_angle_x": math.radians(60), "w": 80, "h": 60,
                                        "frames": [{"transform_matrix": c2w}, {"transform_matrix": c2w[:3]}]})
    cams = read_camera_file(p)
    assert len(cams) == 2 and (cams.width, cams.height) == (80, 60) and cams.images is None
    assert torch.allclose(cams.Ks[0, 0, 0], torch.tensor(40 / math.tan(math.radians(30))))
    assert torch.allclose(cams.centers[0], torch.tensor([0.5, 0.0, 3.0]), atol=1e-5)
    # OpenGL camera looking down -z: the OpenCV camera's forward (row 2 of R) is world -z
    assert torch.allclose(cams.viewmats[0, 2, :3], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)
    # no size: default_size wide, camera_angle_y sets the aspect; fl_x works too
    q = _write(tmp_path / "fl.json", {"fl_x": 100.0, "frames": [{"transform_matrix": c2w}]})
    assert (read_camera_file(q, default_size=64).width, read_camera_file(q, default_size=64).height) == (64, 64)
    r = _write(tmp_path / "ay.json", {"camera_angle_x": math.radians(60), "camera_angle_y": math.radians(40),
                                      "frames": [{"transform_matrix": c2w}]})
    assert read_camera_file(r, default_size=100).height == round(100 * math.tan(math.radians(20)) /
                                                                 math.tan(math.radians(30)))


@pytest.mark.parametrize("doc, message", [
    ({"camera_angle_x": 1.0, "frames": []}, "no camera poses"),
    ({"camera_angle_x": 1.0}, "missing key 'frames'"),
    ({"frames": [{"transform_matrix": [[1, 0, 0, 0]] * 4}]}, "transform_matrix"),
    ({"frames": [{"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}, "focal length"),
    ({"camera_angle_x": 1.0, "w": 10, "frames": [{"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
                                                                       [0, 0, 0, 1]]}]}, "'w' and 'h'"),
    ({"camera_angle_x": 1.0, "frames": [{"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                                          "w": 10, "h": 10},
                                         {"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                                          "w": 20, "h": 10}]}, "different image sizes"),
])
def test_bad_camera_files_are_one_line_naming_the_file(tmp_path, doc, message):
    p = _write(tmp_path / "cams.json", doc)
    with pytest.raises(RaveError, match=message) as e:
        read_camera_file(p)
    assert str(e.value).startswith(p) and "\n" not in str(e.value)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RaveError, match="invalid JSON"):
        read_camera_file(tmp_path / "bad.json")
    with pytest.raises(RaveError, match="no such camera file"):
        read_camera_file(tmp_path / "missing.json")
