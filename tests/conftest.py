"""Shared fixtures: leak checks and a small trained digits run."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def live_threads() -> set[threading.Thread]:
    """The Python threads alive now."""
    return set(threading.enumerate())


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    """Fail the test if it leaves a Python thread running (after a 3 s grace period)."""
    before = live_threads()
    yield
    deadline = threading.Event()
    for _ in range(30):
        leaked = {t for t in live_threads() - before if t.is_alive()}
        if not leaked:
            return
        deadline.wait(0.1)
    pytest.fail(f"threads left running: {sorted(t.name for t in leaked)}")


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A fresh directory for run directories."""
    return tmp_path / "runs"
