"""Module-level functions for worker-process tests (child processes import them by name)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rxpipe.batch import Batch


def square(x: int) -> int:
    """x²."""
    return x * x


def fail_on_seven(x: int) -> int:
    """x², except for 7, which raises ValueError."""
    if x == 7:
        raise ValueError("seven is unlucky")
    return x * x


def double_features(batch: Batch) -> Batch:
    """The batch with its features doubled; raises ValueError on sample id 13."""
    if 13 in batch.ids:
        raise ValueError("sample 13 is corrupt")
    return batch.evolve(features=batch.features * 2)


def record_pid_and_sleep(x: int) -> int:
    """Write this process's pid to $RXPIPE_TEST_PID_DIR, then sleep 50 ms."""
    folder = Path(os.environ["RXPIPE_TEST_PID_DIR"])
    (folder / str(os.getpid())).touch()
    time.sleep(0.05)
    return x


def exit_abruptly(x: int) -> int:
    """Kill the worker process itself on item 3 (a crash, not an exception)."""
    if x == 3:
        os._exit(17)
    return x


def sleep_long(x: int) -> int:
    """Sleep 30 s (an item that is still running when the stream is disposed)."""
    time.sleep(30)
    return x


def _refuse_to_rebuild() -> None:
    raise ValueError("cannot rebuild this item")


class Unreadable:
    """An item that pickles but cannot be rebuilt (like one of a class the child lacks)."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_refuse_to_rebuild, ())


def identity(x: object) -> object:
    """x."""
    return x
