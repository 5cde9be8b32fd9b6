"""Where a batch's jobs run: the :class:`Runner` interface and its two implementations.

A runner takes ``(fn, spec)`` submissions and hands back ``(ticket, result)`` pairs as jobs finish; the
scheduler (schedule.py) does everything else, so local and Ray runs share one code path and one job function.

* :class:`LocalRunner`: in this process, one job after another (``rave build-all`` without ``--ray``).
* :class:`RayRunner`: one Ray task per job with per-task CPU (and GPU, when the cluster has them: such jobs
  render with gsplat) resources; Ray's own retries are off (the scheduler retries), a worker that dies is a
  failed result. Ray is an optional extra (``pip install 'rave_viewer[ray]'``), imported only here, lazily.

A new place to run jobs (a process pool, Slurm, Dask) is a new class with these three methods.
"""

from __future__ import annotations

import collections
import logging
import os
from typing import Any, Callable, Protocol

from ..errors import RaveError

Job = Callable[[Any], dict]


class Runner(Protocol):
    """Runs job functions; results come back in the order jobs finish."""

    #: Shown in the progress line ("local", "ray: 4 CPUs, 1 GPU").
    description: str
    #: GPUs each job gets (0: CPU only); jobs with a GPU render with gsplat.
    gpus_per_job: float

    def submit(self, fn: Job, spec: Any) -> Any:
        """Queue ``fn(spec)``; returns a ticket (hashable) that :meth:`next_done` hands back with its result."""

    def next_done(self) -> tuple[Any, dict]:
        """Block until one submitted job has finished; (its ticket, its result dict)."""

    def close(self) -> None:
        """Cancel what is still queued or running and free the runner's resources."""


def crashed(spec: Any, message: str) -> dict:
    """The result of a job whose worker died before returning (worth a retry)."""
    return {"name": getattr(spec, "name", "?"), "status": "failed", "error": message, "retry": True, "reason": "",
            "seconds": 0.0, "summary": None, "notes": [], "traceback": None, "host": None, "pid": None}


class LocalRunner:
    """Jobs run in this process, one after another, when :meth:`next_done` is called."""

    description = "local, one scene at a time"
    gpus_per_job = 0.0

    def __init__(self) -> None:
        self._queue: collections.deque = collections.deque()
        self._n = 0

    def submit(self, fn: Job, spec: Any) -> int:
        self._n += 1
        self._queue.append((self._n, fn, spec))
        return self._n

    def next_done(self) -> tuple[int, dict]:
        if not self._queue:
            raise RuntimeError("next_done() with no job submitted")
        ticket, fn, spec = self._queue.popleft()
        try:
            return ticket, fn(spec)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # a job function that raises instead of returning a failed result
            return ticket, crashed(spec, f"{type(e).__name__}: {' '.join(str(e).split())}"[:300])

    def close(self) -> None:
        self._queue.clear()


#: One line when --ray is given but Ray is not installed.
NO_RAY = "--ray needs Ray, which is not installed: pip install 'rave_viewer[ray]' (or pip install ray)"


def import_ray():
    """The ``ray`` module, or a RaveError saying how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine unless asked
    try:
        import ray
    except ImportError:
        raise RaveError(NO_RAY) from None
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a ``host:port`` cluster address that does not answer (Ray itself would retry for minutes)."""
    import socket

    if "://" in address:  # ray://host:10001 and other schemes: Ray's client reports those itself
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RaveError(f"--ray {address}: expected auto or a cluster address HOST:PORT (the head node's GCS "
                        "port, 6379 by default)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise RaveError(f"--ray {address}: no Ray cluster answers there ({e.strerror or e}); start one with "
                        "'ray start --head' or use --ray auto") from None


