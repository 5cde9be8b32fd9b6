"""What a benchmark ran on, said the same way by every script (CPU model, cores, threads, versions, load)."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(modules: tuple[str, ...] = ()) -> dict:
    """Machine facts as a dict (stored with results): CPU, cores, torch and its threads, CUDA, load, ``modules``."""
    import torch

    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    versions = {}
    for mod in modules:
        try:
            versions[mod] = getattr(__import__(mod), "__version__", "?")
        except ImportError:
            versions[mod] = "not installed"
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "os": platform.platform(terse=True),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "load_average_1min": load,
            "versions": versions}


def machine_line(modules: tuple[str, ...] = ()) -> str:
    """One line for a table's caption."""
    m = machine(modules)
    extra = "".join(f", {k} {v}" for k, v in m["versions"].items())
    gpu = f", GPU {m['cuda']}" if m["cuda"] else ", no GPU"
    return (f"{m['cpu']}, {m['cores']} logical CPUs{gpu}, {m['os']}, Python {m['python']}, torch {m['torch']} "
            f"({m['torch_threads']} threads){extra}; 1-min load average {m['load_average_1min']}")
