"""Many scenes: one ``rave build`` job per scene, run by a :class:`Runner` (local or Ray), resumable, catalogued.

* :mod:`.jobs`: which scenes there are (a folder layout or a YAML/CSV manifest) -> :class:`JobSpec` list.
* :mod:`.fingerprint`: content hashes of a job's inputs, so a re-run skips what is up to date.
* :mod:`.job`: :func:`run_job`, the one job function every runner calls (build, sidecar, summary).
* :mod:`.runners`: the :class:`Runner` interface; :class:`LocalRunner` (one after another) and
  :class:`RayRunner` (Ray tasks with per-task CPU/GPU resources; Ray is an optional extra).
* :mod:`.schedule`: submit, retry failures up to N times, progress bar over scenes.
* :mod:`.catalogue`: ``catalogue.csv`` / ``catalogue.md`` / ``catalogue.png`` (every scene's RD curve).
"""

from .jobs import JobSpec, discover
from .job import run_job
from .runners import LocalRunner, RayRunner, Runner, make_runner
from .schedule import run_jobs

__all__ = ["JobSpec", "LocalRunner", "RayRunner", "Runner", "discover", "make_runner", "run_job", "run_jobs"]
