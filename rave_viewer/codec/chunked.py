"""What every progressive .rave encoder shares: full chunks compressed once (lazily, in threads) and cached, so
the exact size of any prefix costs at most one partial chunk's compression.

A subclass sets ``n`` (units), ``chunk_size``, ``codec``, ``progress``, ``workers`` and ``header_size``, calls
:meth:`_init_cache`, and implements ``_compress_range(a, b) -> (compressed, crc32)`` (units [a, b) of its order)
and ``_header(k) -> bytes`` (everything before the chunk index of the first ``k`` units' stream; its length
must not depend on k). The chunk index is :func:`index_bytes` (12 bytes per chunk + CRC32, as .rave v1/v2).
"""

from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import RaveError
from ..fileio import atomic_write

_ENTRY = struct.Struct("<III")  # per chunk: compressed length, CRC32 of the compressed bytes, unit count
INDEX_ENTRY_SIZE = _ENTRY.size
_PROGRESS_MIN_CHUNKS = 8  # show a tqdm bar when compressing at least this many chunks


def index_bytes(entries: list[tuple[int, int, int]]) -> bytes:
    """The chunk index: (length, crc, count) per chunk, then the CRC32 of those entries."""
    body = b"".join(_ENTRY.pack(*e) for e in entries)
    return body + struct.pack("<I", zlib.crc32(body))


def iter_index(index: bytes):
    """(length, crc, count) of each entry of an index body (without its trailing CRC)."""
    return _ENTRY.iter_unpack(index)


class ChunkedEncoder:
    """The chunk cache and the prefix API (sizes, bytes, atomic writes) of a progressive stream."""

    n: int
    chunk_size: int
    codec: object
    progress: bool
    workers: int
    header_size: int

    def _init_cache(self) -> None:
        self._full: list[tuple[bytes, int] | None] = [None] * (self.n // self.chunk_size)
        self._partial: tuple[int, bytes, int] | None = None  # (k, compressed, crc) of the last partial chunk

    def _compress_range(self, a: int, b: int) -> tuple[bytes, int]:
        raise NotImplementedError

    def _header(self, k: int) -> bytes:
        raise NotImplementedError

    def _ensure_full(self, n_chunks: int) -> None:
        """Compress (once) the first ``n_chunks`` full chunks, in threads, with a bar when there are many."""
        todo = [i for i in range(n_chunks) if self._full[i] is None]
        if not todo:
            return
        cs = self.chunk_size
        job = lambda i: self._compress_range(i * cs, (i + 1) * cs)  # noqa: E731
        bar = None
        if self.progress and len(todo) >= _PROGRESS_MIN_CHUNKS:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"compressing ({self.codec.name})", unit="chunk", leave=False)
        try:
            if len(todo) == 1 or self.workers <= 1:
                for i in todo:
                    self._full[i] = job(i)
                    bar and bar.update(1)
            else:
                with ThreadPoolExecutor(self.workers) as pool:
                    for i, res in zip(todo, pool.map(job, todo)):
                        self._full[i] = res
                        bar and bar.update(1)
        finally:
            bar and bar.close()

    def _partial_chunk(self, k: int) -> tuple[bytes, int]:
        if self._partial is None or self._partial[0] != k:
            a = (k // self.chunk_size) * self.chunk_size
            self._partial = (k, *self._compress_range(a, k))
        return self._partial[1], self._partial[2]

    def _check_k(self, k: int | None) -> int:
        if k is None:
            return self.n
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= self.n:
            raise RaveError(f"prefix length must be an integer 0..{self.n}, got {k!r}")
        return int(k)

    def _chunks(self, k: int) -> list[tuple[bytes, int, int]]:
        """(compressed, crc, count) of every chunk of the first ``k`` units."""
        full, rest = divmod(k, self.chunk_size)
        self._ensure_full(full)
        out = [(d, c, self.chunk_size) for d, c in self._full[:full]]
        if rest:
            out.append((*self._partial_chunk(k), rest))
        return out

    # -- public API ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n

    def n_chunks(self, k: int | None = None) -> int:
        return -(-self._check_k(k) // self.chunk_size)

    def overhead(self, k: int | None = None) -> int:
        """Bytes of header (with its sections) + chunk index of the first ``k`` units' file."""
        return self.header_size + INDEX_ENTRY_SIZE * self.n_chunks(k) + 4

    def size_of_prefix(self, k: int) -> int:
        """Exact size in bytes of the stream holding the first ``k`` units (0 <= k <= N)."""
        k = self._check_k(k)
        full, rest = divmod(k, self.chunk_size)
        self._ensure_full(full)
        size = self.overhead(k) + sum(len(d) for d, _ in self._full[:full])
        if rest:
            size += len(self._partial_chunk(k)[0])
        return size

    def partial_chunk_size(self, k: int) -> int:
        """Compressed bytes of the last, partial chunk of the first ``k`` units (0 if k ends on a chunk)."""
        k = self._check_k(k)
        return len(self._partial_chunk(k)[0]) if k % self.chunk_size else 0

    def chunk_sizes(self) -> list[int]:
        """Compressed bytes of every full chunk (compresses them all once)."""
        self._ensure_full(len(self._full))
        return [len(d) for d, _ in self._full]

    def encode(self, k: int | None = None) -> bytes:
        """The bytes of the first ``k`` units' stream (all when None); ``len == size_of_prefix(k)``."""
        return b"".join(self._pieces(self._check_k(k)))

    def _pieces(self, k: int) -> list[bytes]:
        chunks = self._chunks(k)
        return [self._header(k), index_bytes([(len(d), c, n) for d, c, n in chunks]), *(d for d, _, _ in chunks)]

    def write(self, path: str | os.PathLike, k: int | None = None) -> int:
        """Write the first ``k`` units to ``path`` atomically (temp + rename); returns the bytes written."""
        pieces = self._pieces(self._check_k(k))
        try:
            with atomic_write(path, "wb") as f:
                for p in pieces:
                    f.write(p)
        except OSError as e:
            raise RaveError(f"cannot write: {e.strerror or e}", path) from None
        return sum(len(p) for p in pieces)


def parallel_map(job, n: int, workers: int) -> list:
    """``[job(i) for i in range(n)]``, in up to ``workers`` threads (the codecs release the GIL)."""
    workers = min(n, workers)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(job, range(n)))
    return [job(i) for i in range(n)]


DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
