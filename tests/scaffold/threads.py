"""One torch thread for the Scaffold tests (shared by conftest.py and the test modules)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread, restoring the count after: the tiny renders and 35x32 MLPs of these tests are
    slower with more threads than cores on a shared 2-core machine (thread hand-offs dominate)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
