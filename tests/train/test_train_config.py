"""Training config: documented defaults, strict YAML checking, schedule scaling, kNN init, strategy choice."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rave_viewer.errors import RaveError
from rave_viewer.train.config import TrainConfig, describe, load_config
from rave_viewer.train.init import init_gaussians, knn_rms_distance, rgb_to_sh
from rave_viewer.train.schedule import make_strategy, scaled_schedule


def write(tmp_path, text: str, name: str = "cfg.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_every_field_is_documented_and_describe_round_trips(tmp_path):
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("doc"), f"field {f.name} has no documentation"
    text = describe()
    assert load_config(write(tmp_path, text)) == TrainConfig()
    assert "# Number of optimisation steps" in text


def test_empty_and_missing_config_give_defaults(tmp_path):
    assert load_config(None) == TrainConfig()
    assert load_config(write(tmp_path, "")) == TrainConfig()


def test_values_are_read_and_ints_accepted_for_floats(tmp_path):
    cfg = load_config(write(tmp_path, "steps: 123\nmeans_lr: 1\nbackground: [1, 0.5, 0]\nbackend: cpu\n"))
    assert cfg.steps == 123 and cfg.means_lr == 1.0 and isinstance(cfg.means_lr, float)
    assert cfg.background == [1.0, 0.5, 0.0] and cfg.backend == "cpu"


def test_recipe_with_train_section(tmp_path):
    p = write(tmp_path, "name: x\nscene: {preset: objects}\ntrain:\n  steps: 7\n")
    assert load_config(p).steps == 7


@pytest.mark.parametrize(
    "text, words",
    [
        ("stepz: 10\n", ["'stepz'", "unknown config key"]),
        ("steps: ten\n", ["'steps'", "an integer", "str"]),
        ("steps: 1.5\n", ["'steps'", "an integer", "float"]),
        ("steps: true\n", ["'steps'", "an integer", "bool"]),
        ("means_lr: fast\n", ["'means_lr'", "a number"]),
        ("scale_schedule: 1\n", ["'scale_schedule'", "true or false"]),
        ("background: [0, 0]\n", ["'background'", "a list of 3 numbers"]),
        ("background: 0.5\n", ["'background'", "a list of 3 numbers"]),
        ("backend: vulkan\n", ["'backend'", "one of"]),
        ("steps: 0\n", ["'steps'", ">= 1"]),
        ("sh_degree: 4\n", ["'sh_degree'", "<= 3"]),
        ("steps: 10000001\n", ["'steps'", "<= 10_000_000"]),
        ("means_lr: .nan\n", ["'means_lr'", "finite"]),
        ("background: [0, .inf, 0]\n", ["'background'", "finite"]),
        ("steps: " + "9" * 5000 + "\n", ["invalid YAML", "too many digits"]),
        ("train: {steps: 1, bogus: 2}\n", ["'bogus'"]),
        ("train: {}\nextra: 1\n", ["'extra'", "unknown recipe key"]),
        ("- 1\n- 2\n", ["mapping"]),
        ("steps: [1\n", ["invalid YAML", "line"]),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, words):
    p = write(tmp_path, text)
    with pytest.raises(RaveError) as e:
        load_config(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg
    for w in words:
        assert w in msg


def test_missing_config_file(tmp_path):
    with pytest.raises(RaveError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_replace_checks_values():
    assert TrainConfig().replace(steps=5).steps == 5
    with pytest.raises(RaveError, match="'seed'"):
        TrainConfig().replace(seed="x")


def test_schedule_scales_gsplat_defaults_to_the_run_length():
    s = scaled_schedule(TrainConfig(steps=3000, min_refine_every=1))  # factor 0.1
    assert (s.refine_start_iter, s.refine_stop_iter, s.reset_every, s.sh_degree_interval) == (50, 1500, 300, 100)
    assert s.refine_every == 10
    assert scaled_schedule(TrainConfig(steps=30_000)).refine_every == 100
    assert scaled_schedule(TrainConfig(steps=3000)).refine_every == 50  # floored at min_refine_every
    s = scaled_schedule(TrainConfig(steps=300, scale_schedule=False))
    assert (s.refine_start_iter, s.refine_stop_iter) == (500, 15_000)
    assert [s.sh_degree_at(i, 2) for i in (0, 999, 1000, 2000, 5000)] == [0, 0, 1, 2, 2]


def test_strategies():
    from gsplat.strategy import DefaultStrategy

    cfg = TrainConfig(steps=3000, grow_grad2d=3e-4)
    st = make_strategy(cfg, scaled_schedule(cfg), torch.device("cpu"))
    assert isinstance(st, DefaultStrategy) and st.grow_grad2d == 3e-4
    assert (st.refine_start_iter, st.refine_stop_iter, st.refine_every) == (50, 1500, 50)
    if not torch.cuda.is_available():
        with pytest.raises(RaveError, match="mcmc needs CUDA"):
            make_strategy(TrainConfig(strategy="mcmc"), scaled_schedule(TrainConfig()), torch.device("cpu"))


def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(300, 3, generator=g)
    d = torch.cdist(pts.double(), pts.double())
    d.fill_diagonal_(float("inf"))
    ref = d.topk(3, largest=False).values.square().mean(1).sqrt().float()
    torch.testing.assert_close(knn_rms_distance(pts, chunk=64), ref)
    assert knn_rms_distance(pts[:1]).tolist() == [0.0]
    assert knn_rms_distance(pts[:2]).shape == (2,)


def test_init_gaussians():
    pts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    cols = torch.full((5, 3), 0.75)
    g = init_gaussians(pts, cols, TrainConfig(sh_degree=2, init_opacity=0.1), torch.Generator().manual_seed(0))
    g.validate()
    assert g.sh_degree == 2 and len(g) == 5
    assert torch.allclose(torch.sigmoid(g.opacities), torch.full((5,), 0.1))
    assert torch.allclose(g.sh0[:, 0], rgb_to_sh(cols))
    assert torch.isfinite(g.scales).all()  # duplicate points do not give log(0)
    assert torch.allclose(g.scales[1], torch.log(torch.tensor(4 / 3) ** 0.5).expand(3))


def test_bundled_recipes_are_valid():
    from pathlib import Path

    from rave_viewer.train.demo import load_recipe

    assets = Path(__file__).resolve().parents[2] / "assets"
    recipes = sorted(p for p in assets.glob("demo_*.yaml") if not p.stem.endswith("_build"))  # _build: rave build
    assert len(recipes) >= 2
    for p in recipes:
        r = load_recipe(p)
        assert r.name == p.stem and r.scene["preset"] in ("objects", "ground", "garden")
        assert load_config(p) == r.train  # a recipe is also a `rave train --config` file


@pytest.mark.parametrize(
    "text, words",
    [
        ("name: a\nscene: {preset: objects, seed: 0, n_views: 8, width: 32, height: 32, fov: 50}\n", ["'fov'"]),
        ("name: a\nscene: {preset: objects, seed: 0, n_views: 8, width: 32.5, height: 32}\n",
         ["'width'", "an integer"]),
        ("name: a\nscene: {preset: objects, seed: 0, n_views: 8, width: 32}\n", ["height"]),
        ("name: a\nscene: {preset: objects, seed: 0, n_views: 8, width: 32, height: 32}\ntrain: {stepz: 1}\n",
         ["'stepz'"]),
    ],
)
def test_bad_recipes(tmp_path, text, words):
    from rave_viewer.train.demo import load_recipe

    p = write(tmp_path, text, "r.yaml")
    with pytest.raises(RaveError) as e:
        load_recipe(p)
    assert str(p) in str(e.value) and all(w in str(e.value) for w in words)
