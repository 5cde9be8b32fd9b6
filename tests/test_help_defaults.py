"""Every default a `--help` text states is the one the code uses (argparse defaults, config dataclass defaults)."""

from __future__ import annotations

import argparse
import re
from types import SimpleNamespace

import pytest

from rave_viewer.cli import COMMANDS, Parser, build_parser, main
from rave_viewer.rave.config import BuildConfig
from rave_viewer.train.config import TrainConfig

#: Flags whose default lives in a config dataclass (the flag is None unless given): command -> (class, aliases).
CONFIGS = {"train": (TrainConfig, {}),
           "build": (BuildConfig, {"levels": "num_levels", "coarsest": "coarsest_fraction"})}


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from rave_viewer.commands import view

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    vp = Parser(prog="rave-view")
    view.add_arguments(vp)
    return {**sub.choices, "rave-view": vp}


def _stated(parser: argparse.ArgumentParser, action: argparse.Action) -> list[tuple[bool, str]]:
    """(prose?, text) of each "(default X)" / "(default: prose)" in the action's help as --help prints it."""
    text = " ".join(parser._get_formatter()._expand_help(action).split())
    return [(colon == ":", rest) for colon, rest in re.findall(r"\(default(:?)\s+([^()]*)\)", text)]


def _value(text: str) -> str:
    """The value of "(default 8080; the next free one ...)" / "(default auto: gsplat ...)": before ; or :."""
    return re.split(r"[;:]", text)[0].strip()


def _same(stated: str, actual) -> bool:
    if isinstance(actual, (list, tuple)):
        return stated.split() == [str(v) for v in actual]
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        try:
            return float(stated.replace(",", "").replace("_", "")) == actual
        except ValueError:
            return False
    return stated == str(actual)


def _rig(name: str):
    from rave_viewer.rave import rig

    return getattr(rig, name)


#: Defaults a config leaves empty (None) and the code fills in: (command, dest) -> the value used.
RESOLVED = {("build", "rig_views"): lambda: _rig("DEFAULT_VIEWS")}


def _build_help(name: str):
    from rave_viewer.commands import build

    return getattr(build, name)


def _actual(command: str, action: argparse.Action):
    if action.default is not None:
        return action.default
    cls, aliases = CONFIGS.get(command, (None, {}))
    name = aliases.get(action.dest, action.dest)
    assert cls is not None and name in cls.__dataclass_fields__, (
        f"{command} {action.option_strings}: states a default, but neither argparse nor a config has one")
    value = getattr(cls(), name)
    if value is None and (command, action.dest) in RESOLVED:
        return RESOLVED[command, action.dest]()
    return value


def _build_steps_rule(text: str) -> None:
    from rave_viewer.rave.build import DEFAULT_STEPS

    m = re.fullmatch(r"(\S+) % of the model's training steps from its run record scene\.json beside scene\.ply, "
                     r"rounded, at least (\d+); (\d+) without a record", text)
    d = BuildConfig()
    assert m, text
    assert (float(m[1]), int(m[2]), int(m[3])) == (100 * d.finetune_fraction, d.min_steps, DEFAULT_STEPS), text


#: Defaults stated in words: (command, dest) -> check of the words against the code.
PROSE = {
    ("build", "steps"): _build_steps_rule,
    ("generate", "radius"): lambda text: text == "the preset's",
    ("eval", "data"): lambda text: text == "the test views stored in the checkpoint",
    ("rave-view", "scene"): lambda text: "trained_scenes/" in text,
    ("build", "rig_size"): lambda text: text == "sqrt(Gaussians) rounded to 32, within %d..%d" % _rig("SIZE_RANGE"),
    ("build", "downscale"): lambda text: text == _build_help("DOWNSCALE_RULE"),
    ("build", "views"): lambda text: text == _build_help("views_rule")() + "; printed at start",
    ("build", "max_side"): lambda text: text == _build_help("side_rule")() + "; printed at start",
    ("encode", "format_version"): lambda text: _format_version_rule(text),
    ("build", "chunk_size"): lambda text: text == "the backbone's, " + _chunk_rule(),
}


