"""Tests for rxpipe.flow.generate: cold sources from generator factories."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reactivex import operators as ops

from rxpipe.flow import generate
from rxpipe.testing import collect


def test_every_subscription_reads_again() -> None:
    """The source is cold: each subscription runs the factory anew."""
    calls: list[int] = []

    def numbers() -> Iterator[int]:
        calls.append(1)
        yield from range(3)

    source = generate(numbers)
    assert collect(source) == collect(source) == [0, 1, 2]
    assert len(calls) == 2


def test_disposal_stops_and_closes_the_generator() -> None:
    """take(n) downstream stops the loop early and closes the generator."""
    pulled: list[int] = []
    closed: list[bool] = []

    def numbers() -> Iterator[int]:
        try:
            for i in range(1000):
                pulled.append(i)
                yield i
        finally:
            closed.append(True)

    assert collect(generate(numbers).pipe(ops.take(3))) == [0, 1, 2]
    assert len(pulled) <= 4
    assert closed == [True]


def test_generator_errors_become_on_error() -> None:
    """An exception inside the generator is delivered as on_error."""

    def broken() -> Iterator[int]:
        yield 1
        raise OSError("cannot read shard 2")

    with pytest.raises(OSError, match="shard 2"):
        collect(generate(broken))
