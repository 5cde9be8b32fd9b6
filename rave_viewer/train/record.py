"""What every training run record holds besides its figures: versions, machine, load; JSON-safe values."""

from __future__ import annotations

import math
import os
from typing import Any

import torch


def load1() -> float:
    """The 1-minute system load average (other work competing for the cores); NaN where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return float("nan")


def versions(**extra: str) -> dict[str, str]:
    """rave_viewer, torch (+ ``extra``, e.g. gsplat) and Python versions of a run."""
    import platform

    from .. import __version__

    return {"rave_viewer": __version__, "torch": torch.__version__, **extra, "python": platform.python_version()}


def machine(device: str, load_average: tuple[float, ...] = ()) -> dict[str, Any]:
    """Platform, cores, torch threads, the CUDA device (when ``device`` is one) and the load at start and end."""
    import platform

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if device.startswith("cuda") else None,
            "load_average_1min": [round(v, 2) for v in load_average]}


def jsonable(x: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x
