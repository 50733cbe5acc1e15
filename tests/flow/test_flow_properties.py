"""Property tests: parallel map equals serial map; accounting always balances."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import reactivex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxpipe import Batch, StageError
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus
from rxpipe.flow import (
    bounded_buffer,
    check_accounting,
    generate,
    instrument,
    map_batches,
    parallel_map,
    transform,
)
from rxpipe.flow.rebatch import Rebatcher
from rxpipe.testing import make_metadata

pytestmark = pytest.mark.usefixtures("no_leaks")

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

batch_sizes = st.lists(st.integers(1, 9), max_size=12)
"""The sizes of a source's batches."""


def source_of(sizes: list[int]) -> reactivex.Observable[Batch]:
    """A cold source of batches of the given sizes; sample ids 0..n-1, features = ids."""
    total = sum(sizes)
    features = np.arange(total, dtype="float64")[:, None]
    meta = make_metadata(features)

    def batches() -> Iterator[Batch]:
        start = 0
        for size in sizes:
            part = slice(start, start + size)
            yield Batch(features[part], None, np.arange(total)[part], meta)
            start += size

    return generate(batches)


def failing_on(bad: frozenset[int]) -> Callable[[Batch], Batch]:
    """Square the features; raise ValueError on a batch holding a sample id in ``bad``."""

    def fn(batch: Batch) -> Batch:
        hit = bad.intersection(batch.ids.tolist())
        if hit:
            raise ValueError(f"bad sample {min(hit)}")
        return batch.evolve(features=batch.features**2)

    return fn


def outcome(stream: reactivex.Observable[Batch]) -> tuple[list[Any], Any]:
    """What a subscriber sees: the items (ids, features) and the error (type, ids), if any."""
    items: list[Any] = []
    errors: list[Exception] = []
    done = threading.Event()

    def on_error(error: Exception) -> None:
        errors.append(error)
        done.set()

    subscription = stream.subscribe(
        lambda b: items.append((b.ids.tolist(), b.features[:, 0].tolist())), on_error, done.set
    )
    assert done.wait(30.0)
    subscription.dispose()
    error = None
    if errors:
        [e] = errors
        error = (type(e).__name__, e.sample_ids if isinstance(e, StageError) else None)
    return items, error


@PROPERTY_SETTINGS
@given(
    sizes=batch_sizes,
    workers=st.integers(1, 4),
    prefetch=st.integers(0, 4),
    capacity=st.integers(1, 4),
    bad=st.frozensets(st.integers(0, 60), max_size=3),
    skip=st.booleans(),
)
def test_ordered_parallel_map_equals_serial_map(
    sizes: list[int], workers: int, prefetch: int, capacity: int, bad: frozenset[int], skip: bool
) -> None:
    """For any workers, prefetch, buffer capacity and batch sizes, the results (and the
    error, or the skipped samples) are exactly those of the serial map."""
    fn = failing_on(bad)
    on_error = "skip" if skip else "raise"
    serial = outcome(source_of(sizes).pipe(map_batches("f", fn, on_error=on_error)))
    parallel = outcome(
        source_of(sizes).pipe(
            bounded_buffer(capacity),
            parallel_map("f", fn, workers, prefetch=prefetch, on_error=on_error),
            bounded_buffer(capacity),
        )
    )
    assert parallel == serial


@PROPERTY_SETTINGS
@given(sizes=batch_sizes, workers=st.integers(1, 4))
def test_unordered_parallel_map_gives_the_same_results(sizes: list[int], workers: int) -> None:
    """Without order, the parallel map gives the serial map's results, permuted."""
    fn = failing_on(frozenset())
    serial, _ = outcome(source_of(sizes).pipe(map_batches("f", fn)))
    parallel, _ = outcome(source_of(sizes).pipe(parallel_map("f", fn, workers, ordered=False)))
    assert sorted(parallel) == sorted(serial)


def stage_strategy() -> st.SearchStrategy[tuple[str, Callable[[], Any]]]:
    """One random flow stage: buffers (cold or lossy), parallel or serial maps, re-batching."""
    skip_map = st.builds(
        lambda bad, workers: (
            f"map(w={workers})",
            lambda: map_batches("m", failing_on(bad), on_error="skip", workers=workers),
        ),
        st.frozensets(st.integers(0, 60), max_size=4),
        st.integers(1, 3),
    )
    buffer = st.builds(
        lambda capacity, overflow: (
            f"buffer({capacity},{overflow})",
            lambda: bounded_buffer(capacity, overflow=overflow),
        ),
        st.integers(1, 3),
        st.sampled_from(["block", "drop_oldest", "drop_newest"]),
    )
    rebatch = st.builds(
        lambda size, drop: (
            f"rebatch({size},{drop})",
            lambda: transform("rebatch", lambda: Rebatcher(size, drop, "rebatch")),
        ),
        st.integers(1, 6),
        st.booleans(),
    )
    return st.one_of(skip_map, buffer, rebatch)


@PROPERTY_SETTINGS
@given(sizes=batch_sizes, stages=st.lists(stage_strategy(), min_size=1, max_size=4))
def test_accounting_always_balances(
    sizes: list[int], stages: list[tuple[str, Callable[[], Any]]]
) -> None:
    """Whatever the chain drops, skips or re-batches, every sample is accounted for, per
    stage and end to end: samples read = delivered + dropped + failed."""
    context = RunContext("p", "p", None, EventBus("p"))
    names = [f"s{i}.{label}" for i, (label, _) in enumerate(stages)]
    with running(context):
        chain = [instrument("source", "collect", lambda s: source_of(sizes))]
        chain += [
            instrument(n, "custom", make()) for n, (_, make) in zip(names, stages, strict=True)
        ]
        items, error = outcome(reactivex.empty().pipe(*chain))
    assert error is None
    check_accounting(context.counts)
    counts = [context.counts[n] for n in names]
    read = context.counts["source"].samples_out
    delivered = sum(len(ids) for ids, _ in items)
    assert delivered == counts[-1].samples_out
    dropped = sum(c.samples_dropped for c in counts)
    failed = sum(c.samples_failed for c in counts)
    assert read == sum(sizes) == delivered + dropped + failed
    for c in counts:
        assert c.samples_in == c.samples_out + c.samples_dropped + c.samples_failed
