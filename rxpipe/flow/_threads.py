"""Threads of the flow engine: started with the run's context, joined within a deadline."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterable

from rxpipe.flow._tally import _active

__all__ = ["JOIN_TIMEOUT_S", "join_all", "start_thread"]

JOIN_TIMEOUT_S = 2.0
"""How long disposal waits for the engine's threads and processes to stop."""


def start_thread(
    target: Callable[[], None], name: str, *, subscribes_upstream: bool = False
) -> threading.Thread:
    """Start a daemon thread running ``target`` in a copy of the caller's context.

    The copy carries :func:`~rxpipe.context.current_run` and the epoch onto the thread.
    Only a thread that ``subscribes_upstream`` (a producer) keeps the stage's current
    tally; threads that serve downstream (drains, workers) run with none, so what the
    stages after this one subscribe from them is not counted here.
    """
    context = contextvars.copy_context()
    if not subscribes_upstream:
        context.run(_active.set, None)
    thread = threading.Thread(target=context.run, args=(target,), name=name, daemon=True)
    thread.start()
    return thread


def join_all(threads: Iterable[threading.Thread], timeout: float = JOIN_TIMEOUT_S) -> bool:
    """Join ``threads`` (except the calling one) within ``timeout`` s in total.

    Returns:
        True if every other thread ended.
    """
    me = threading.current_thread()
    deadline = time.monotonic() + timeout
    done = True
    for thread in threads:
        if thread is me or not thread.is_alive():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        done = done and not thread.is_alive()
    return done
