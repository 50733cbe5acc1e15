"""Fixtures of the flow engine's tests: a leak check over threads and child processes."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Worker processes import the functions they run by module name: make this folder's
# helper module (flow_workers) importable here and, through sys.path, in the children.
sys.path.insert(0, str(Path(__file__).parent))

LEAK_GRACE_S = 3.0
"""Threads and processes must be gone this long after a test (the promise is 2 s)."""


def leftovers(
    threads_before: set[threading.Thread], children_before: set[int]
) -> tuple[list[str], list[str]]:
    """Threads and child processes started since the snapshot and still alive."""
    threads = sorted(t.name for t in set(threading.enumerate()) - threads_before if t.is_alive())
    children = sorted(
        f"{p.name} (pid {p.pid})"
        for p in multiprocessing.active_children()
        if p.pid not in children_before
    )
    return threads, children


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves a thread or a child process running (after a grace period)."""
    threads_before = set(threading.enumerate())
    children_before = {p.pid for p in multiprocessing.active_children()}
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        threads, children = leftovers(threads_before, children_before)
        if not threads and not children:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"left running: threads {threads}, child processes {children}")
        time.sleep(0.02)
