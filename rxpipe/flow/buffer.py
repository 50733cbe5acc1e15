"""bounded_buffer: a thread boundary holding at most N batches (and B bytes).

RxPY pushes and has no backpressure. A bounded buffer puts a thread boundary between
its upstream and downstream and bounds what waits there, so memory stays bounded
whatever the speeds:

- ``overflow="block"`` (cold sources, the default): the upstream chain runs on a
  producer thread, which waits while the buffer is full. A slow consumer makes the
  whole upstream chain wait; nothing is lost.
- hot sources, which push on their own schedule and cannot wait, choose what to lose:
  ``"drop_oldest"`` (keep the freshest batches), ``"drop_newest"`` (keep the earliest)
  or ``"error"`` (fail with :class:`~rxpipe.errors.BufferOverflowError`). Every dropped
  batch is counted in the stage's accounting and reported in
  :class:`~rxpipe.events.BatchesDropped` events.

Downstream is served by a drain thread (or, given a ``scheduler``, by actions
scheduled on it), one item at a time, in order.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Literal, TypeAlias, TypeVar, cast, get_args

import reactivex
from reactivex import abc
from reactivex.disposable import Disposable, SerialDisposable, SingleAssignmentDisposable
from reactivex.scheduler import CurrentThreadScheduler

from rxpipe.batch import Batch
from rxpipe.errors import BufferOverflowError, ConfigError
from rxpipe.flow._channel import END, ITEM, Channel
from rxpipe.flow._tally import Tally, current_tally
from rxpipe.flow._threads import join_all, start_thread
from rxpipe.flow.transform import NamedOperator

__all__ = ["BufferStats", "Overflow", "bounded_buffer", "buffer_stats", "subscribe_on_trampoline"]

T = TypeVar("T")

Overflow: TypeAlias = Literal["block", "drop_oldest", "drop_newest", "error"]
"""What a full buffer does with a new item: make the producer wait, or (hot sources)
drop the oldest held item, drop the new one, or fail."""


def subscribe_on_trampoline(
    source: reactivex.Observable[Any],
    upstream: SingleAssignmentDisposable,
    on_next: Any,
    on_error: Any,
    on_completed: Any,
) -> None:
    """Subscribe to ``source`` on the calling thread, assigning ``upstream`` before data flows.

    A synchronous cold source (:func:`~rxpipe.flow.generate`, ``reactivex.from_iterable``)
    schedules its loop on the current thread's trampoline. Subscribing from inside a
    trampoline action makes ``subscribe`` return (so ``upstream`` is assigned) before the
    loop runs; the loop then runs on this thread, and disposing ``upstream`` from another
    thread stops it at its next item.
    """

    def start(_: abc.SchedulerBase, __: Any = None) -> None:
        upstream.disposable = source.subscribe(on_next, on_error, on_completed)

    CurrentThreadScheduler.singleton().schedule(start)


class BufferStats:
    """How often the bounded buffers of one pass of a stage were found empty or full.

    ``empty``: times the consumer found nothing to take (it waited for upstream);
    ``full``: times the producer found no room (upstream waited for downstream);
    ``blocked_s``: how long the producer waited for room.
    Counted without locks (approximate under races, cheap per batch).

    Example:
        >>> stats = BufferStats()
        >>> stats.empty, stats.full, stats.fill()
        (0, 0, None)
    """

    def __init__(self) -> None:
        self.empty = 0
        self.full = 0
        self.blocked_s = 0.0
        self.channels: list[tuple[Channel, int]] = []

    def fill(self) -> float | None:
        """Share of the buffers' capacity held now (``None``: no buffer)."""
        capacity = sum(c for _, c in self.channels)
        return sum(len(ch) for ch, _ in self.channels) / capacity if capacity else None


_STATS: weakref.WeakKeyDictionary[Tally, BufferStats] = weakref.WeakKeyDictionary()
_STATS_LOCK = threading.Lock()


