"""Pull items from an observable through a bounded buffer (the trainer's side of the bridge)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Generator
from typing import TypeVar

import reactivex
from reactivex import operators as ops
from reactivex.subject import Subject

from rxpipe.errors import ConfigError
from rxpipe.flow._channel import ITEM, Channel

T = TypeVar("T")

_POLL_S = 0.05
JOIN_TIMEOUT_S = 2.0


def iterate(
    source: reactivex.Observable[T], capacity: int = 4, name: str = "iterate"
) -> Generator[T, None, None]:
    """Iterate over ``source`` with at most ``capacity`` items buffered ahead.

    The source is subscribed on a producer thread. When the buffer is full the producer
    blocks inside ``on_next`` until the consumer has drained half of it, so a cold
    upstream chain waits for the consumer instead of filling memory, and wakes once per
    half buffer. An error in the source is raised from the iterator. Closing the iterator
    early (``break``, an exception, garbage collection) disposes the subscription and
    joins the producer thread.

    Args:
        source: the observable to read.
        capacity: the most items held between producer and consumer (at least 1).
        name: the producer thread's name (shown in thread dumps).

    Yields:
        The source's items, in order.

    Raises:
        ConfigError: for a capacity that is not an int >= 1 (at the call, not at the
            first item).

    Example:
        >>> list(iterate(reactivex.of(1, 2, 3), capacity=1))
        [1, 2, 3]
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ConfigError(f"capacity: expected an int >= 1. Received: {capacity!r}")
    return _iterate(source, capacity, name)


def _iterate(source: reactivex.Observable[T], capacity: int, name: str) -> Generator[T, None, None]:
    channel = Channel(capacity)
    stopper: Subject[None] = Subject()

    def produce() -> None:
        finished = threading.Event()

        def on_next(item: T) -> None:
            channel.put(item)

        def on_error(error: Exception) -> None:
            channel.finish(error)
            finished.set()

        def on_completed() -> None:
            channel.finish(None)
            finished.set()

        try:
            source.pipe(ops.take_until(stopper)).subscribe(on_next, on_error, on_completed)
        except BaseException as error:  # a source that raises instead of calling on_error
            channel.finish(error)
            return
        while not finished.wait(_POLL_S) and not channel.closed:
            pass

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(produce,), name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = channel.get()
            if kind == ITEM:
                yield value
            elif value is not None:
                raise value
            else:
                return
    finally:
        channel.close()
        stopper.on_next(None)
        thread.join(JOIN_TIMEOUT_S)
