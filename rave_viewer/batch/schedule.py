"""Run a batch on a runner: submit every job, retry failed ones up to N times, a progress bar over scenes.

A failure marked ``retry`` (an unexpected error, a dead worker) is submitted again, up to ``retries`` more
times; bad input (a RaveError) is reported at once, since it fails the same way every time. Either way the
other scenes go on. Results come back keyed by scene name, each with its ``attempts``.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from tqdm.auto import tqdm

from .job import BUILT, FAILED, UP_TO_DATE, run_job
from .jobs import JobSpec
from .runners import Runner


def _tally(results: dict) -> str:
    n = {s: sum(r["status"] == s for r in results.values()) for s in (BUILT, UP_TO_DATE, FAILED)}
    return f"{n[BUILT]} built, {n[UP_TO_DATE]} up to date, {n[FAILED]} failed"


def run_jobs(specs: Sequence[JobSpec], runner: Runner, *, fn: Callable[[JobSpec], dict] = run_job,
             retries: int = 2, progress: bool = True, say: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Every job's final result by name; ``say(line)`` gets one line per retry and per failure.

    Jobs whose spec has a ``problem`` are not submitted (a failed result at once). On Ctrl-C or an error of
    the runner itself the runner is closed (queued and running jobs cancelled) and the exception propagates;
    finished scenes keep their checkpoints, so a re-run resumes.
    """
    say = say or (lambda line: print(line, file=sys.stderr))
    results: dict[str, dict] = {}
    attempts: dict[str, int] = {}
    tickets: dict = {}
    bar = tqdm(total=len(specs), desc="build-all", unit="scene", disable=not progress, dynamic_ncols=True)

    def write(line: str) -> None:
        (bar.write(line, file=sys.stderr) if progress else say(line))

    def submit(spec: JobSpec) -> None:
        attempts[spec.name] = attempts.get(spec.name, 0) + 1
        tickets[runner.submit(fn, spec)] = spec

    try:
        for spec in specs:
            if spec.problem:
                results[spec.name] = {**run_job(spec), "attempts": 0}  # failed, without running
                write(f"error: {spec.name}: {results[spec.name]['error']}")
                bar.update(1)
            else:
                submit(spec)
        while tickets:
            ticket, res = runner.next_done()
            spec = tickets.pop(ticket)
            n = attempts[spec.name]
            if res.get("status") == FAILED and res.get("retry") and n <= retries:
                write(f"warning: {spec.name}: attempt {n} failed ({res.get('error')}); retrying")
                submit(spec)
                continue
            res = {**res, "attempts": n}
            results[spec.name] = res
            if res["status"] == FAILED:
                tries = f" (after {n} attempts)" if n > 1 else ""
                write(f"error: {spec.name}: {res.get('error')}{tries}")
            bar.update(1)
            bar.set_postfix_str(f"{spec.name} {res['status']}; {_tally(results)}", refresh=True)
    except BaseException:
        runner.close()
        raise
    finally:
        bar.close()
    runner.close()
    return {s.name: results[s.name] for s in specs}


__all__ = ["run_jobs"]
