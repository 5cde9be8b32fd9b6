"""Compiled C++/OpenMP tile rasterizer (built once, cached) wrapped in a torch.autograd.Function."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
from pathlib import Path

import torch
from torch import Tensor

from ..errors import RaveError

SOURCE = Path(__file__).parent / "csrc" / "rasterize.cpp"
TILE_SIZE = 16
_lock = threading.Lock()
_module = None


def _build_directory(name: str) -> Path:
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__.replace('+', '_')}"
    return Path(root) / tag / name


def load_extension():
    """The compiled rasterizer module; compiles it on first use (about a minute) and caches it on disk."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is not None:
            return _module
        try:
            source = SOURCE.read_bytes()
        except OSError as e:
            raise RaveError(f"cannot read the CPU rasterizer source: {e.strerror}", SOURCE) from None
        name = "rave_rasterize_" + hashlib.sha1(source).hexdigest()[:12]
        build_dir = _build_directory(name)
        compiler = os.environ.get("CXX", "c++")
        built = any(build_dir.glob(f"{name}*.so")) if build_dir.is_dir() else False
        if not built:
            if shutil.which(compiler) is None:
                raise RaveError(
                    f"no C++ compiler ('{compiler}') found to build the CPU rasterizer; install g++ "
                    "(e.g. apt-get install build-essential) or render with CUDA"
                )
            print("Building the CPU rasterizer (first use, ~1 min)...", file=sys.stderr, flush=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        from torch.utils.cpp_extension import load

        try:
            _module = load(
                name=name,
                sources=[str(SOURCE)],
                extra_cflags=["-O3", "-fopenmp"],
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
        return _module


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
