"""Tests for rxpipe.flow.iterate: the bounded buffer the trainer reads from."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import reactivex

from rxpipe.errors import ConfigError
from rxpipe.flow import generate, iterate
from rxpipe.testing import wait_for


def test_items_arrive_in_order() -> None:
    """Iteration yields every item in order."""
    assert list(iterate(reactivex.from_iterable(range(100)), capacity=3)) == list(range(100))


def test_a_slow_consumer_makes_the_producer_wait() -> None:
    """The producer runs at most `capacity` (+1 in hand) items ahead of the consumer."""
    produced: list[int] = []

    def numbers() -> Iterator[int]:
        for i in range(50):
            produced.append(i)
            yield i

    items = iterate(generate(numbers), capacity=2)
    assert next(items) == 0
    wait_for(lambda: len(produced) >= 4, timeout=1.0)
    assert len(produced) <= 1 + 2 + 1  # consumed + buffered + the one blocked in on_next
    items.close()


@pytest.mark.usefixtures("no_thread_leak")
def test_closing_early_stops_the_producer_thread() -> None:
    """Breaking out of the loop disposes the source and joins the producer thread."""
    stopped = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            stopped.set()

    for item in iterate(generate(endless), capacity=4):
        if item == 10:
            break
    assert stopped.wait(2.0)


def test_source_errors_are_raised_by_the_iterator() -> None:
    """An error in the source is raised where the consumer iterates."""
    source = reactivex.concat(reactivex.of(1, 2), reactivex.throw(ValueError("broken file")))
    got: list[int] = []
    with pytest.raises(ValueError, match="broken file"):
        for item in iterate(source, capacity=1):
            got.append(item)
    assert got == [1, 2]


def test_capacity_must_be_positive() -> None:
    """A capacity below 1 is rejected with the value received."""
    with pytest.raises(ValueError, match=r"capacity: expected an int >= 1\. Received: 0"):
        next(iterate(reactivex.of(1), capacity=0))


@pytest.mark.parametrize("capacity", [-1, 2.5, "4", None, True])
def test_an_invalid_capacity_is_a_config_error_at_the_call(capacity: object) -> None:
    """A capacity that is not an int >= 1 raises ConfigError when iterate is called."""
    with pytest.raises(
        ConfigError, match=rf"capacity: expected an int >= 1\. Received: {capacity!r}"
    ):
        iterate(reactivex.of(1), capacity=capacity)  # type: ignore[arg-type]
