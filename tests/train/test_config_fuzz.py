"""YAML configs of `rave train` and `rave build`: hostile values are one RaveError line before any work starts.

A test per listed case (5000-digit integers, NaN/inf, wrong types, unknown keys, huge counts, non-integer bit
depths, deep nesting) and a seeded structured fuzz of both loaders: every outcome is a RaveError naming the file
or a config whose every value has its declared type and lies within its documented bounds.
"""

from __future__ import annotations

import dataclasses
import random
import typing

import pytest
import yaml

from rave_viewer.errors import RaveError
from rave_viewer.rave import config as rave_config
from rave_viewer.train import config as train_config

LOADERS = {"train": train_config.load_config, "build": rave_config.load_config}


def _error(load, p) -> str:
    with pytest.raises(RaveError) as e:
        load(p)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{p}: ") and len(msg) < 300 + len(str(p)), msg
    return msg


@pytest.mark.parametrize("which", list(LOADERS))
@pytest.mark.parametrize(
    "text, words",
    [
        ("steps: " + "9" * 5000 + "\n", ["too many digits"]),
        ("steps: -" + "9" * 4400 + "\n", ["too many digits"]),
        ("steps: 0x" + "f" * 5000 + "\n", ["'steps'", "<= 10_000_000", "digits"]),
        ("seed: " + "9" * 400 + "\n", ["'seed'", "<="]),
        ("means_lr: " + "9" * 400 + "\n", ["'means_lr'", "finite"]),
        ("means_lr: .nan\n", ["'means_lr'", "finite"]),
        ("means_lr: .inf\n", ["'means_lr'", "finite"]),
        ("means_lr: -.inf\n", ["'means_lr'", "finite"]),
        ("background: [.nan, 0, 0]\n", ["'background'", "finite"]),
        ("background: [0, 0, 1.0e+400]\n", ["'background'", "finite"]),
        ("background: [a, b, c]\n", ["'background'", "numbers"]),
        ("steps: 100000000000\n", ["'steps'", "<= 10_000_000"]),
        ("steps: 7.5\n", ["'steps'", "an integer"]),
        ("steps: '300'\n", ["'steps'", "an integer"]),
        ("steps: [300]\n", ["'steps'", "an integer"]),
        ("steps: {a: 1}\n", ["'steps'", "an integer"]),
        ("steps: 2020-01-01\n", ["'steps'", "an integer", "date"]),
        ("steps: !!binary aGVsbG8=\n", ["'steps'", "bytes"]),
        ("steps: 2020-13-45\n", ["YAML", "month"]),
        ("seed: -1\n", ["'seed'", ">= 0"]),
        ("backend: [1]\n", ["'backend'", "a string"]),
        ("1: 2\nfoo: 3\n", ["unknown"]),
        ("stepz: 10\n", ["unknown", "stepz"]),
        ("[" * 100_000 + "]" * 100_000 + "\n", ["nested too deeply"]),
        ("a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n", ["nested too deeply"]),
        ("steps: !!python/object:os.system ls\n", ["YAML"]),
    ],
)
def test_hostile_yaml_values_are_one_error_line(tmp_path, which, text, words):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    msg = _error(LOADERS[which], p)
    assert all(w in msg for w in words), msg


