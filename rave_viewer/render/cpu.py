"""Compiled C++/OpenMP CPU backend (built at install time): fused projection + SH, and the tile rasterizer."""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import sys
import threading
from pathlib import Path

import torch
from torch import Tensor

from ..errors import RaveError

CSRC = Path(__file__).parent / "csrc"
SOURCES = ("rasterize.cpp", "project.cpp")  # (+ project.h, hashed too)
TILE_SIZE = 16
REBUILD = "run `pip install -e .` in the project again (or `pip install .`)"
_lock = threading.Lock()
_module = None


def source_hash() -> str:
    """Digest of every csrc/*.c*, *.h* (names + bytes); setup.py embeds the same one in the compiled module."""
    digest = hashlib.sha1()
    for f in sorted(CSRC.glob("*.[ch]*")):
        try:
            digest.update(f.name.encode() + f.read_bytes())
        except OSError as e:
            raise RaveError(f"cannot read the CPU rasterizer source: {e.strerror}", f) from None
    return digest.hexdigest()[:12]


def module_name(torch_version: str | None = None) -> str:
    """The compiled module's name for a torch release: ``_rasterize_torch2_13_0_cpu`` (setup.py names it so)."""
    return "_rasterize_torch" + re.sub(r"[^0-9A-Za-z]+", "_", torch_version or torch.__version__)


def _built_for() -> list[str]:
    """Torch tags of the compiled modules lying beside this file (for the error message)."""
    prefix = "_rasterize_torch"
    return sorted({p.name.split(".")[0][len(prefix):] for p in Path(__file__).parent.glob(prefix + "*.so")})


def _load_installed():
    """The module compiled by ``pip install`` for the running torch; a one-line RaveError when there is none."""
    name = module_name()
    try:
        module = importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.{name}":
            raise
        others = _built_for()
        found = f" (found builds for torch {', '.join(others)} only)" if others else ""
        raise RaveError(
            f"the compiled CPU rasterizer is missing or was built for another torch than {torch.__version__}"
            f"{found}: {REBUILD}"
        ) from None
    except ImportError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RaveError(f"the compiled CPU rasterizer for torch {torch.__version__} does not load ({first}): "
                        f"{REBUILD}") from None
    built = getattr(module, "source_hash", None)
    if CSRC.is_dir() and built != source_hash():
        raise RaveError(f"the compiled CPU rasterizer was built from other sources than {CSRC} (changed since "
                        f"install): {REBUILD}, or set RAVE_JIT=1 to compile them at run time")
    return module


def _build_directory(name: str) -> Path:
    """JIT build folder, private to this environment and keyed by Python, torch and (in ``name``) the sources."""
    root = os.environ.get("RAVE_JIT_DIR") or os.path.join(sys.prefix, "var", "cache", "rave_viewer", "jit")
    tag = f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__.replace('+', '_')}"
    return Path(root) / tag / name


STALE_LOCK_SECONDS = 600


def _clear_stale_lock(build_dir: Path) -> None:
    """Remove a build lock left by a killed build (torch would wait on it forever); a live build is younger."""
    import time

    lock = build_dir / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_SECONDS:
        print(f"Removing a stale build lock left by an interrupted build: {lock}", file=sys.stderr)
        lock.unlink(missing_ok=True)


def _import_file(name: str, path: Path):
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_jit():
    """RAVE_JIT=1 (developers editing csrc/): compile the current sources at run time, once per environment."""
    digest = source_hash()
    name = "rave_rasterize_" + digest
    build_dir = _build_directory(name)
    built = build_dir / f"{name}.so"
    if built.is_file():  # import it directly: torch's load() would re-run ninja, which rebuilds on any mtime change
        try:
            return _import_file(name, built)
        except ImportError as e:
            reason = f"the build in {build_dir} does not load ({str(e).strip().splitlines()[0]})"
    else:
        reason = f"no build of sources {digest} for torch {torch.__version__} in {build_dir}"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise RaveError(
            f"no C++ compiler ('{compiler}') found to build the CPU rasterizer (RAVE_JIT=1); install g++ "
            "(e.g. apt-get install build-essential), unset RAVE_JIT, or render with CUDA"
        )
    print(f"Building the CPU rasterizer (RAVE_JIT=1: {reason}), 1-3 min...", file=sys.stderr, flush=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale_lock(build_dir)
    from torch.utils.cpp_extension import load

    try:
        return load(
            name=name,
            sources=[str(CSRC / f) for f in SOURCES],
            extra_cflags=["-O3", "-fopenmp", f"-DRAVE_SOURCE_HASH={digest}"],
            extra_ldflags=["-fopenmp"],
            build_directory=str(build_dir),
            verbose=False,
        )
    except (RuntimeError, OSError, ImportError) as e:
        last = [line for line in str(e).strip().splitlines() if line.strip()]
        raise RaveError(
            f"building the CPU rasterizer failed ({last[-1] if last else type(e).__name__}); "
            f"build directory {build_dir}"
        ) from None


def load_extension():
    """The compiled rasterizer module, built by ``pip install`` (never compiled at run time unless RAVE_JIT=1)."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            _module = _load_jit() if os.environ.get("RAVE_JIT", "") not in ("", "0") else _load_installed()
        return _module


class ProjectCPU(torch.autograd.Function):
    """Projection + SH colour for C cameras; gradients for means, quats, scales (activated), sh0, shN."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, sh0, shN, viewmats, Ks, campos, width, height, near_plane,
                far_plane, eps2d, sh_degree):
        ext = load_extension()
        f32 = lambda t: t.detach().to(torch.float32).contiguous()  # noqa: E731
        inputs = [f32(t) for t in (means, quats, scales, opacities, sh0, shN, viewmats, Ks, campos)]
        ctx.args = (int(width), int(height), float(near_plane), float(far_plane), float(eps2d), int(sh_degree))
        means2d, conics, colors, depths, radii = ext.project_forward(*inputs, *ctx.args)
        ctx.save_for_backward(*inputs, radii)
        ctx.dtypes = [t.dtype for t in (means, quats, scales, sh0, shN)]
        ctx.mark_non_differentiable(depths, radii)
        dt = means.dtype
        return means2d.to(dt), conics.to(dt), colors.to(dt), depths.to(dt), radii

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, v_means2d, v_conics, v_colors, _v_depths, _v_radii):
        ext = load_extension()
        *inputs, radii = ctx.saved_tensors
        f32 = lambda t: t.to(torch.float32).contiguous()  # noqa: E731
        grads = ext.project_backward(*inputs, *ctx.args, radii, f32(v_means2d), f32(v_conics), f32(v_colors))
        g_means, g_quats, g_scales, g_sh0, g_shN = (g.to(d) for g, d in zip(grads, ctx.dtypes))
        return g_means, g_quats, g_scales, None, g_sh0, g_shN, *([None] * 9)


