"""Builds the compiled CPU rasterizer (rave_viewer/render/csrc) at install time; all other metadata is in pyproject.toml.

The module is named after the torch it is built against (``_rasterize_torch2_13_0_cpu``): rave_viewer/render/cpu.py
imports the one matching the running torch, so a build for another torch is never loaded, and editable installs of
one source tree into virtualenvs with different torch releases do not overwrite each other. build_backend.py makes
the right torch importable in pip's build environment.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = Path("rave_viewer/render/csrc")
SOURCES = ("rasterize.cpp", "project.cpp")


def source_hash() -> str:
    """Same digest as rave_viewer.render.cpu.source_hash (names + bytes of every csrc/*.c*, *.h*)."""
    digest = hashlib.sha1()
    for f in sorted(CSRC.glob("*.[ch]*")):
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:12]


def module_name(torch_version: str) -> str:
    """Same name as rave_viewer.render.cpu.module_name."""
    return "_rasterize_torch" + re.sub(r"[^0-9A-Za-z]+", "_", torch_version)


try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError:  # pip asking what the build needs (no compiling in that step)
    torch = None

if torch is None:

    class BuildRasterizer(build_ext):
        def run(self):
            raise SystemExit(
                "building rave_viewer's CPU rasterizer needs torch in the build environment; install with pip "
                "(build isolation on), or `pip install --no-build-isolation` from an environment that has torch"
            )

    ext_modules = [Extension("rave_viewer.render._rasterize", sources=[])]
else:

    class BuildRasterizer(BuildExtension):
        """torch's BuildExtension (ninja, parallel), one build line, and an in-place copy that never rewrites a live .so."""

        def build_extensions(self):
            where = Path(torch.__file__).parents[1]
            print(f"Compiling the CPU rasterizer against torch {torch.__version__} in {where} (1-3 min)...", flush=True)
            super().build_extensions()

        def copy_extensions_to_source(self):
            # Editable installs copy the module into the source tree. Unlink first: rewriting the file in place
            # would corrupt it under processes that have it mapped (a running viewer or test run).
            build_py = self.get_finalized_command("build_py")
            for ext in self.extensions:
                inplace_file, _ = self._get_inplace_equivalent(build_py, ext)
                if os.path.exists(inplace_file):
                    os.unlink(inplace_file)
            super().copy_extensions_to_source()

    flags = ["-O3", "-g0", "-fopenmp", f"-DRAVE_SOURCE_HASH={source_hash()}"]
    ext_modules = [
        CppExtension(
            f"rave_viewer.render.{module_name(torch.__version__)}",
            sources=[str(CSRC / f) for f in SOURCES],
            extra_compile_args={"cxx": flags},
            extra_link_args=["-fopenmp"],
        )
    ]

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildRasterizer})
