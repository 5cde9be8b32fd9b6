"""Neural Gaussian decoding (exact parameterisation, opacity mask) and anchor growing/pruning on hand-made anchors."""

from __future__ import annotations

import math

import pytest
import torch

from rave_viewer.render.sh import SH_C0
from rave_viewer.scaffold.grow import AnchorOptim, AnchorStrategy
from rave_viewer.scaffold.init import init_model, voxelize
from rave_viewer.scaffold.model import ScaffoldMLPs, ScaffoldModel, ScaffoldSpec, decode, logit_of_tanh
from rave_viewer.scene.cameras import Cameras, look_at


def _constant_mlps(spec: ScaffoldSpec, opacity_pre: list[float], cov: list[float], color_pre: list[float]):
    """MLPs whose outputs ignore the input: zero last-layer weights, the given biases."""
    m = ScaffoldMLPs(spec)
    with torch.no_grad():
        for name, bias in (("mlp_opacity", opacity_pre), ("mlp_cov", cov), ("mlp_color", color_pre)):
            last = getattr(m, name)[2]
            last.weight.zero_()
            last.bias.copy_(torch.tensor(bias))
    return m


def test_decode_is_the_published_parameterisation():
    spec = ScaffoldSpec(feat_dim=4, n_offsets=2, voxel_size=0.1)
    cov = [0.3, -0.2, 1.0, 2.0, 0.0, 0.0, 0.0] + [0.0] * 7
    mlps = _constant_mlps(spec, opacity_pre=[0.7, -0.4], cov=cov, color_pre=[0.0, 1.0, -2.0, 0.0, 0.0, 0.0])
    params = {"anchor": torch.tensor([[1.0, 2.0, 3.0]]), "offset": torch.tensor([[[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]]]),
              "anchor_feat": torch.randn(1, 4), "scaling": torch.log(torch.tensor([[0.2, 0.2, 0.4, 0.05, 0.1, 0.2]]))}
    ng = decode(params, mlps, spec, torch.zeros(3))
    g = ng.gaussians
    assert ng.mask.tolist() == [True, False] and len(g) == 1  # tanh(-0.4) < 0: masked out
    assert torch.allclose(torch.sigmoid(g.opacities), torch.tanh(torch.tensor([0.7])))
    assert torch.allclose(g.means, torch.tensor([[1.0 + 0.5 * 0.2, 2.0 - 0.2, 3.0 + 2.0 * 0.4]]))
    scales = torch.tensor([0.05, 0.1, 0.2]) * torch.sigmoid(torch.tensor([0.3, -0.2, 1.0]))
    assert torch.allclose(torch.exp(g.scales[0]), scales) and torch.allclose(ng.scales[0], scales)
    assert torch.allclose(g.quats[0], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    rgb = torch.sigmoid(torch.tensor([0.0, 1.0, -2.0]))
    assert torch.allclose(SH_C0 * g.sh0[0, 0] + 0.5, rgb) and g.sh_degree == 0


def test_logit_of_tanh_is_stable_and_exact():
    a = torch.tensor([1e-7, 1e-3, 0.5, 3.0, 20.0, 80.0], dtype=torch.float64, requires_grad=True)
    z = logit_of_tanh(a)
    assert torch.isfinite(z).all()
    assert torch.allclose(torch.sigmoid(z[:4]), torch.tanh(a[:4]), rtol=1e-9)
    (g,) = torch.autograd.grad(torch.sigmoid(z).sum(), [a])  # the chain rule gives back d tanh / da
    assert torch.allclose(g, 1 - torch.tanh(a) ** 2, atol=1e-9)
    z32 = logit_of_tanh(torch.tensor([1e-7, 0.5, 40.0]))
    assert torch.isfinite(z32).all()


def test_distance_inputs_change_the_mlp_widths():
    spec = ScaffoldSpec(feat_dim=8, n_offsets=3, opacity_dist=True)
    m = ScaffoldMLPs(spec)
    assert m.mlp_opacity[0].in_features == 12 and m.mlp_cov[0].in_features == 11
    assert m.mlp_color[2].out_features == 9 and m.mlp_cov[2].out_features == 21


def test_voxelized_init():
    pts = torch.tensor([[0.01, 0.0, 0.0], [0.02, 0.01, 0.0], [0.31, 0.0, 0.0], [0.29, 0.0, 0.0]])
    assert torch.allclose(voxelize(pts, 0.1), torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]]))
    m = init_model(pts, ScaffoldSpec(voxel_size=0.1), torch.Generator().manual_seed(0))
    assert len(m) == 2 and torch.count_nonzero(m.params["anchor_feat"]) == 0
    assert torch.count_nonzero(m.params["offset"]) == 0
    assert torch.allclose(m.params["scaling"], torch.full((2, 6), math.log(0.3)))


def _optim(model: ScaffoldModel) -> AnchorOptim:
    lrs = {"anchor": 0.0, "offset": 0.01, "anchor_feat": 0.01, "scaling": 0.01}
    return AnchorOptim(model.params, lrs, model.mlps, {"mlp_opacity": 1e-3, "mlp_cov": 1e-3, "mlp_color": 1e-3})