class RayRunner:
    """One Ray task per job (``num_cpus``/``num_gpus``/``memory`` per task), on a cluster or a local runtime.

    ``address``: "auto" joins the cluster Ray finds (``RAY_ADDRESS``, or one started with ``ray start`` on this
    machine) and otherwise starts a local runtime with every core, no dashboard; or a cluster address
    (``host:port``, ``ray://host:10001``). When Ray is already initialised in this process (a notebook, a
    test) it is used as it is and left running. Workers must have rave_viewer installed and see the scene and
    output paths (a shared file system).
    ``gpus_per_job``: None = 1 when the cluster has GPUs, else 0.
    """

    def __init__(self, address: str = "auto", *, cpus_per_job: float = 1, gpus_per_job: float | None = None,
                 memory_per_job: int | None = None, quiet: bool = False):
        ray = import_ray()
        self._ray = ray
        self._owned = False
        if not ray.is_initialized():
            if address != "auto":
                check_reachable(address)
            kw = dict(include_dashboard=False, logging_level=logging.WARNING if quiet else logging.INFO,
                      log_to_driver=not quiet)
            try:
                ray.init(address=None if address == "auto" else address, **kw)
            except Exception as e:  # ConnectionError, ValueError (address), RuntimeError, Ray's own
                raise RaveError(f"--ray {address}: cannot start or join a Ray cluster: "
                                f"{' '.join(str(e).split())[:200]}") from None
            self._owned = True
        res = ray.cluster_resources()
        cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
        if cpus_per_job > max(cpus, 0):
            self.close()
            raise RaveError(f"--cpus-per-job {cpus_per_job:g}: the Ray cluster has {cpus:g} CPUs")
        self.gpus_per_job = float(gpus_per_job if gpus_per_job is not None else (1 if gpus >= 1 else 0))
        if self.gpus_per_job > gpus:
            self.close()
            raise RaveError(f"--gpus-per-job {self.gpus_per_job:g}: the Ray cluster has {gpus:g} GPUs")
        self.cpus_per_job = float(cpus_per_job)
        self._opts = {"num_cpus": self.cpus_per_job, "num_gpus": self.gpus_per_job, "max_retries": 0,
                      "retry_exceptions": False}
        if memory_per_job:
            self._opts["memory"] = int(memory_per_job)
        self.description = (f"ray: {cpus:g} CPUs, {gpus:g} GPUs; {self.cpus_per_job:g} CPU"
                            f"{f' + {self.gpus_per_job:g} GPU' if self.gpus_per_job else ''} per scene")
        self._remote: dict = {}
        self._pending: dict = {}  # ObjectRef -> spec

    def submit(self, fn: Job, spec: Any):
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(fn)
        ref = self._remote[fn].options(name=f"rave-build:{getattr(spec, 'name', '?')}", **self._opts).remote(spec)
        self._pending[ref] = spec
        return ref

    def next_done(self):
        ray = self._ray
        if not self._pending:
            raise RuntimeError("next_done() with no job submitted")
        (ref,), _ = ray.wait(list(self._pending), num_returns=1)
        spec = self._pending.pop(ref)
        try:
            return ref, ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the job function raised (it returns failures normally)
            cause = getattr(e, "cause", None) or e
            return ref, crashed(spec, f"{type(cause).__name__}: {' '.join(str(cause).split())}"[:300])
        except ray.exceptions.RayError as e:  # the worker or its node died, the object was lost, OOM kill
            first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
            return ref, crashed(spec, f"the Ray worker died ({type(e).__name__}: {first.strip()[:200]})")

    def close(self) -> None:
        ray = self._ray
        for ref in list(self._pending):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished, or the cluster is gone
                pass
        self._pending.clear()
        if self._owned and ray.is_initialized():
            ray.shutdown()
        self._owned = False


def make_runner(ray: str | None, **kw) -> Runner:
    """``RayRunner(ray, **kw)`` when ``ray`` (an address or "auto") is given, else a :class:`LocalRunner`."""
    if ray is None:
        return LocalRunner()
    return RayRunner(ray, **kw)


__all__ = ["LocalRunner", "NO_RAY", "RayRunner", "Runner", "crashed", "import_ray", "make_runner"]
