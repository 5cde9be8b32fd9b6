"""Start-up time: `rave-view` to its first HTTP 200 on the bundled scene, and `rave decode` of a small stream.

Usage:  python benchmarks/startup.py [--repeats 3] [--fresh-venv] [--cold-jit]

Runs the console scripts of the environment running this script (or, with --fresh-venv, of a new virtualenv
made here by the README's `python3 -m venv V && V/bin/pip install -e .`, whose install is timed too).
--cold-jit adds the old behaviour for comparison: RAVE_JIT=1 with an empty JIT cache (a compile at run time).
Each row is the median (min-max) of --repeats runs; prints markdown with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

URL_LINE = re.compile(r"open (http://\S+) in a browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_view(bindir: Path, env: dict, timeout: float = 600.0) -> float:
    """Seconds from starting `rave-view` (bundled scene) to the first HTTP 200 on the URL it prints."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(bindir / "rave-view"), "--port", str(free_port())], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        url, seen = None, []
        for line in proc.stdout:  # the URL line comes once the server listens
            seen.append(line)
            if m := URL_LINE.search(line):
                url = m.group(1)
                break
        if url is None:
            raise RuntimeError("rave-view printed no URL:\n" + "".join(seen[-20:]))
        while time.perf_counter() - t0 < timeout:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"rave-view exited with {proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"no HTTP 200 from {url} within {timeout:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def time_command(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def summary(times: list[float]) -> str:
    return f"{statistics.median(times):.1f} ({min(times):.1f}-{max(times):.1f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fresh-venv", action="store_true", help="time README's venv + `pip install -e .` first")
    ap.add_argument("--cold-jit", action="store_true", help="also time RAVE_JIT=1 with an empty JIT cache")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAVE_JIT", None)
    rows = []
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="rave-startup-"))
    try:
        bindir = Path(sys.executable).parent
        if args.fresh_venv:
            venv = tmp / "venv"
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            base = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter behind this venv, as `python3`
            subprocess.run([str(base if base.exists() else "python3"), "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", str(ROOT)], check=True)
            took = time.perf_counter() - t0
            rows.append(("`python3 -m venv V && V/bin/pip install -q -e .` (fresh venv, compiles the rasterizer)",
                         f"{took:.0f}", f"1 run, load {load:.1f} before"))
            bindir = venv / "bin"

        stream = tmp / "small.rave"
        ckpt = ROOT / "trained_scenes" / "demo_objects.ckpt"
        subprocess.run([str(bindir / "rave"), "encode", str(ckpt), "--count", "2000", "-o", str(stream)], cwd=ROOT,
                       env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip

        views = [time_view(bindir, env) for _ in range(args.repeats)]
        rows.append(("`rave-view` (bundled demo_objects.ckpt) to first HTTP 200", summary(views), f"{args.repeats} runs"))
        decodes = [time_command([str(bindir / "rave"), "decode", str(stream), "-o", str(tmp / "out.ply"), "--quiet"],
                                env) for _ in range(args.repeats)]  # fmt: skip
        rows.append((f"`rave decode` of a {stream.stat().st_size:,}-byte stream (2,000 Gaussians)", summary(decodes),
                     f"{args.repeats} runs"))
        loads = [time_command([str(bindir / "python"), "-c", "from rave_viewer.render.cpu import load_extension; "
                               "load_extension()"], env) for _ in range(args.repeats)]  # fmt: skip
        rows.append(("`python -c 'load_extension()'` (import torch + the compiled rasterizer)", summary(loads),
                     f"{args.repeats} runs"))
        if args.cold_jit:
            jit_env = dict(env, RAVE_JIT="1", RAVE_JIT_DIR=str(tmp / "jit"))
            rows.append(("`RAVE_JIT=1 rave-view`, empty JIT cache (the old first run: compiles at run time)",
                         f"{time_view(bindir, jit_env):.1f}", "1 run"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("## Start-up time\n")
    print(f"Machine: {machine_line()} after the runs ({load_before:.2f} before)\n")
    print("| what | seconds | runs |\n|---|---:|---|")
    for what, secs, runs in rows:
        print(f"| {what} | {secs} | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
