"""`rave build` without a dataset: the blending-weight first score, a PLY in another tool's layout end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from rave_viewer.cli import main
from rave_viewer.rave.checkpoint import load_checkpoint
from rave_viewer.rave.importance import blending_weight, covers_all, importance
from rave_viewer.rave.units import GaussianUnits
from rave_viewer.render.projection import ALPHA_THRESHOLD, project
from rave_viewer.render.reference import ALPHA_MAX, T_MIN
from rave_viewer.scene.cameras import Cameras, intrinsics, look_at
from rave_viewer.scene.gaussians import Gaussians


def cameras(n: int, size: int, radius: float = 2.0, fov: float = 50.0) -> Cameras:
    vms = torch.stack([look_at(torch.tensor([radius * math.cos(a), radius * math.sin(a), 0.6 * radius]),
                               torch.zeros(3)) for a in torch.linspace(0, 2 * math.pi, n + 1)[:-1].tolist()])
    return Cameras(vms, torch.stack([intrinsics(size, size, math.radians(fov))] * n), size, size)


def brute_force_weights(g: Gaussians, cams: Cameras) -> torch.Tensor:
    """sum over views and pixels of alpha_i T_i, pixel by pixel in Python (float64), with the renderer's rules."""
    out = torch.zeros(len(g), dtype=torch.float64)
    op = torch.sigmoid(g.opacities.double())
    p = project(g.means.double(), g.quats.double(), torch.exp(g.scales.double()), op, cams.viewmats.double(),
                cams.Ks.double(), cams.width, cams.height)
    for c in range(len(cams)):
        ids = torch.nonzero((p.radii[c] > 0).all(-1)).squeeze(1)
        ids = ids[torch.sort(p.depths[c, ids], stable=True).indices].tolist()
        mx, my = p.means2d[c, :, 0].tolist(), p.means2d[c, :, 1].tolist()
        con = p.conics[c].tolist()
        for y in range(cams.height):
            for x in range(cams.width):
                T = 1.0
                for i in ids:
                    dx, dy = mx[i] - (x + 0.5), my[i] - (y + 0.5)
                    a, b, cc = con[i]
                    sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    if sigma < 0:
                        continue
                    alpha = min(ALPHA_MAX, float(op[i]) * math.exp(-sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    if T * (1 - alpha) <= T_MIN:
                        break
                    out[i] += alpha * T
                    T *= 1 - alpha
    return out


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_blending_weight_matches_a_brute_force_sum(backend):
    g = Gaussians.random(60, sh_degree=2, seed=1, extent=0.5)
    g.opacities[::7] = float("inf")  # exactly opaque: alpha clamped at 0.999, T early stop reached
    cams = cameras(2, 20)
    ref = brute_force_weights(g, cams)
    got = blending_weight(GaussianUnits(g, backend=backend), cams, batch=2, progress=False)
    assert int((ref > 0).sum()) > 40
    assert torch.allclose(got, ref, atol=2e-5 * float(ref.max()), rtol=1e-4), float((got - ref).abs().max())
    # a subset renders only its units; the others score exactly 0
    sub = blending_weight(GaussianUnits(g, backend=backend), cams, subset=30, progress=False)
    assert bool((sub[30:] == 0).all()) and torch.allclose(sub[:30], brute_force_weights(g.prefix(30), cams),
                                                           atol=2e-5 * float(ref.max()), rtol=1e-4)


@pytest.mark.gpu  # deselected on CPU machines (see pyproject markers); run with -m gpu where CUDA is
def test_blending_weight_on_gsplat_matches_cpu():
    g = Gaussians.random(500, sh_degree=3, seed=2, extent=0.5)
    cams = cameras(3, 64)
    cpu = blending_weight(GaussianUnits(g, backend="cpu"), cams, progress=False)
    gpu = blending_weight(GaussianUnits(g.to("cuda"), backend="gsplat"), cams.to("cuda"), progress=False)
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-3 * float(cpu.max()), rtol=1e-3)


def _scene_of(rows: list[tuple]) -> Gaussians:
    """Isotropic Gaussians from (x, y, z, sigma, opacity) rows."""
    t = torch.tensor(rows, dtype=torch.float32)
    n = len(t)
    logit = torch.logit(t[:, 4].clamp(1e-6, 1 - 1e-6))
    return Gaussians(means=t[:, :3], quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                     scales=torch.log(t[:, 3:4]).repeat(1, 3), opacities=logit,
                     sh0=torch.rand(n, 1, 3, generator=torch.Generator().manual_seed(0)), shN=torch.zeros(n, 3, 3))


def test_first_level_score_is_nonzero_where_the_gradient_vanishes_and_ranks_by_visible_coverage():
    # camera on +z looking at the origin: a big opaque disc in front, one Gaussian hidden right behind it, a
    # transparent one beside it, a small opaque one and a medium one in the open
    g = _scene_of([
        (0.0, 0.0, 0.5, 0.4, 0.999),  # 0 big, opaque, in front
        (0.0, 0.0, -0.2, 0.06, 0.99),  # 1 hidden behind 0
        (0.95, 0.0, 0.0, 0.25, 0.02),  # 2 big but nearly transparent
        (-0.8, 0.6, 0.0, 0.04, 0.95),  # 3 small, opaque, visible
        (-0.7, -0.7, 0.0, 0.12, 0.9),  # 4 medium, opaque, visible
    ])
    eye = torch.tensor([0.0, 0.0, 3.0])
    vms = torch.stack([look_at(eye + torch.tensor([dx, 0.0, 0.0]), torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
                       for dx in (-0.05, 0.0, 0.05)])
    cams = Cameras(vms, torch.stack([intrinsics(48, 48, math.radians(50))] * 3), 48, 48)
    units = GaussianUnits(g, backend="cpu")
    with torch.no_grad():
        targets = units.render(cams)  # self-distillation: the full model's own renders
    cams = Cameras(cams.viewmats, cams.Ks, 48, 48, targets)
    grad = importance(units, cams, progress=False)
    # below the full model the gradient score is used (pruned renders differ from the targets)
    part = importance(units, cams, subset=torch.tensor([0, 1, 3]), progress=False, full_model_score="blend")
    assert float(part.abs().max()) > 0 and part[2] == 0 and part[4] == 0
    # the paper's score vanishes at the finest level (rounding noise only): nothing to rank by
    assert float(grad.abs().max()) < 1e-5 * float(part.abs().max())
    s = importance(units, cams, progress=False, full_model_score="blend")
    print(f"\nblending weights {[round(float(v), 2) for v in s]}; gradient scores {[f'{float(v):.1e}' for v in grad]}")
    assert bool((s[[0, 2, 3, 4]] > 0).all())
    assert s[0] > s[4] > s[3] > s[2] and s[3] > 20 * s[1]  # 1: only what leaks through 0's rim
    assert covers_all(None, 5) and covers_all(5, 5) and covers_all(torch.arange(5).flip(0), 5)
    assert not covers_all(4, 5) and not covers_all(torch.tensor([0, 0, 1, 2, 3]), 5)


# -- end to end: a PLY from another tool, no dataset ---------------------------------------------------------

def other_tool_scene(seed: int = 0) -> Gaussians:
    """~1000 Gaussians, SH degree 3: a flat-ish ground of tiles and three clusters above it, some +inf opacities."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    xs = torch.linspace(-1, 1, 22)
    gx, gy = torch.meshgrid(xs, xs, indexing="ij")
    ground = torch.stack([gx.flatten(), gy.flatten(), torch.zeros(gx.numel())], 1)
    ng, no = len(ground), 500
    centers = torch.tensor([[-0.4, -0.3, 0.3], [0.45, 0.2, 0.25], [0.0, 0.5, 0.45]])
    means = torch.cat([ground, centers[torch.arange(no) % 3] + (r(no, 3) - 0.5) * 0.35])
    n = len(means)
    scales = torch.cat([torch.tensor([0.06, 0.06, 0.006]).log().expand(ng, 3), (0.02 + 0.05 * r(no, 3)).log()])
    opac = torch.cat([torch.full((ng,), 3.0), torch.randn(no, generator=gen) * 1.5])
    opac[:ng:17] = float("inf")
    return Gaussians(means=means, quats=torch.randn(n, 4, generator=gen), scales=scales, opacities=opac,
                     sh0=(r(n, 1, 3) - 0.5) * 3.0, shN=(r(n, 15, 3) - 0.5) * 0.3)


def write_other_tool_ply(g: Gaussians, path) -> None:
    """Not the INRIA layout: SH first (rest before DC), then opacity, position, rotation, scale; no normals."""
    n = len(g)
    rest = g.shN.transpose(1, 2).reshape(n, 3 * g.shN.shape[1])
    cols = {f"f_rest_{i}": rest[:, i] for i in range(rest.shape[1])}
    cols.update({f"f_dc_{i}": g.sh0[:, 0, i] for i in range(3)})
    cols["opacity"] = g.opacities
    cols.update({a: g.means[:, i] for i, a in enumerate("xyz")})
    cols.update({f"rot_{i}": g.quats[:, i] for i in range(4)})
    cols.update({f"scale_{i}": g.scales[:, i] for i in range(3)})
    arr = np.empty(n, dtype=[(k, "f4") for k in cols])
    for k, v in cols.items():
        arr[k] = v.numpy()
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))


RIG = "num_levels: 6\nrd_points: 128\nchunk_size: 32\nrig_views: 32\nrig_size: 64\n"


@pytest.fixture(scope="module")
def self_built(tmp_path_factory):
    d = tmp_path_factory.mktemp("selfdistill")
    ply, cfg, out = d / "other.ply", d / "rave.yaml", d / "other.ckpt"
    write_other_tool_ply(other_tool_scene(), ply)
    cfg.write_text(RIG)
    assert b"nx" not in ply.read_bytes()[:2000] and b"property float f_rest_44" in ply.read_bytes()[:2000]
    rc = main(["build", str(ply), "-o", str(out), "--config", str(cfg), "--steps", "60", "--quiet"])
    assert rc == 0
    return d, ply, out


def test_self_distilled_build_of_another_tools_ply(self_built):
    _, _, out = self_built
    ck = load_checkpoint(out)
    assert len(ck) == len(other_tool_scene()) and ck.gaussians.sh_degree == 3
    assert ck.meta["targets"] == "self" and ck.meta["sources"]["cameras"] == "rig"
    rig = ck.meta["rig"]
    assert rig["views"] == 32 and rig["width"] == 64 and rig["shape"] in ("sphere", "hemisphere")
    assert ck.meta["rd_views"]["split"] == "held-out rig" and ck.meta["rd_views"]["count"] == 4  # 0, 8, 16, 24
    assert len(ck.test_cameras) == 4 and ck.test_cameras.images is not None
    rd = ck.rd
    r0, r1 = ck.rate_range()
    assert len(rd["count"]) >= 128 and all(b > a for a, b in zip(rd["bytes"], rd["bytes"][1:]))
    spacing = max(b - a for a, b in zip(rd["bytes"], rd["bytes"][1:])) / (r1 - r0)
    ps = rd["psnr"]
    dips = [ps[i - 1] - ps[i] for i in range(1, len(ps))]
    print(f"\nself-distilled RD: {len(ps)} points (largest rate step {100 * spacing:.2f} % of the range), PSNR vs "
          f"the full model {ps[0]:.2f} -> {ps[-1]:.2f} dB, largest dip {max(dips):.4f} dB")
    assert spacing <= 0.01
    assert max(dips) <= 0.05, f"PSNR vs the full model dips by {max(dips):.3f} dB between neighbouring RD points"
    assert ps[-1] > ps[0] + 5 and ps[-1] > 28  # the finest level reproduces the full model's renders closely


def test_encode_inside_the_range_and_info_say_vs_the_full_model(self_built, capsys):
    d, _, out = self_built
    ck = load_checkpoint(out)
    r0, r1 = ck.rate_range()
    for frac in (0.3, 0.77):
        target = int(r0 + frac * (r1 - r0))
        rave = d / f"at{frac}.rave"
        assert main(["encode", str(out), "--rate", str(target), "-o", str(rave), "--quiet"]) == 0
        assert r0 <= rave.stat().st_size <= target
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PSNR vs the full model" in text and "held-out rig views" in text and "vs photos" not in text


def test_build_with_a_camera_file(tmp_path, capsys):
    ply, out = tmp_path / "s.ply", tmp_path / "s.ckpt"
    write_other_tool_ply(other_tool_scene(1), ply)
    frames = []
    for i in range(9):
        a = 2 * math.pi * i / 9
        eye = torch.tensor([2.5 * math.cos(a), 2.5 * math.sin(a), 1.5])
        c2w = torch.linalg.inv(look_at(eye, torch.zeros(3)).double())
        c2w[:3, 1:3] *= -1  # OpenCV -> OpenGL axes, as transforms.json stores them
        frames.append({"transform_matrix": c2w.tolist()})
    cams = tmp_path / "cams.json"
    cams.write_text(json.dumps({"camera_angle_x": math.radians(55), "w": 96, "h": 72, "frames": frames}))
    (tmp_path / "rave.yaml").write_text("num_levels: 3\nrd_points: 64\nchunk_size: 64\nrig_size: 48\n")
    rc = main(["build", str(ply), "--cameras", str(cams), "-o", str(out), "--config", str(tmp_path / "rave.yaml"),
               "--steps", "5"])
    assert rc == 0
    err = capsys.readouterr().err
    assert f"cameras from {cams}: 9 views" in err and "48x36 px" in err and "PSNR vs the full model" in err
    ck = load_checkpoint(out)
    assert ck.meta["targets"] == "self" and ck.meta["sources"]["cameras"] == str(cams)
    assert (ck.test_cameras.width, ck.test_cameras.height) == (48, 36) and len(ck.test_cameras) == 2  # 0 and 8


def _one_line_error(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_inputs_are_one_line_naming_the_file(tmp_path, capsys):
    good = tmp_path / "good.ply"
    write_other_tool_ply(other_tool_scene(), good)
    out = str(tmp_path / "o.ckpt")
    nopose = tmp_path / "nopose.json"
    nopose.write_text(json.dumps({"camera_angle_x": 1.0, "frames": []}))
    err = _one_line_error(capsys, ["build", str(good), "--cameras", str(nopose), "-o", out, "--quiet"])
    assert str(nopose) in err and "no camera poses" in err
    arr = np.zeros(5, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    positions = tmp_path / "positions.ply"
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(positions))
    err = _one_line_error(capsys, ["build", str(positions), "-o", out, "--quiet"])
    assert str(positions) in err and ("not a 3D Gaussian Splatting" in err or "missing" in err)
    empty = tmp_path / "empty.ply"
    write_other_tool_ply(Gaussians.empty(3), empty)
    err = _one_line_error(capsys, ["build", str(empty), "-o", out, "--quiet"])
    assert str(empty) in err and ("empty" in err or "0 Gaussians" in err)
    err = _one_line_error(capsys, ["build", str(good), "--data", str(tmp_path), "--cameras", str(nopose), "-o", out])
    assert "--cameras is for builds without --data" in err