def buffer_stats(tally: Tally) -> BufferStats | None:
    """The buffer counters reported to ``tally`` (one pass of a stage), if any."""
    with _STATS_LOCK:
        return _STATS.get(tally)


def _stats_of(tally: Tally) -> BufferStats:
    with _STATS_LOCK:
        stats = _STATS.get(tally)
        if stats is None:
            stats = _STATS[tally] = BufferStats()
        return stats


def _validate(capacity: int, max_bytes: int | None, overflow: str) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ConfigError(f"capacity: expected an int >= 1. Received: {capacity!r}")
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1
    ):
        raise ConfigError(f"max_bytes: expected an int >= 1 or None. Received: {max_bytes!r}")
    if overflow not in get_args(Overflow):
        choices = ", ".join(repr(o) for o in get_args(Overflow))
        raise ConfigError(f"overflow: expected one of {choices}. Received: {overflow!r}")


def _ids(item: object) -> list[Any]:
    return item.ids.tolist() if isinstance(item, Batch) else []


class _BufferRun:
    """One subscription of a bounded buffer: channel, producer thread, drain."""

    def __init__(
        self,
        stage: str,
        capacity: int,
        max_bytes: int | None,
        overflow: Overflow,
        observer: abc.ObserverBase[Any],
        scheduler: abc.SchedulerBase | None,
    ) -> None:
        self.tally: Tally = current_tally(stage)
        self.stage = self.tally.stage  # the pipeline's name for the stage, inside one
        self.capacity = capacity
        self.overflow = overflow
        self.observer = observer
        self.scheduler = scheduler
        self.channel = Channel(capacity, max_bytes)
        self.upstream = SingleAssignmentDisposable()
        self.source: reactivex.Observable[Any] = reactivex.empty()
        self.threads: list[threading.Thread] = []
        self.stopped = False
        self._lock = threading.Lock()
        self._draining = False
        self._scheduled = SerialDisposable()
        self._reason = f"overflow: {overflow}"
        self.stats = _stats_of(self.tally)
        self.stats.channels.append((self.channel, capacity))

    # -- producer side (upstream notifications) --------------------------------------

    def on_next(self, item: Any) -> None:
        overflow = self.overflow
        full = len(self.channel) >= self.capacity
        if full:
            self.stats.full += 1
        if overflow == "block":
            if full:
                before = time.perf_counter()
                self.channel.put(item)
                self.stats.blocked_s += time.perf_counter() - before
            else:
                self.channel.put(item)
        elif overflow == "drop_newest":
            if not self.channel.offer(item) and not self.channel.closed:
                self.tally.drop(item, self._reason)
        elif overflow == "drop_oldest":
            for old in self.channel.push_out(item):
                self.tally.drop(old, self._reason)
        elif not self.channel.offer(item) and not self.channel.closed:
            error = BufferOverflowError(
                self.stage,
                f"expected the consumer to keep up with at most {self.capacity} buffered "
                f"items (overflow='error'). Received: one more while full ({len(self.channel)} "
                "held); use a bigger capacity or a drop policy",
                _ids(item),
            )
            self.channel.abort(error)
            self.upstream.dispose()

    def on_error(self, error: BaseException) -> None:
        self.channel.finish(error)

    def on_completed(self) -> None:
        self.channel.finish(None)

    def produce(self) -> None:
        try:
            subscribe_on_trampoline(
                self.source,
                self.upstream,
                self.on_next,
                self.on_error,
                self.on_completed,
            )
        except BaseException as error:  # a source that raises instead of calling on_error
            self.channel.finish(error)

    # -- consumer side (downstream notifications) ------------------------------------

    def deliver(self, kind: int, value: Any) -> bool:
        """Pass one channel entry downstream; False once the stream is over."""
        if kind == ITEM:
            try:
                self.observer.on_next(value)
            except BaseException as error:  # downstream raised: end the stream with it
                self.finish()
                self.observer.on_error(cast(Exception, error))  # SystemExit... as is
                return False
            return True
        if kind == END:
            self.finish()
            if value is None:
                self.observer.on_completed()
            else:
                self.observer.on_error(value)  # an upstream SystemExit... passes on as is
        return False

    def drain_forever(self) -> None:
        channel, stats = self.channel, self.stats
        get, deliver = channel.get, self.deliver
        while True:
            if not channel.ready:
                stats.empty += 1
            if not deliver(*get()):
                return

    def on_readable(self) -> None:
        with self._lock:
            if self._draining or self.stopped:
                return
            self._draining = True
        assert self.scheduler is not None
        self._scheduled.disposable = self.scheduler.schedule(self.drain_scheduled)

    def drain_scheduled(self, _: abc.SchedulerBase, __: Any = None) -> None:
        channel = self.channel
        while True:
            entry = channel.poll()
            if entry is None:
                with self._lock:
                    if channel.ready:
                        continue
                    self.stats.empty += 1
                    self._draining = False
                    return
            if not self.deliver(*entry):
                return

    # -- lifecycle -------------------------------------------------------------------

    def start(self, source: reactivex.Observable[Any]) -> abc.DisposableBase:
        self.source = source
        name = f"rxpipe-{self.stage}"
        if self.scheduler is None:
            self.threads.append(start_thread(self.drain_forever, f"{name}-drain"))
        else:
            self.channel.on_readable = self.on_readable
        self.threads.append(
            start_thread(self.produce, f"{name}-producer", subscribes_upstream=True)
        )
        return Disposable(self.dispose)

    def stop(self) -> None:
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
        self.channel.close()
        self.upstream.dispose()
        self._scheduled.dispose()
        self.tally.flush()  # drops not published yet (a detached tally has no stage to)

    def finish(self) -> None:
        """Before the last notification: stop, and wait for the producer thread."""
        self.stop()
        join_all(self.threads)

    def dispose(self) -> None:
        self.stop()
        join_all(self.threads)