def _chunk_rule() -> str:
    """--chunk-size's default in words: every backbone's own default (BuildConfig leaves it empty)."""
    from rave_viewer.rave.backbone import GaussianBackbone
    from rave_viewer.rave.config import BuildConfig
    from rave_viewer.scaffold.backbone import ScaffoldBackbone

    assert BuildConfig().chunk_size is None
    return f"{GaussianBackbone.default_chunk_size} Gaussians or {ScaffoldBackbone.default_chunk_size} anchors"


def _format_version_rule(text: str) -> bool:
    """--format-version's default in words: the writer's default version, or the newest when the settings need it."""
    from rave_viewer.codec.container import DEFAULT_WRITE_VERSION, FORMAT_VERSION

    return (text.startswith(f"{DEFAULT_WRITE_VERSION}, 3 when the preset coarsens faint")
            and f"{FORMAT_VERSION} when it transform-codes the SH rest" in text)


def test_help_output_is_what_the_parsers_say(capsys):
    for name, parser in _parsers().items():
        argv = [name, "--help"] if name in COMMANDS else None
        if argv is None:
            from rave_viewer.cli import view_main

            assert view_main(["--help"]) == 0
        else:
            assert main(argv) == 0
        out = " ".join(capsys.readouterr().out.split())
        for a in parser._actions:
            if a.help and a.help is not argparse.SUPPRESS:
                assert " ".join(parser._get_formatter()._expand_help(a).split()) in out, (name, a.dest)


def test_every_stated_default_is_the_code_default():
    checked = 0
    for name, parser in _parsers().items():
        for a in parser._actions:
            if not a.help or a.help is argparse.SUPPRESS:
                continue
            for prose, text in _stated(parser, a):
                if prose:
                    check = PROSE.get((name, a.dest))
                    assert check is not None, f"{name} {a.option_strings}: a default in words; add a check to PROSE"
                    assert check(text) is not False, (name, a.dest, text)
                    if (name, a.dest) != ("build", "steps"):
                        assert a.default is None, (name, a.dest)
                else:
                    actual = _actual(name, a)
                    assert _same(_value(text), actual), f"{name} {a.option_strings}: help {text!r}, code {actual!r}"
                checked += 1
    assert checked >= 30


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_config_backed_flags_set_the_config_key_the_help_quotes(command, tmp_path, monkeypatch, capsys):
    """Each flag whose stated default is a config field's really sets that field (so the alias is right)."""
    import rave_viewer.rave.build as build_mod
    import rave_viewer.train.run as run_mod

    seen = {}

    def fake_train(data_dir, out, cfg, **kw):
        seen["cfg"] = cfg
        r = SimpleNamespace(interrupted=False, metrics={"train_psnr": 1.0, "test_psnr": None}, gaussians=[],
                            wall_time_s=0.0, backend="cpu")
        return r, out

    def fake_build(ply, data, out, cfg, **kw):
        seen["cfg"] = cfg  # with --quiet the command prints nothing about the returned checkpoint

    monkeypatch.setattr(run_mod, "train_folder", fake_train)
    monkeypatch.setattr(build_mod, "build", fake_build)
    (tmp_path / "data").mkdir()
    (tmp_path / "m.ply").write_bytes(b"ply\n")
    base = ([command, str(tmp_path / "data"), "-o", str(tmp_path / "o.ply")] if command == "train" else
            [command, str(tmp_path / "m.ply"), "--data", str(tmp_path / "data"), "-o", str(tmp_path / "o.ckpt")])
    cls, aliases = CONFIGS[command]
    parser = _parsers()[command]
    for a in parser._actions:
        if a.default is not None or not any(not prose for prose, _ in _stated(parser, a)) or not a.option_strings:
            continue
        field = aliases.get(a.dest, a.dest)
        default = _actual(command, a)
        other = ([c for c in a.choices if c != default][0] if a.choices else
                 default / 2 if isinstance(default, float) else default + 1)
        seen.clear()
        assert main([*base, a.option_strings[-1], str(other), "--quiet"]) == 0, capsys.readouterr().err
        assert getattr(seen["cfg"], field) == other, (command, a.dest, field)
        capsys.readouterr()
