"""Differentiable Gaussian splatting with gsplat's conventions: gsplat on CUDA, a compiled tile rasterizer on CPU."""

from .api import BACKENDS, render, render_cameras, resolve_backend

__all__ = ["BACKENDS", "render", "render_cameras", "resolve_backend"]
