"""Tests for rxpipe.flow.prefetch: the next N batches ready ahead of the consumer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import reactivex

from rxpipe import ConfigError
from rxpipe.flow import generate, iterate, prefetch
from rxpipe.testing import collect, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")


def test_items_pass_in_order() -> None:
    """Prefetching changes when items are produced, not what or in which order."""
    assert collect(reactivex.from_iterable(range(300)).pipe(prefetch(3))) == list(range(300))


def test_the_next_items_are_ready_while_the_consumer_works() -> None:
    """While the consumer holds one item, the next `count` are produced, and no more."""
    produced: list[int] = []

    def numbers() -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    items = iterate(generate(numbers).pipe(prefetch(4)), capacity=1)
    assert next(items) == 0
    assert wait_for(lambda: len(produced) >= 1 + 1 + 4)  # held + in iterate's queue + ready
    threading.Event().wait(0.1)  # give the producer time to overrun, if it could
    assert len(produced) <= 1 + 1 + 1 + 4 + 1  # ... + in iterate's hand-off + blocked
    assert list(items) == list(range(1, 100))


def test_count_must_be_positive() -> None:
    """A count below 1 is rejected with the value received."""
    with pytest.raises(ConfigError, match=r"count: expected an int >= 1\. Received: 0"):
        prefetch(0)
