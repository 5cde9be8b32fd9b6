"""PEP 517 backend: setuptools, building the CPU rasterizer against the torch it will be imported with.

The rasterizer (rave_viewer/render/csrc, built by setup.py) is a torch C++ extension: it must be compiled against
the very torch that runs it (torch has no stable C++ ABI across releases). pip builds in an isolated environment,
so this backend chooses where the build's torch comes from:

* torch already installed for the interpreter running this build (the environment pip installs into) and allowed
  by the project's torch requirement: pip will keep it, so the build uses that installation itself (its
  site-packages is appended to sys.path, after the build environment's own packages); nothing is installed.
* otherwise (a fresh virtualenv): the project's torch requirement from pyproject.toml goes into the build
  environment, and the same pip with the same indexes resolves it to the same release as the runtime dependency
  (on this machine the CPU 2.13.0 wheel from local disk).

Everything else is setuptools' own backend.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (the PEP 517 hooks not overridden here)

_PYPROJECT = Path(__file__).resolve().parent / "pyproject.toml"


def _torch_requirement() -> str:
    """The torch requirement of [project].dependencies (the one place that says which torch is allowed)."""
    import tomllib

    for dep in tomllib.loads(_PYPROJECT.read_text())["project"]["dependencies"]:
        if re.match(r"^\s*torch\s*([<>=!~;\[]|$)", dep):
            return dep.strip()
    raise RuntimeError("pyproject.toml lists no torch dependency")


def _installed_torch() -> tuple[str, str] | None:
    """(version, site-packages folder) of the torch installed for this interpreter outside pip's build environment."""
    code = ("import importlib.metadata as m, os; d = m.distribution('torch'); "
            "print(d.version); print(os.path.abspath(d.locate_file('')))")  # fmt: skip
    try:  # -I: without the PYTHONPATH/site changes that hide the target environment from the build
        out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split("\n")
    if out.returncode != 0 or len(lines) < 2 or not lines[0].strip():
        return None
    version, site = lines[0].strip(), lines[1].strip()
    return (version, site) if (Path(site) / "torch" / "__init__.py").is_file() else None


def _usable_installed_torch() -> tuple[str, str] | None:
    from packaging.requirements import Requirement

    found = _installed_torch()
    if found and Requirement(_torch_requirement()).specifier.contains(found[0], prereleases=True):
        return found
    return None


def _torch_for_build() -> list[str]:
    """What the build environment needs for torch: nothing if the build can use an importable or installed one."""
    if importlib.util.find_spec("torch") is not None or _usable_installed_torch():
        return []
    return [_torch_requirement()]


def _expose_installed_torch() -> None:
    if importlib.util.find_spec("torch") is None and (found := _usable_installed_torch()):
        sys.path.append(found[1])


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + _torch_for_build()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + _torch_for_build()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _expose_installed_torch()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _expose_installed_torch()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
