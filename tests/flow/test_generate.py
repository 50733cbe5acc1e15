"""Tests for rxpipe.flow.generate and append: cold sources, and sources after a stream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.scheduler import NewThreadScheduler

from rxpipe.flow import Tally, append, current_tally, generate
from rxpipe.flow._tally import tallying
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


def test_a_factory_that_raises_becomes_on_error() -> None:
    """An exception from the factory itself (opening a file) reaches on_error, not the caller."""

    def unopenable() -> Iterator[int]:
        raise OSError("cannot open shard-3.csv")

    errors: list[Exception] = []
    generate(unopenable).subscribe(on_error=errors.append)  # must not raise
    assert len(errors) == 1
    assert isinstance(errors[0], OSError)
    assert "shard-3.csv" in str(errors[0])


def test_append_makes_its_source_when_subscribed_with_the_stage_tally() -> None:
    """append calls its factory at subscription, once per pass, while the tally is current.

    The input here ends later on another thread, where no tally is current.
    """
    tallies: list[Tally] = []

    def own() -> reactivex.Observable[int]:
        tallies.append(current_tally("detached"))
        return generate(lambda: iter([3]))

    source = append(own)(reactivex.of(1, 2).pipe(ops.delay(0.01, NewThreadScheduler())))
    assert tallies == []  # not when the operator is applied
    passes = [Tally("collect.mine"), Tally("collect.mine")]
    for tally in passes:
        with tallying(tally):
            assert collect(source) == [1, 2, 3]
    assert tallies == passes
