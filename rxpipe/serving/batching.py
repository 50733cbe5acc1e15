"""micro_batch: gather items into lists by size or by the oldest item's wait (serving's batcher)."""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
import reactivex
from reactivex import abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

__all__ = ["micro_batch"]

T = TypeVar("T")


@attrs.frozen
class _Held(Generic[T]):
    item: T
    size: int
    deadline: dt.datetime


def _one(_: Any) -> int:
    return 1


def micro_batch(
    max_size: int,
    max_wait: float,
    *,
    size_of: Callable[[T], int] = _one,
    flush: reactivex.Observable[Any] | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[reactivex.Observable[T]], reactivex.Observable[list[T]]]:
    """Gather items into lists: emitted when full, or when the oldest has waited ``max_wait``.

    Lists are emitted on ``scheduler``. Items that arrive while the scheduler is busy
    (with a single-thread scheduler such as ``EventLoopScheduler``, while the
    subscriber's ``on_next`` still handles the previous list, e.g. a model call) join
    the open list, which is emitted as soon as the scheduler is free and the list is
    due. Under load, lists therefore grow towards ``max_size`` by themselves, and an
    item never waits for more than ``max_wait`` plus the time the scheduler is busy.
    A list holds whole items: it never exceeds ``max_size`` unless one item alone does.

    ::

        source:   -a-b------c-d-e-f---|
        micro_batch(max_size=3, max_wait=4)
        result:   -----[a,b]------[c,d,e]-[f]|   (the list of a waits until a's deadline)

    Args:
        max_size: the size at which a list is emitted at once (sum of ``size_of``).
        max_wait: the longest an item waits for others, in seconds (0: emit as soon as
            the scheduler is free).
        size_of: an item's size (default 1; e.g. the number of rows in a request).
        flush: every notification emits everything held at that moment (e.g. on
            shutdown, so that requests in flight do not wait).
        scheduler: where lists are emitted and timers run (default: a timeout
            scheduler). It must not run actions inline (no ``ImmediateScheduler``).

    Returns:
        The operator. Completion emits what is held, then completes; an error drops
        what is held. Notifications downstream are serialized and in order.

    Raises:
        ValueError: for ``max_size < 1`` or a negative ``max_wait``.

    Example:
        >>> from rxpipe.testing import collect
        >>> collect(reactivex.of(1, 2, 3, 4, 5).pipe(micro_batch(2, 0.05)))
        [[1, 2], [3, 4], [5]]
    """
    if max_size < 1:
        raise ValueError(f"max_size: expected an int >= 1. Received: {max_size!r}")
    if max_wait < 0:
        raise ValueError(f"max_wait: expected seconds >= 0. Received: {max_wait!r}")
    wait = dt.timedelta(seconds=max_wait)

    def operator(source: reactivex.Observable[T]) -> reactivex.Observable[list[T]]:
        def subscribe(
            observer: abc.ObserverBase[list[T]], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched: abc.SchedulerBase = scheduler or scheduler_ or TimeoutScheduler.singleton()
            lock = threading.Lock()  # guards the state below
            emitting = threading.Lock()  # serializes notifications downstream, in order
            held: deque[_Held[T]] = deque()
            total = 0  # sum of the held items' sizes
            pending = False  # an immediate emit is scheduled
            stopped = False
            cutoff: dt.datetime | None = None  # items due by then go now (flush)
            timer = SerialDisposable()

            def take() -> list[T]:
                nonlocal total
                batch: list[T] = []
                size = 0
                while held and (not batch or size + held[0].size <= max_size):
                    entry = held.popleft()
                    batch.append(entry.item)
                    size += entry.size
                total -= size
                return batch

            def due(limit: dt.datetime) -> bool:
                return bool(held) and (total >= max_size or held[0].deadline <= limit)

            def emit(_: abc.SchedulerBase, at: dt.datetime | None = None) -> None:
                nonlocal pending, cutoff
                with emitting:
                    with lock:
                        if stopped:
                            return
                        pending = False
                        limit = max(t for t in (sched.now, at, cutoff) if t is not None)
                        batch = take() if due(limit) else []
                        if due(limit):
                            pending = True
                            sched.schedule(emit)
                        elif held:
                            deadline = held[0].deadline
                            timer.disposable = sched.schedule_absolute(deadline, emit, deadline)
                        else:
                            cutoff = None
                    if batch:
                        observer.on_next(batch)

            def on_next(item: T) -> None:
                nonlocal total, pending
                size = size_of(item)
                with lock:
                    if stopped:
                        return
                    deadline = sched.now + wait
                    held.append(_Held(item, size, deadline))
                    total += size
                    if pending:
                        return
                    if total >= max_size or not wait:
                        pending = True
                        sched.schedule(emit)
                    elif len(held) == 1:
                        timer.disposable = sched.schedule_absolute(deadline, emit, deadline)

            def on_flush(_: Any) -> None:
                nonlocal pending, cutoff
                with lock:
                    if stopped or not held:
                        return
                    cutoff = held[-1].deadline
                    if not pending:
                        pending = True
                        sched.schedule(emit)

            def finish(error: Exception | None) -> None:
                def run(_: abc.SchedulerBase, __: Any = None) -> None:
                    nonlocal stopped
                    with emitting:
                        with lock:
                            if stopped:
                                return
                            stopped = True
                            batches = []
                            while held and error is None:
                                batches.append(take())
                            held.clear()
                        timer.dispose()
                        for batch in batches:
                            observer.on_next(batch)
                        if error is None:
                            observer.on_completed()
                        else:
                            observer.on_error(error)

                sched.schedule(run)

            def dispose() -> None:
                nonlocal stopped
                with lock:
                    stopped = True
                    held.clear()
                timer.dispose()

            subscriptions = CompositeDisposable(Disposable(dispose), timer)
            if flush is not None:
                subscriptions.add(flush.subscribe(on_flush, scheduler=scheduler_))
            subscriptions.add(
                source.subscribe(
                    on_next, lambda e: finish(e), lambda: finish(None), scheduler=scheduler_
                )
            )
            return subscriptions

        return reactivex.create(subscribe)

    return operator
