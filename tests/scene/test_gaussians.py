"""The Gaussians container: validation errors, empty scenes, prefix/subset views, SH degree handling."""

from __future__ import annotations

import pytest
import torch

from rave_viewer.errors import RaveError
from rave_viewer.scene.gaussians import FIELDS, Gaussians, num_sh_bases, sh_degree_from_bases


def check_error(g: Gaussians, *words: str, source: str = "scene.ply", **kw) -> str:
    with pytest.raises(RaveError) as ei:
        g.validate(source=source, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{source}: "), msg
    for w in words:
        assert w in msg, msg
    return msg


def test_random_is_valid_and_shaped():
    for d in range(4):
        g = Gaussians.random(17, d, seed=d)
        assert g.validate() is g
        assert len(g) == 17 and g.sh_degree == d
        assert g.shN.shape == (17, num_sh_bases(d) - 1, 3) and g.colors.shape == (17, num_sh_bases(d), 3)
        assert all(t.dtype == torch.float32 for _, t in g.items())
    assert Gaussians.random(5, 2, seed=1).equal(Gaussians.random(5, 2, seed=1))
    assert not Gaussians.random(5, 2, seed=1).equal(Gaussians.random(5, 2, seed=2))


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values(name, value):
    g = Gaussians.random(8, 2, seed=0)
    t = getattr(g, name)
    t.view(8, -1)[5, -1] = value
    if name == "opacities" and value in (float("inf"), -float("inf")):
        g.validate()  # +-inf logit opacity is legal (opacity exactly 0 or 1)
    else:
        check_error(g, f"'{name}'", "NaN/inf", "Gaussian 5")


@pytest.mark.parametrize(
    "name,shape",
    [
        ("means", (8, 2)),
        ("quats", (8, 3)),
        ("scales", (7, 3)),
        ("opacities", (8, 1)),
        ("sh0", (8, 3)),
        ("sh0", (8, 2, 3)),
    ],
)
def test_wrong_shapes(name, shape):
    g = Gaussians.random(8, 1).as_dict()
    g[name] = torch.zeros(shape)
    check_error(Gaussians(**g), f"'{name}'", str(shape))


def test_wrong_shN():
    g = Gaussians.random(8, 1).as_dict()
    for bad in [(8, 3), (8, 3, 2), (7, 3, 3)]:
        g["shN"] = torch.zeros(bad)
        check_error(Gaussians(**g), "'shN'")
    g["shN"] = torch.zeros(8, 4, 3)  # 5 bases: not a square
    check_error(Gaussians(**g), "SH degree")
    g["shN"] = torch.zeros(8, 24, 3)  # degree 4: unsupported
    check_error(Gaussians(**g), "SH degree")
    with pytest.raises(RaveError):
        sh_degree_from_bases(2)
    assert [sh_degree_from_bases(n) for n in (1, 4, 9, 16)] == [0, 1, 2, 3]


def test_dtype_and_zero_quaternion():
    g = Gaussians.random(4, 0)
    g.scales = g.scales.to(torch.int32)
    check_error(g, "'scales'", "dtype")
    g = Gaussians.random(4, 0)
    g.quats[2] = 0
    check_error(g, "quaternion")


def test_empty_scene():
    for d in range(4):
        e = Gaussians.empty(d)
        assert len(e) == 0 and e.sh_degree == d
        check_error(e, "empty")
        assert e.validate(allow_empty=True) is e
    g = Gaussians.random(10, 3)
    check_error(g.prefix(0), "empty")
    check_error(g.subset(torch.zeros(10, dtype=torch.bool)), "empty")


def test_prefix_is_a_view():
    g = Gaussians.random(20, 3, seed=3)
    p = g.prefix(7)
    assert len(p) == 7 and p.sh_degree == 3
    for (name, a), (_, b) in zip(p.items(), g.items()):
        assert a.data_ptr() == b.data_ptr(), name  # no copy
        assert torch.equal(a, b[:7])
    assert g.prefix(20).equal(g) and len(g.prefix(100)) == 20
    p.means[0, 0] = 123.0
    assert g.means[0, 0] == 123.0


def test_subset_by_index_and_mask():
    g = Gaussians.random(12, 1, seed=4)
    idx = torch.tensor([5, 0, 11, 5])
    s = g.subset(idx)
    assert len(s) == 4
    for (_, a), (_, b) in zip(s.items(), g.items()):
        assert torch.equal(a, b[idx])
    mask = torch.arange(12) % 3 == 0
    m = g.subset(mask)
    assert m.equal(g.subset(torch.tensor([0, 3, 6, 9])))
    assert Gaussians.cat([g.prefix(5), g.subset(torch.arange(5, 12))]).equal(g)


def test_equal_is_bit_exact_and_clone_detaches():
    g = Gaussians.random(6, 1, seed=5)
    h = g.clone()
    assert h.equal(g) and h.means.data_ptr() != g.means.data_ptr()
    h.shN[4, 2, 1] = torch.nextafter(h.shN[4, 2, 1], torch.tensor(1e9))
    assert not h.equal(g)
    assert not g.equal(g.map(lambda t: t.double()))  # dtype matters


def test_sh_degree_change_and_from_dict():
    g = Gaussians.random(6, 3, seed=6)
    t = g.with_sh_degree(1)
    assert t.sh_degree == 1 and torch.equal(t.shN, g.shN[:, :3])
    up = t.with_sh_degree(3)
    assert up.sh_degree == 3 and torch.equal(up.shN[:, :3], t.shN) and not up.shN[:, 3:].any()
    assert Gaussians.from_dict(g.as_dict()).equal(g)
    d = g.as_dict()
    del d["quats"], d["shN"]
    with pytest.raises(RaveError, match="quats, shN"):
        Gaussians.from_dict(d)