@pytest.mark.parametrize(
    "which, text, words",
    [
        ("train", "init_num_points: 1000000000\n", ["'init_num_points'", "<= 50_000_000"]),
        ("train", "cap_max: 10000000000\n", ["'cap_max'", "<= 50_000_000"]),
        ("train", "eval_max_views: 10000000\n", ["'eval_max_views'", "<= 100_000"]),
        ("train", "downscale: 100000\n", ["'downscale'", "<= 1024"]),
        ("train", "refine_every: 100000000\n", ["'refine_every'", "<= 10_000_000"]),
        ("train", "train: {steps: 5, init_sky_points: 999999999}\n", ["'init_sky_points'", "<="]),
        ("build", "num_levels: 1000000\n", ["'num_levels'", "<= 64"]),
        ("build", "anchors: 100\n", ["'anchors'", "<= 64"]),
        ("build", "fractions: [" + ", ".join(str(i / 100) for i in range(1, 101)) + "]\n", ["'fractions'", "2..64"]),
        ("build", "rd_points: 1000000000\n", ["'rd_points'", "<= 10_000"]),
        ("build", "chunk_size: 300000\n", ["'chunk_size'", "<= 262_144"]),
        ("build", "test_max_side: 100000\n", ["'test_max_side'", "<= 16_384"]),
        ("build", "importance_batch: 100000\n", ["'importance_batch'", "<= 1024"]),
        ("build", "min_steps: 100000000\n", ["'min_steps'", "<= 10_000_000"]),
        ("build", "quant: {pos_bits: 14.5}\n", ["'quant'", "pos_bits must be an integer 1..21", "float"]),
        ("build", "quant: {pos_bits: '14'}\n", ["'quant'", "pos_bits", "str"]),
        ("build", "quant: {shN_bits: [4, 4, 4.5]}\n", ["'quant'", "shN_bits"]),
        ("build", "quant: {sh0_range: .nan}\n", ["'quant'", "finite"]),
        ("build", "quant: {bogus: 1}\n", ["'quant'", "unknown quantization settings: bogus"]),
        ("build", "quant: [14]\n", ["'quant'", "a mapping"]),
        ("build", "importance_params: [[1], {a: 1}]\n", ["'importance_params'"]),
        ("build", "fractions: [.nan, 1]\n", ["'fractions'"]),
        ("build", "rave: {steps: 5}\nother: 1\n", ["beside 'rave'", "other"]),
        ("build", "rave: 5\n", ["'rave' must be a mapping"]),
        ("build", "rave: {quant: {pos_bits: 14.5}}\n", ["pos_bits"]),
    ],
)
def test_counts_and_build_settings_have_documented_bounds(tmp_path, which, text, words):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    msg = _error(LOADERS[which], p)
    assert all(w in msg for w in words), msg


