"""One contract, run against every flow operator.

Each operator must: pass every item through (lossy ones: a subsequence), in order
(unless unordered), and complete; pass an upstream error through after the items before
it; read a cold source again when subscribed again; stop an endless source within 2
seconds when disposed; and leave no thread or process behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import flow_workers
import pytest
import reactivex

from rxpipe.flow import bounded_buffer, generate, map_batches, parallel_map, prefetch
from rxpipe.testing import collect, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")

Operator = Callable[[reactivex.Observable[Any]], reactivex.Observable[Any]]


def identity(x: int) -> int:
    """x."""
    return x


@attrs.frozen
class Case:
    """An operator under contract: how to build it, and what it promises."""

    make: Callable[[], Operator]
    fn: Callable[[int], int] = identity
    ordered: bool = True
    lossless: bool = True
    synchronous: bool = False


square = flow_workers.square
CASES = {
    "map_batches": Case(lambda: map_batches("m", square), square, synchronous=True),
    "map_batches(skip)": Case(
        lambda: map_batches("m", square, on_error="skip"), square, synchronous=True
    ),
    "bounded_buffer": Case(lambda: bounded_buffer(2)),
    "bounded_buffer(max_bytes)": Case(lambda: bounded_buffer(5, max_bytes=1)),
    "bounded_buffer(drop_oldest)": Case(
        lambda: bounded_buffer(2, overflow="drop_oldest"), lossless=False
    ),
    "bounded_buffer(drop_newest)": Case(
        lambda: bounded_buffer(2, overflow="drop_newest"), lossless=False
    ),
    "prefetch": Case(lambda: prefetch(3)),
    "parallel_map": Case(lambda: parallel_map("p", square, 3), square),
    "parallel_map(workers=1)": Case(lambda: parallel_map("p", square, 1, prefetch=0), square),
    "parallel_map(unordered)": Case(
        lambda: parallel_map("p", square, 3, ordered=False), square, ordered=False
    ),
    "parallel_map(skip)": Case(lambda: parallel_map("p", square, 2, on_error="skip"), square),
    "map_batches(workers=2)": Case(lambda: map_batches("m", square, workers=2), square),
}
SLOW_CASES = {
    "parallel_map(process)": Case(lambda: parallel_map("p", square, 2, executor="process"), square),
}
PARAMS = [pytest.param(case, id=name) for name, case in CASES.items()] + [
    pytest.param(case, id=name, marks=pytest.mark.slow) for name, case in SLOW_CASES.items()
]


def is_subsequence(part: list[int], whole: list[int]) -> bool:
    """True if ``part`` appears in ``whole`` in the same order."""
    rest = iter(whole)
    return all(any(x == y for y in rest) for x in part)


@pytest.mark.parametrize("case", PARAMS)
def test_items_pass_through_and_the_stream_completes(case: Case) -> None:
    """Every item arrives in order (or as promised), then the stream completes."""
    out = collect(reactivex.from_iterable(range(50)).pipe(case.make()))
    want = [case.fn(x) for x in range(50)]
    if not case.lossless:
        assert out
        assert is_subsequence(out, want)
    elif case.ordered:
        assert out == want
    else:
        assert sorted(out) == sorted(want)


@pytest.mark.parametrize("case", PARAMS)
def test_upstream_errors_pass_through_after_the_items(case: Case) -> None:
    """An upstream error reaches the subscriber, after the items that preceded it."""
    source = reactivex.concat(reactivex.from_iterable(range(5)), reactivex.throw(OSError("gone")))
    got: list[int] = []
    errors: list[Exception] = []
    done = threading.Event()
    subscription = source.pipe(case.make()).subscribe(
        got.append, lambda e: (errors.append(e), done.set()), done.set
    )
    assert done.wait(10.0)
    subscription.dispose()
    assert [type(e) for e in errors] == [OSError]
    if case.lossless:
        assert sorted(got) == [case.fn(x) for x in range(5)]


@pytest.mark.parametrize("case", PARAMS)
def test_a_cold_source_is_read_again_on_every_subscription(case: Case) -> None:
    """Subscribing twice runs the upstream twice, with fresh per-subscription state."""
    reads: list[int] = []

    def numbers() -> Iterator[int]:
        reads.append(1)
        yield from range(10)

    stream = generate(numbers).pipe(case.make())
    first, second = collect(stream), collect(stream)
    assert len(reads) == 2
    if case.lossless:
        assert sorted(first) == sorted(second) == sorted(case.fn(x) for x in range(10))


@pytest.mark.parametrize("case", PARAMS)
def test_disposal_stops_an_endless_source(case: Case) -> None:
    """Disposing the subscription closes an endless source within 2 seconds.

    A synchronous operator runs on its subscriber's thread: it is disposed through a
    buffer after it (otherwise subscribing would run the endless source to no end).
    """
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i % 1000
                i += 1
        finally:
            closed.set()

    got: list[int] = []
    stream = generate(endless).pipe(case.make())
    if case.synchronous:
        stream = stream.pipe(bounded_buffer(1))
    subscription = stream.subscribe(got.append)
    assert wait_for(lambda: len(got) >= 5, timeout=10.0)
    subscription.dispose()
    assert closed.wait(2.0)
