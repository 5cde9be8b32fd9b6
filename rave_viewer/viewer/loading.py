"""A progress bar in the terminal while ``rave-view`` opens a large local file: bytes read, then the loader's steps.

The loaders (``load_checkpoint``, ``read_ply``, the .rave decoder) take a path and report nothing, so the file is
first read once in blocks with a byte bar (which also brings it into the page cache, so the loader's own read is
fast), then a step bar names what the loader is doing (parsing, decoding) and moves when each step ends.
Files under :data:`PROGRESS_MIN_BYTES` open without bars (they open in a moment).

The viewer's server starts after the file is open, so no tab can connect during loading: the terminal is the
only place to show this progress.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm.auto import tqdm

PROGRESS_MIN_BYTES = 32_000_000  # files from this size on show the bars (a ~150k-Gaussian SH3 .ply)
READ_BLOCK = 8 * 2**20


class LoadProgress:
    """Bars for opening ``path``: :meth:`read` (bytes), then :meth:`step` per loader step, :meth:`close` at the end.

    ``min_bytes``: files smaller than this show nothing; ``enabled``: True / False force the bars on / off."""

    def __init__(self, path: Path, steps: list[str], min_bytes: int = PROGRESS_MIN_BYTES,
                 enabled: bool | None = None):  # fmt: skip
        self.path, self.steps = Path(path), list(steps)
        try:
            self.size = self.path.stat().st_size
        except OSError:
            self.size = 0
        self.on = bool(enabled) if enabled is not None else self.size >= int(min_bytes)
        self._bar = None
        self._done = 0

    def read(self) -> None:
        """Read the whole file once, in blocks, with a byte bar (the data is dropped: the loader reads it again)."""
        if not self.on:
            return
        with tqdm(total=self.size, unit="B", unit_scale=True, unit_divisor=1000, desc=f"reading {self.path.name}",
                  file=sys.stderr, dynamic_ncols=True) as bar, open(self.path, "rb") as f:  # fmt: skip
            while block := f.read(READ_BLOCK):
                bar.update(len(block))

    def step(self, name: str) -> None:
        """The loader starts step ``name`` (one of ``steps``); the bar counts the steps finished so far."""
        if not self.on:
            return
        if self._bar is None:
            self._bar = tqdm(total=len(self.steps), unit="step", desc=f"opening {self.path.name}", file=sys.stderr,
                             bar_format="{desc}: {n_fmt}/{total_fmt} steps [{elapsed}]{postfix}")  # fmt: skip
        elif self._done < len(self.steps):
            self._done += 1
            self._bar.update(1)
        self._bar.set_postfix_str(name)

    def close(self, ok: bool = True) -> None:
        """End the step bar: all steps done (``ok``), or left where the loader failed."""
        if self._bar is not None:
            if ok:
                self._bar.update(len(self.steps) - self._bar.n)
            self._bar.set_postfix_str("done" if ok else "failed")
            self._bar.close()
            self._bar = None


__all__ = ["LoadProgress", "PROGRESS_MIN_BYTES"]