def test_pos_bits_14_5_in_a_build_config_fails_before_any_work(tmp_path, capsys):
    """It used to fail after the whole build (88 s in one report): now `rave build` exits 2 while reading the
    config, before reading the model or the dataset (neither exists here)."""
    from rave_viewer.cli import main

    cfg = tmp_path / "rave.yaml"
    cfg.write_text("num_levels: 4\nquant:\n  pos_bits: 14.5\n")
    rc = main(["build", str(tmp_path / "scene.ply"), "--data", str(tmp_path), "-o", str(tmp_path / "x.ckpt"),
               "--config", str(cfg), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert "scene.ply" not in err  # refused at the config: the (missing) model was never opened
    assert "pos_bits must be an integer 1..21, got float (14.5)" in err and str(cfg) in err, err
    assert not (tmp_path / "x.ckpt").exists()


@pytest.mark.parametrize("which", list(LOADERS))
def test_unreadable_and_oversized_files(tmp_path, which):
    load = LOADERS[which]
    p = tmp_path / "cfg.yaml"
    p.write_bytes(b"steps: \xff\xfe\n")
    assert "UTF-8" in _error(load, p)
    p.write_text("# padding\n" * 200_000)
    assert "too large" in _error(load, p)
    p.write_text("steps: [1\n")
    assert "YAML" in _error(load, p)


def test_limits_match_the_codec_and_are_documented():
    from rave_viewer.codec.container import MAX_CHUNK_SIZE

    assert rave_config.MAX_CHUNK_SIZE == MAX_CHUNK_SIZE
    for mod in (rave_config, train_config):
        assert "upper limits" in mod.__doc__
    for cls, mod in ((rave_config.BuildConfig, rave_config), (train_config.TrainConfig, train_config)):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, int | None):  # every count has an upper bound
                assert f.metadata.get("max") is not None, f"{cls.__name__}.{f.name} has no upper limit"


# -- fuzz -----------------------------------------------------------------------------------------------------
_RAW = ["9" * 5000, "-" + "9" * 4400, "0x" + "f" * 3000, ".nan", ".inf", "-.inf", "1.0e400", "1e400", "~", "null",
        "true", "no", "''", "'14'", "14.5", "-1", "0", "1", "3", "64", "65", "2147483648", "10000001", "1e3",
        "[]", "[1, 2, 3]", "[.nan, 0, 0]", "[a, b, c]", "{}", "{a: 1}", "[" * 60 + "]" * 60, "{a: " * 60 + "1" + "}" * 60,
        "2020-01-01", "!!binary aGVsbG8=", "!!set {a, b}", "&x [1, *x]", "*undefined", "'\\ud800'", '"\\ud800"',
        "[0.0, 0.5, 1.0]", "[0.2, 0.5, 1]", "{pos_bits: 14.5}", "{pos_bits: 12}", "{shN_bits: [4, 4, '4']}", "lzma",
        "cpu", "iterative", "authors", "[means, quats]", "x" * 500]


def _check_loaded(cfg, cls, mod) -> None:
    """A clean load: every value has its declared type and lies within the field's bounds."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        v, t, meta = getattr(cfg, f.name), hints[f.name], f.metadata
        if v is None:
            assert type(None) in typing.get_args(t), f.name
            continue
        base = [a for a in typing.get_args(t) if a is not type(None)] or [t]
        base = typing.get_origin(base[0]) or base[0]
        if base is float:
            assert type(v) is float and abs(v) < float("inf"), (f.name, v)
        elif base is int:
            assert type(v) is int, (f.name, v)
        else:
            assert isinstance(v, base), (f.name, v)
        nums = v if isinstance(v, list) else [v]
        for x in nums:
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                assert meta.get("min") is None or x >= meta["min"], (f.name, x)
                assert meta.get("max") is None or x <= meta["max"], (f.name, x)
    if mod is rave_config and cfg.quant:
        from rave_viewer.codec import QuantConfig

        QuantConfig.from_dict(cfg.quant)


@pytest.mark.timeout(300)  # a hang guard, not a speed target (timings belong in benchmarks/)
@pytest.mark.parametrize("which", list(LOADERS))
def test_fuzz_yaml_configs(tmp_path, which):
    mod = train_config if which == "train" else rave_config
    cls = mod.TrainConfig if which == "train" else mod.BuildConfig
    load = LOADERS[which]
    names = [f.name for f in dataclasses.fields(cls)]
    defaults = cls().to_dict()
    rng = random.Random({"train": 11, "build": 12}[which])
    seen = {"ok": 0, "error": 0}
    p = tmp_path / "cfg.yaml"
    for i in range(250):
        lines = []
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(names) if rng.random() < 0.85 else rng.choice(["stepz", "1", "[a]", "? [a, b]", "rave",
                                                                              "train", "quant", ""])
            if key in defaults and rng.random() < 0.4:  # a valid value beside the hostile ones
                lines.append(f"{key}: {yaml.safe_dump(defaults[key], default_flow_style=True).strip()}")
                lines[-1] = lines[-1].removesuffix("\n...").removesuffix(" ...")
            else:
                lines.append(f"{key}: {rng.choice(_RAW)}")
        text = "\n".join(lines) + "\n"
        if rng.random() < 0.15:  # nested under the recipe / build section
            section = "train" if which == "train" else "rave"
            text = f"{section}:\n" + "".join(f"  {line}\n" for line in lines)
        p.write_text(text)
        try:
            cfg = load(p)
        except RaveError as e:
            msg = str(e)
            assert "\n" not in msg and msg.startswith(f"{p}: ") and len(msg) < 400 + len(str(p)), (text[:200], msg)
            seen["error"] += 1
        else:
            _check_loaded(cfg, cls, mod)
            seen["ok"] += 1
    assert seen["error"] >= 100 and seen["ok"] >= 10, seen