def _step(optim: AnchorOptim, spec: ScaffoldSpec, model_mlps):
    ng = decode(optim.params, model_mlps, spec, torch.tensor([0.0, 0.0, -5.0]))
    loss = ng.gaussians.sh0.square().sum() + ng.gaussians.means.square().sum()
    loss.backward()
    optim.step()


def test_growing_adds_anchors_where_offsets_reach_empty_cells():
    k = 8
    spec = ScaffoldSpec(feat_dim=4, n_offsets=k, voxel_size=0.1)
    model = init_model(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), spec, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.params["scaling"][:, :3] = math.log(0.1)
        model.params["offset"][0] = torch.tensor([5.0, 0.0, 0.0])  # all 8 offsets of anchor 0 at (0.5, 0, 0)
        model.params["anchor_feat"][0] = torch.tensor([1.0, -2.0, 3.0, 0.5])
    optim = _optim(model)
    _step(optim, spec, model.mlps)  # Adam moments exist before the surgery
    feat0 = optim.params["anchor_feat"][0].detach().clone()
    st = AnchorStrategy(2, n_offsets=k, voxel_size=0.1, update_init_factor=1, update_depth=1)
    st.grad_visits[:] = 100
    st.grad_accum[:k] = 100 * 1e-3  # mean 1e-3 > 2e-4: anchor 0's offsets want to grow
    st.anchor_visits[:] = 1  # not judged for pruning yet
    added, removed = st.adjust(optim, interval=100, generator=torch.Generator().manual_seed(0))
    assert (added, removed) == (1, 0) and len(optim) == 3
    p = optim.params
    assert torch.allclose(p["anchor"][2], torch.tensor([0.5, 0.0, 0.0]))
    assert torch.equal(p["anchor_feat"][2], feat0)  # the max over its sources (all of anchor 0)
    assert torch.allclose(p["scaling"][2], torch.full((6,), math.log(0.1)))
    assert torch.count_nonzero(p["offset"][2]) == 0
    assert st.grad_accum.numel() == 3 * k and st.opacity_accum.numel() == 3
    for f, t in p.items():
        state = optim.opts[f].state.get(t)
        assert state is None or state["exp_avg"].shape == t.shape
    _step(optim, spec, model.mlps)  # the resized optimiser keeps working


def test_pruning_removes_transparent_anchors():
    k = 2
    spec = ScaffoldSpec(feat_dim=4, n_offsets=k, voxel_size=0.1)
    model = init_model(torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]]), spec, torch.Generator().manual_seed(0))
    optim = _optim(model)
    _step(optim, spec, model.mlps)
    st = AnchorStrategy(3, n_offsets=k, voxel_size=0.1, min_opacity=0.005)
    st.anchor_visits[:] = torch.tensor([100.0, 100.0, 10.0])  # anchor 2 not judged: too few visits
    st.opacity_accum[:] = torch.tensor([50.0, 0.1, 0.0])  # anchor 1: 0.001 per visit < 0.005
    feat2 = optim.params["anchor_feat"][2].detach().clone()
    added, removed = st.adjust(optim, interval=100, generator=torch.Generator().manual_seed(0))
    assert (added, removed) == (0, 1) and len(optim) == 2
    assert optim.params["anchor"][:, 0].tolist() == [0.0, 2.0]
    assert torch.equal(optim.params["anchor_feat"][1], feat2)
    assert st.anchor_visits.tolist() == [0.0, 10.0]  # judged anchors start a new count
    assert float(optim.params["scaling"].detach()[:, 3:].max()) == pytest.approx(0.05)  # the authors' clamp (was 0.46)
    _step(optim, spec, model.mlps)


def test_a_view_that_sees_no_anchor_renders_the_background(trained):
    cams = Cameras(look_at(torch.tensor([0.0, 0.0, 50.0]), torch.tensor([0.0, 0.0, 100.0]))[None].float(),
                   torch.tensor([[[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]]), 32, 32)
    img = trained.model.render(cams, backend="cpu", background=torch.tensor([0.2, 0.4, 0.6]))
    assert torch.allclose(img, torch.tensor([0.2, 0.4, 0.6]).expand(1, 32, 32, 3))


def test_exported_gaussians_render_the_same_picture_at_their_viewpoint(trained, scaffold_dataset, tmp_path):
    from rave_viewer.render import render
    from rave_viewer.scene.ply import read_ply, write_ply

    cam = scaffold_dataset.test[0]
    g = trained.model.to_gaussians(cam.centers[0])
    assert g.sh_degree == 0 and len(g) <= trained.model.num_neural()
    write_ply(g, tmp_path / "neural.ply")
    back = read_ply(tmp_path / "neural.ply")
    with torch.no_grad():
        ref = trained.model.render(cam, backend="cpu", cull=False)
        img, _, _ = render(back, cam.viewmats, cam.Ks, cam.width, cam.height, backend="cpu")
    assert (img - ref).abs().max() < 1e-4