def bounded_buffer(
    capacity: int = 4,
    *,
    max_bytes: int | None = None,
    overflow: Overflow = "block",
    stage: str = "flow.buffer",
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[reactivex.Observable[T]], reactivex.Observable[T]]:
    """A thread boundary holding at most ``capacity`` items (and ``max_bytes`` bytes).

    The upstream is subscribed on a producer thread; downstream receives the items, in
    order, from a drain thread (or from actions on ``scheduler``). With
    ``overflow="block"`` the producer waits while the buffer is full, so at most
    ``capacity`` items wait here, plus one being produced and one being consumed.

    ::

        upstream:   a-b-c-d-e-f-|         (hot: it cannot wait)
        consumer:   [a.........][e][f]|   (busy with a while b..f arrive)
        downstream: a----------e--f-|     (capacity 2, drop_oldest: b, c, d dropped)

    Disposing the subscription, an error upstream or downstream, or the end of the
    stream stops the producer thread and the drain within 2 seconds.

    Args:
        capacity: the most items held (at least 1).
        max_bytes: the most bytes held (features, labels and ids of batches, or an
            item's ``nbytes``); one larger item still passes alone. ``None``: no bound.
        overflow: ``"block"`` for cold sources, which wait; for hot sources, which
            cannot, ``"drop_oldest"``, ``"drop_newest"`` or ``"error"``.
        stage: the name used in errors, drop events and thread names.
        scheduler: deliver downstream on this scheduler instead of a drain thread.

    Returns:
        The operator.

    Raises:
        ConfigError: for an invalid parameter.

    Example:
        >>> from rxpipe.testing import collect
        >>> collect(reactivex.of(1, 2, 3).pipe(bounded_buffer(1)))
        [1, 2, 3]
    """
    _validate(capacity, max_bytes, overflow)

    def operator(source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], _: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            run = _BufferRun(stage, capacity, max_bytes, overflow, observer, scheduler)
            return run.start(source)

        return reactivex.create(subscribe)

    return NamedOperator(stage, operator)
