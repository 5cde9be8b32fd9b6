"""The compiled CPU rasterizer comes from `pip install` (setup.py): no run compiles, a missing build is one line."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rave_viewer.errors import RaveError
from rave_viewer.render import cpu

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter of this environment, RAVE_JIT unset, JIT caches pointed at ``tmp_path``."""
    full = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path / "torch_ext"), RAVE_JIT_DIR=str(tmp_path / "jit"))
    full.pop("RAVE_JIT", None)
    full.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)  # fmt: skip


def test_the_installed_module_is_the_one_for_this_torch_and_these_sources(monkeypatch):
    monkeypatch.delenv("RAVE_JIT", raising=False)
    monkeypatch.setattr(cpu, "_module", None)
    ext = cpu.load_extension()
    path = Path(ext.__file__)
    assert path.parent == Path(cpu.__file__).parent and path.name.startswith(cpu.module_name() + ".")
    assert ext.source_hash == cpu.source_hash()
    for fn in ("forward", "backward", "project_forward", "project_backward"):
        assert callable(getattr(ext, fn))


def test_rendering_never_compiles_at_run_time(tmp_path):
    """Every compile path of torch raises and no compiler exists, yet a CPU render and its backward work."""
    proc = run_python(
        """
        import torch.utils.cpp_extension as ce

        def refuse(*a, **k):
            raise AssertionError("compiled at run time")

        ce.load = ce.load_inline = ce._jit_compile = ce._write_ninja_file_and_build_library = refuse

        import math, torch
        from rave_viewer.render import render
        from rave_viewer.render import cpu
        from rave_viewer.scene.cameras import intrinsics, look_at
        from rave_viewer.scene.gaussians import Gaussians

        g = Gaussians.random(200, 1, seed=0).map(lambda t: t.requires_grad_(True))
        vm = look_at(torch.tensor([0.0, -3.0, 0.5]), torch.zeros(3))[None].float()
        K = intrinsics(32, 24, math.radians(60))[None].float()
        img, alpha, _ = render(g, vm, K, 32, 24, backend="cpu")
        img.mean().backward()
        assert torch.isfinite(img).all() and img.abs().sum() > 0 and alpha.max() > 0
        assert g.means.grad is not None and g.means.grad.abs().sum() > 0
        print("module", cpu._module.__file__)
        """,
        tmp_path, CXX="no-such-c++-compiler", PATH="/nonexistent",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Building" not in proc.stderr
    assert f"{os.sep}{cpu.module_name()}." in proc.stdout
    assert not (tmp_path / "torch_ext").exists() and not (tmp_path / "jit").exists()


def test_a_build_for_another_torch_is_a_one_line_error(tmp_path):
    """The running torch is 9.9.9: the loader looks for its module, finds only other builds, says how to rebuild."""
    proc = run_python(
        """
        import sys, torch
        torch.__version__ = "9.9.9"
        from rave_viewer.errors import guarded
        from rave_viewer.render.cpu import load_extension
        sys.exit(guarded(load_extension))
        """,
        tmp_path,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: the compiled CPU rasterizer is missing or was built for another torch than 9.9.9")
    assert "pip install -e ." in line and torch.__version__.replace("+", "_").replace(".", "_") in line


def test_a_missing_module_is_a_one_line_error_and_never_a_build(monkeypatch, capsys):
    monkeypatch.delenv("RAVE_JIT", raising=False)
    monkeypatch.setattr(cpu, "_module", None)
    monkeypatch.setattr(cpu, "module_name", lambda version=None: "_rasterize_torch0_0_0_missing")
    with pytest.raises(RaveError) as err:
        cpu.load_extension()
    assert "\n" not in str(err.value) and "pip install -e ." in str(err.value)
    assert "Building" not in capsys.readouterr().err


def test_a_build_from_other_sources_is_refused_in_one_line(monkeypatch):
    """csrc/ edited after the install: the stale module is not used silently."""
    monkeypatch.delenv("RAVE_JIT", raising=False)
    monkeypatch.setattr(cpu, "_module", None)
    monkeypatch.setattr(cpu, "source_hash", lambda: "000000000000")
    with pytest.raises(RaveError, match="built from other sources.*pip install -e .*RAVE_JIT=1") as err:
        cpu.load_extension()
    assert "\n" not in str(err.value)


def test_jit_cache_is_private_to_the_environment_and_keyed_by_torch_and_sources(monkeypatch):
    monkeypatch.delenv("RAVE_JIT_DIR", raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/shared/torch_extensions")  # ignored: that cache was the problem
    d = cpu._build_directory("rave_rasterize_" + cpu.source_hash())
    assert Path(sys.prefix) in d.parents
    assert torch.__version__.replace("+", "_") in d.parent.name and d.name.endswith(cpu.source_hash())


def test_jit_without_a_compiler_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu, "_module", None)
    monkeypatch.setenv("RAVE_JIT", "1")
    monkeypatch.setenv("RAVE_JIT_DIR", str(tmp_path))  # nothing built here yet
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    with pytest.raises(RaveError, match="no C\\+\\+ compiler"):
        cpu.load_extension()


def test_build_backend_builds_against_the_installed_torch():
    """pip's build uses the torch installed here (nothing to install), else asks for the project's requirement."""
    pytest.importorskip("packaging")
    import importlib.metadata

    sys.path.insert(0, str(ROOT))
    try:
        import build_backend
    finally:
        sys.path.remove(str(ROOT))
    assert build_backend._torch_requirement().replace(" ", "").startswith("torch>=")
    version, site = build_backend._usable_installed_torch()
    assert version == importlib.metadata.version("torch") and Path(site) == Path(torch.__file__).parents[1]
    assert build_backend._torch_for_build() == []


@pytest.mark.slow
def test_jit_build_says_why_once_and_is_then_reused(tmp_path):
    """RAVE_JIT=1 compiles into the private cache with one line giving the reason; the next run only loads it."""
    code = "from rave_viewer.render.cpu import load_extension; print(load_extension().source_hash)"
    first = run_python(code, tmp_path, RAVE_JIT="1")
    assert first.returncode == 0, first.stderr
    building = [line for line in first.stderr.splitlines() if "Building" in line]
    assert len(building) == 1 and "RAVE_JIT=1: no build of sources" in building[0]
    assert first.stdout.strip() == cpu.source_hash()
    second = run_python(code, tmp_path, RAVE_JIT="1")
    assert second.returncode == 0 and "Building" not in second.stderr and second.stdout == first.stdout


@pytest.mark.slow
def test_wheel_holds_the_compiled_module_and_the_sources(tmp_path):
    """`pip wheel .` (build isolation, as `pip install .` does) compiles the module into the wheel."""
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, timeout=1800)  # fmt: skip
    (wheel,) = tmp_path.glob("rave_viewer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith(f"rave_viewer/render/{cpu.module_name()}.") and n.endswith(".so") for n in names)
    assert {"rave_viewer/render/csrc/rasterize.cpp", "rave_viewer/render/csrc/project.h"} <= set(names)
    assert not any("/build/" in n or n.endswith(".o") for n in names)
