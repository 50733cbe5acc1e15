"""A bounded FIFO between a producer and a consumer thread (the core of every boundary).

Unlike :class:`queue.Queue`, a :class:`Channel`

- bounds bytes as well as items (an item larger than the byte bound still passes
  alone, so a large batch cannot deadlock the stream);
- has non-blocking admission with the overflow policies of hot sources (drop the
  oldest item, drop the new one, or refuse);
- carries the stream's end (completion or error) after its items, and can be closed,
  which wakes every waiting thread at once (disposal);
- wakes a blocked producer only when it has drained to half its capacity, so a slow
  consumer costs the producer one wake-up per half buffer, not one per item.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["CLOSED", "END", "ITEM", "Channel", "item_nbytes"]

ITEM, END, CLOSED = 0, 1, 2
"""What :meth:`Channel.get` returns first: an item, the stream's end, or closed."""


def item_nbytes(item: Any) -> int:
    """Bytes held by ``item``'s arrays: features, labels and ids of a batch, or ``nbytes``.

    Example:
        >>> import numpy as np
        >>> item_nbytes(np.zeros(4, "float64"))
        32
    """
    nbytes = getattr(item, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    features = getattr(item, "features", None)
    if features is None:
        return 0
    total = 0
    arrays = features.values() if isinstance(features, dict) else [features]
    for array in (*arrays, getattr(item, "labels", None), getattr(item, "ids", None)):
        size = getattr(array, "nbytes", 0)
        total += size if isinstance(size, int) else 0
    return total


class Channel:
    """At most ``capacity`` items (and ``max_bytes`` bytes) between two threads.

    Args:
        capacity: the most items held (at least 1).
        max_bytes: the most bytes held, counted with :func:`item_nbytes`; ``None``
            for no byte bound.

    Example:
        >>> channel = Channel(2)
        >>> channel.put("a"), channel.offer("b"), channel.offer("c")
        (True, True, False)
        >>> channel.finish(None)
        >>> [channel.get() for _ in range(3)]
        [(0, 'a'), (0, 'b'), (1, None)]
    """

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._sized = max_bytes is not None
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)
        self._writable = threading.Condition(self._lock)
        self._readers = 0
        self._writers = 0
        self._end: tuple[bool, Any] | None = None  # (ended, error or None)
        self._closed = False
        self.on_readable: Callable[[], None] | None = None
        """Called (outside the lock) when an item or the end arrives; for scheduled drains."""

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of the items held now."""
        return self._bytes

    @property
    def ready(self) -> bool:
        """True if :meth:`poll` would return something now (an item, the end, closed)."""
        return bool(self._items) or self._end is not None or self._closed

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _has_room(self, size: int) -> bool:
        items = self._items
        if not items:
            return True
        if len(items) >= self.capacity:
            return False
        return not self._sized or self._bytes + size <= self.max_bytes  # type: ignore[operator]

    def _below_low_water(self) -> bool:
        count = len(self._items)
        if count == 0:
            return True
        if count > self.capacity // 2:
            return False
        return not self._sized or self._bytes <= self.max_bytes // 2  # type: ignore[operator]

    def _append(self, item: Any, size: int) -> None:
        self._items.append((item, size))
        self._bytes += size
        if self._readers:
            self._readable.notify()

    def _notify_readable(self) -> None:
        callback = self.on_readable
        if callback is not None:
            callback()

    def put(self, item: Any, size: int | None = None) -> bool:
        """Add ``item``, waiting while the channel is full.

        Returns:
            False if the channel was closed (the item was not added).
        """
        if size is None:
            size = item_nbytes(item) if self._sized else 0
        with self._lock:
            while not self._closed and not self._has_room(size):
                self._writers += 1
                try:
                    self._writable.wait()
                finally:
                    self._writers -= 1
            if self._closed:
                return False
            self._append(item, size)
        self._notify_readable()
        return True

    def offer(self, item: Any, size: int | None = None) -> bool:
        """Add ``item`` if there is room now; never waits.

        Returns:
            False if the channel is full or closed (the item was not added).
        """
        if size is None:
            size = item_nbytes(item) if self._sized else 0
        with self._lock:
            if self._closed or not self._has_room(size):
                return False
            self._append(item, size)
        self._notify_readable()
        return True

    def push_out(self, item: Any, size: int | None = None) -> list[Any]:
        """Add ``item``, first evicting the oldest items until it fits; never waits.

        Returns:
            The evicted items, oldest first (empty if there was room, or if closed).
        """
        if size is None:
            size = item_nbytes(item) if self._sized else 0
        evicted: list[Any] = []
        with self._lock:
            if self._closed:
                return evicted
            while not self._has_room(size):
                old, old_size = self._items.popleft()
                self._bytes -= old_size
                evicted.append(old)
            self._append(item, size)
        self._notify_readable()
        return evicted

    def finish(self, error: BaseException | None) -> None:
        """Mark the end of the stream, after the items already held (``None``: completed)."""
        with self._lock:
            if self._end is not None or self._closed:
                return
            self._end = (True, error)
            self._readable.notify_all()
        self._notify_readable()

    def abort(self, error: BaseException) -> list[Any]:
        """End the stream with ``error`` now, discarding held items (returned)."""
        with self._lock:
            if self._closed:
                return []
            discarded = [item for item, _ in self._items]
            self._items.clear()
            self._bytes = 0
            self._end = (True, error)
            self._readable.notify_all()
            self._writable.notify_all()
        self._notify_readable()
        return discarded

    def close(self) -> list[Any]:
        """Stop: wake every waiting thread; later puts fail and gets return ``CLOSED``.

        Returns:
            The items still held (dropped by closing).
        """
        with self._lock:
            self._closed = True
            left = [item for item, _ in self._items]
            self._items.clear()
            self._bytes = 0
            self._readable.notify_all()
            self._writable.notify_all()
        self._notify_readable()
        return left

    def _take(self) -> tuple[int, Any]:
        item, size = self._items.popleft()
        self._bytes -= size
        if self._writers and self._below_low_water():
            self._writable.notify_all()
        return ITEM, item

    def get(self) -> tuple[int, Any]:
        """The next item, waiting for one: ``(ITEM, item)``, ``(END, error)`` or ``(CLOSED, None)``.

        After ``END`` or ``CLOSED``, every later call returns the same.
        """
        with self._lock:
            while (got := self._ready()) is None:
                self._readers += 1
                try:
                    self._readable.wait()
                finally:
                    self._readers -= 1
            return got

    def poll(self) -> tuple[int, Any] | None:
        """Like :meth:`get`, but ``None`` instead of waiting when nothing is there yet."""
        with self._lock:
            return self._ready()

    def _ready(self) -> tuple[int, Any] | None:
        """What :meth:`get` returns now, or ``None`` if it would wait (holding the lock)."""
        if self._closed:
            return CLOSED, None
        if self._items:
            return self._take()
        if self._end is not None:
            return END, self._end[1]
        return None