class RasterizeCPU(torch.autograd.Function):
    """Per-pixel compositing of projected Gaussians; gradients for means2d, conics, colors, opacities (+bg)."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, radii, backgrounds, width, height):
        ext = load_extension()
        f32 = lambda t: t.detach().to(torch.float32).contiguous()  # noqa: E731
        args = [f32(means2d), f32(conics), f32(colors), f32(opacities)]
        radii = radii.to(torch.int32).contiguous()
        bg = f32(backgrounds)
        image, alpha, T_final, last, tile_offsets, isect_gid, isect_row, row_offsets = ext.forward(
            *args, f32(depths), radii, bg, int(width), int(height)
        )
        ctx.save_for_backward(*args, radii, bg, T_final, last, tile_offsets, isect_gid, isect_row, row_offsets)
        ctx.size = (int(width), int(height))
        ctx.dtypes = [t.dtype for t in (means2d, conics, colors, opacities, backgrounds)]
        return image.to(means2d.dtype), alpha.to(means2d.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, v_image, v_alpha):
        ext = load_extension()
        means2d, conics, colors, opacities, radii, bg, T_final, last, *binning = ctx.saved_tensors
        v_image = v_image.to(torch.float32).contiguous()
        v_alpha = v_alpha.to(torch.float32).contiguous()
        grads = ext.backward(
            means2d, conics, colors, opacities, radii, bg, *ctx.size, T_final, last, *binning, v_image, v_alpha
        )
        v_bg = None
        if ctx.needs_input_grad[6]:
            v_bg = (v_image * T_final[..., None]).sum(dim=(1, 2))
        out = [g.to(d) for g, d in zip(grads, ctx.dtypes)]
        return (*out, None, None, None if v_bg is None else v_bg.to(ctx.dtypes[4]), None, None)


def project(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    sh0: Tensor,
    shN: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float,
    far_plane: float,
    eps2d: float,
    sh_degree: int,
):
    """Compiled equivalent of projection.project + sh.sh_to_rgb (same math, doubles inside, one pass).

    Args:
        means [N,3], quats [N,4], scales [N,3] (activated), opacities [N] (activated; radii only, no gradient),
        sh0 [N,1,3], shN [N,K,3], viewmats [C,4,4], Ks [C,3,3].
    Returns:
        means2d [C,N,2], conics [C,N,3], colors [C,N,3], depths [C,N], radii [C,N,2] int32 (0 = culled).
    """
    if means.device.type != "cpu":
        raise RaveError(f"the cpu backend needs CPU tensors, got {means.device}")
    campos = torch.linalg.inv(viewmats.detach().double())[:, :3, 3]
    return ProjectCPU.apply(
        means, quats, scales, opacities.detach(), sh0, shN, viewmats.detach(), Ks.detach(), campos,
        width, height, near_plane, far_plane, eps2d, sh_degree,
    )


def rasterize(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    depths: Tensor,
    radii: Tensor,
    backgrounds: Tensor,
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Composite projected Gaussians into images.

    Args:
        means2d: [C, N, 2], conics: [C, N, 3], colors: [C, N, 3], opacities: [C, N], depths: [C, N] (sort key),
        radii: [C, N, 2] int (0 = culled), backgrounds: [C, 3].
    Returns:
        colors [C, H, W, 3], alphas [C, H, W, 1].
    """
    if means2d.device.type != "cpu":
        raise RaveError(f"the cpu backend needs CPU tensors, got {means2d.device}")
    return RasterizeCPU.apply(means2d, conics, colors, opacities, depths, radii, backgrounds, width, height)
