"""Live throughput: a timer thread publishing :class:`~rxpipe.events.ThroughputSnapshot`.

:meth:`Pipeline.run <rxpipe.Pipeline.run>` starts one for the run and stops it (joining
the thread) before it returns, whatever the outcome.

Example:
    >>> from rxpipe.context import RunContext
    >>> from rxpipe.events import EventBus
    >>> run = RunContext("r", "demo", None, EventBus("r"))
    >>> with snapshot_timer(run, ("collect.x",), interval_s=60):
    ...     pass
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rxpipe.context import RunContext
from rxpipe.events import StageRate, ThroughputSnapshot
from rxpipe.flow.instrument import live_stages

__all__ = ["DEFAULT_INTERVAL_S", "publish_snapshot", "snapshot_timer"]

DEFAULT_INTERVAL_S = 5.0
"""Seconds between throughput snapshots of a run."""


class _Previous:
    def __init__(self) -> None:
        self.time = time.perf_counter()
        self.started = self.time
        self.counts: dict[str, tuple[int, int, float]] = {}


def publish_snapshot(run: RunContext, order: Sequence[str], previous: _Previous) -> None:
    """Publish one snapshot with the rates since ``previous`` (which it then updates)."""
    now = time.perf_counter()
    interval = max(now - previous.time, 1e-9)
    stages = live_stages(run)
    names = [n for n in order if n in stages] + sorted(n for n in stages if n not in order)
    rates = []
    for name in names:
        stage = stages[name]
        batches, samples, busy = previous.counts.get(name, (0, 0, 0.0))
        rates.append(
            StageRate(
                stage=name,
                batches=stage.batches_out,
                samples=stage.samples_out,
                batches_per_s=(stage.batches_out - batches) / interval,
                samples_per_s=(stage.samples_out - samples) / interval,
                busy_share=min(1.0, max(0.0, (stage.busy_s - busy) / interval)),
                buffer_fill=stage.buffer_fill,
            )
        )
        previous.counts[name] = (stage.batches_out, stage.samples_out, stage.busy_s)
    previous.time = now
    run.publish(
        ThroughputSnapshot,
        elapsed_s=now - previous.started,
        interval_s=interval,
        stages=tuple(rates),
    )


@contextmanager
def snapshot_timer(
    run: RunContext,
    order: Sequence[str],
    interval_s: float | None = DEFAULT_INTERVAL_S,
    final: bool = False,
) -> Iterator[None]:
    """Publish a snapshot every ``interval_s`` seconds on a daemon thread while inside.

    ``None`` or ``0`` publishes none. The thread is stopped and joined on exit; with
    ``final``, one more snapshot is published then (if the block ended normally).
    """
    if not interval_s or interval_s <= 0:
        yield
        return
    stop = threading.Event()
    previous = _Previous()

    def loop() -> None:
        while not stop.wait(interval_s):
            publish_snapshot(run, order, previous)

    thread = threading.Thread(target=loop, name=f"rxpipe-snapshots-{run.run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if final:
        publish_snapshot(run, order, previous)
