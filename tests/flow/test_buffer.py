"""Tests for rxpipe.flow.bounded_buffer: backpressure for cold sources, overflow for hot ones."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.recorded import Recorded

from rxpipe import Batch, BufferOverflowError, ConfigError, Pipeline, Stage
from rxpipe.context import RunContext, running
from rxpipe.events import BatchesDropped, EventBus
from rxpipe.flow import bounded_buffer, generate, instrument, map_batches
from rxpipe.testing import EventRecorder, collect, from_arrays, make_metadata, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")

on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed


def counting(n: int, produced: list[int]) -> reactivex.Observable[int]:
    """A cold source of 0..n-1 that records what it has produced."""

    def numbers() -> Iterator[int]:
        for i in range(n):
            produced.append(i)
            yield i

    return generate(numbers)


def detached_run() -> tuple[RunContext, EventRecorder]:
    """A run context without a run directory, and a recorder of its events."""
    bus = EventBus("test")
    recorder = EventRecorder()
    bus.events.subscribe(recorder)
    return RunContext("test", "test", None, bus), recorder


# -- cold sources: the producer waits -------------------------------------------------


def test_items_pass_in_order() -> None:
    """Every item comes out, in order, whatever the capacity."""
    for capacity in (1, 2, 7):
        source = reactivex.from_iterable(range(200))
        assert collect(source.pipe(bounded_buffer(capacity))) == list(range(200))


def test_a_slow_consumer_makes_a_cold_source_wait() -> None:
    """With the consumer stuck, the source gets at most capacity + 2 items ahead."""
    produced: list[int] = []
    release = threading.Event()
    got: list[int] = []
    done = threading.Event()

    def consume(item: int) -> None:
        release.wait()
        got.append(item)

    subscription = (
        counting(100, produced).pipe(bounded_buffer(3)).subscribe(consume, on_completed=done.set)
    )
    assert wait_for(lambda: len(produced) >= 4)
    threading.Event().wait(0.1)  # give the producer time to overrun, if it could
    assert len(produced) <= 1 + 3 + 1  # in the consumer, buffered, blocked in on_next
    release.set()
    assert done.wait(5.0)
    assert got == list(range(100))
    subscription.dispose()


def test_max_bytes_bounds_what_waits() -> None:
    """With a byte bound, a stuck consumer lets at most max_bytes of batches wait."""
    features = np.zeros((1000, 1), "uint8")  # batches of 100: 100 B features + 800 B ids
    produced: list[int] = []
    source = from_arrays(features, batch_size=100)
    source = source.pipe(map_batches("count", lambda b: produced.append(b.size) or b))
    release = threading.Event()
    done = threading.Event()
    buffer = bounded_buffer(100, max_bytes=3 * 900)
    subscription = source.pipe(buffer).subscribe(lambda _: release.wait(), on_completed=done.set)
    assert wait_for(lambda: len(produced) >= 4)
    threading.Event().wait(0.1)  # give the producer time to overrun, if it could
    assert len(produced) <= 1 + 3 + 1
    release.set()
    assert done.wait(5.0)
    subscription.dispose()


def test_upstream_errors_arrive_after_the_items_before_them() -> None:
    """An upstream error is delivered after the items that preceded it."""
    source = reactivex.concat(reactivex.of(1, 2), reactivex.throw(OSError("disk gone")))
    got: list[int] = []
    errors: list[Exception] = []
    done = threading.Event()
    source.pipe(bounded_buffer(4)).subscribe(
        got.append, lambda e: (errors.append(e), done.set()), done.set
    )
    assert done.wait(5.0)
    assert got == [1, 2]
    assert isinstance(errors[0], OSError)


def test_disposing_stops_the_producer_and_closes_the_source() -> None:
    """Disposal stops an endless cold source promptly and closes its generator."""
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    got: list[int] = []
    subscription = generate(endless).pipe(bounded_buffer(2)).subscribe(got.append)
    assert wait_for(lambda: len(got) > 10)
    subscription.dispose()
    assert closed.wait(2.0)


def test_a_source_raising_system_exit_ends_the_stream_instead_of_hanging() -> None:
    """A BaseException escaping the source on the producer thread is delivered downstream."""

    def exits() -> Iterator[int]:
        yield 1
        raise SystemExit("user code called sys.exit()")

    got: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()
    subscription = (
        generate(exits)
        .pipe(bounded_buffer(2))
        .subscribe(got.append, lambda e: (errors.append(e), done.set()), done.set)
    )
    assert done.wait(5.0)
    subscription.dispose()
    assert got == [1]
    assert isinstance(errors[0], SystemExit)


def test_a_downstream_system_exit_ends_the_stream_instead_of_hanging() -> None:
    """A BaseException raised by the observer on the drain thread ends the stream with it."""
    errors: list[BaseException] = []
    done = threading.Event()

    def exit_at_three(item: int) -> None:
        if item == 3:
            raise SystemExit("consumer exit")

    subscription = (
        reactivex.from_iterable(range(1000))
        .pipe(bounded_buffer(2))
        .subscribe(exit_at_three, lambda e: (errors.append(e), done.set()), done.set)
    )
    assert done.wait(5.0)
    subscription.dispose()
    assert isinstance(errors[0], SystemExit)


def test_a_downstream_exception_ends_the_stream_with_it() -> None:
    """An exception raised by the downstream observer reaches its on_error and stops all."""
    errors: list[Exception] = []
    done = threading.Event()

    def explode(item: int) -> None:
        if item == 3:
            raise KeyError("consumer bug")

    reactivex.from_iterable(range(1000)).pipe(bounded_buffer(2)).subscribe(
        explode, lambda e: (errors.append(e), done.set())
    )
    assert done.wait(5.0)
    assert isinstance(errors[0], KeyError)


# -- hot sources: overflow policies, in virtual time -----------------------------------


def run_hot(
    overflow: Any, pushes: list[list[Recorded[int]]], capacity: int = 2
) -> tuple[list[Recorded[Any]], RunContext, EventRecorder]:
    """Push each group of hot notifications, letting the consumer drain between groups.

    The hot source runs on virtual time (``producer``); the buffer delivers on a second
    test scheduler (``consumer``), which advances only between groups: a consumer that
    is busy while each group arrives.
    """
    producer, consumer = TestScheduler(), TestScheduler()
    messages = [m for group in pushes for m in group]
    hot = producer.create_hot_observable(messages)
    results = consumer.create_observer()
    context, recorder = detached_run()
    with running(context):
        buffer = instrument(
            "custom.buffer",
            "custom",
            bounded_buffer(capacity, overflow=overflow, scheduler=consumer),
        )
        subscription = hot.pipe(buffer).subscribe(results)
    assert wait_for(lambda: len(hot.subscriptions) == 1)  # subscribed on the producer thread
    for group in pushes:
        producer.advance_to(group[-1].time)
        consumer.advance_by(10)
    subscription.dispose()
    return results.messages, context, recorder


def values(messages: list[Recorded[Any]]) -> list[Any]:
    """The values (and the end, as a kind) of recorded notifications."""
    return [m.value.value if m.value.kind == "N" else m.value.kind for m in messages]


def test_drop_oldest_keeps_the_freshest_items() -> None:
    """A busy consumer finds the latest `capacity` items; older ones are dropped, counted."""
    pushes = [
        [on_next(210, 1), on_next(220, 2), on_next(230, 3)],
        [on_next(240, 4), on_next(250, 5), on_next(260, 6), on_next(270, 7)],
        [on_completed(280)],
    ]
    messages, context, recorder = run_hot("drop_oldest", pushes)
    assert values(messages) == [2, 3, 6, 7, "C"]
    counts = context.counts["custom.buffer"]
    assert counts.batches_dropped == 3
    dropped = recorder.of_type(BatchesDropped)
    assert sum(e.batches for e in dropped) == 3
    assert dropped[-1].total_batches == 3
    assert {e.reason for e in dropped} == {"overflow: drop_oldest"}


def test_drop_newest_keeps_the_earliest_items() -> None:
    """A busy consumer finds the first `capacity` items; later ones are dropped, counted."""
    pushes = [
        [on_next(210, 1), on_next(220, 2), on_next(230, 3)],
        [on_next(240, 4), on_next(250, 5), on_next(260, 6), on_next(270, 7)],
        [on_completed(280)],
    ]
    messages, context, _ = run_hot("drop_newest", pushes)
    assert values(messages) == [1, 2, 4, 5, "C"]
    assert context.counts["custom.buffer"].batches_dropped == 3


def test_overflow_error_fails_at_the_first_item_that_does_not_fit() -> None:
    """Policy "error" fails the stream with BufferOverflowError naming the stage."""
    pushes = [
        [on_next(210, 1), on_next(220, 2)],
        [on_next(230, 3), on_next(240, 4), on_next(250, 5)],
    ]
    messages, _, _ = run_hot("error", pushes)
    assert values(messages) == [1, 2, "E"]
    error = messages[-1].value.exception
    assert isinstance(error, BufferOverflowError)
    assert error.stage == "custom.buffer"
    assert "at most 2 buffered items" in str(error)


def test_a_consumer_that_keeps_up_loses_nothing() -> None:
    """When the consumer drains between items, no policy drops anything."""
    pushes = [[on_next(210 + 10 * i, i)] for i in range(6)] + [[on_completed(300)]]
    for overflow in ("drop_oldest", "drop_newest", "error"):
        messages, context, _ = run_hot(overflow, pushes, capacity=1)
        assert values(messages) == [0, 1, 2, 3, 4, 5, "C"]
        assert context.counts["custom.buffer"].batches_dropped == 0


def test_dropped_samples_are_reported_in_the_run_result(runs_dir: Path) -> None:
    """A hot source outrunning a slow stage: drops balance the accounting and reach the result."""
    subject: Subject[Batch] = Subject()
    features = np.zeros((10, 2), "float32")
    meta = make_metadata(features)
    slow_started = threading.Event()
    finish = threading.Event()

    def slow(batch: Batch) -> Batch:
        slow_started.set()
        finish.wait(5.0)
        return batch

    def push() -> None:
        wait_for(lambda: bool(subject.observers))
        for i in range(50):
            subject.on_next(Batch(features, None, np.arange(i * 10, i * 10 + 10), meta))
            if i == 0:
                slow_started.wait(5.0)
        finish.set()
        subject.on_completed()

    pipeline = Pipeline(
        Stage("custom.hot", bounded_buffer(4, overflow="drop_newest")),
        Stage("custom.slow", map_batches("custom.slow", slow)),
        source=subject,
        name="hot",
        runs_dir=runs_dir,
    )
    recorder = EventRecorder()
    pipeline.events.subscribe(recorder)
    pusher = threading.Thread(target=push)
    pusher.start()
    result = pipeline.run(progress=False)
    pusher.join()
    hot = result.counts["custom.hot"]
    assert hot.samples_in == 500
    assert hot.batches_dropped == 45  # 1 in the slow stage, 4 buffered, the rest dropped
    assert hot.samples_dropped == 450
    assert hot.samples_out + hot.samples_dropped == 500
    assert result.dropped == {"custom.hot": hot.samples_dropped}
    assert sum(e.samples for e in recorder.of_type(BatchesDropped)) == hot.samples_dropped


def test_outside_a_pipeline_every_drop_is_published() -> None:
    """A buffer under a run but in no stage publishes every drop by the end of the stream."""
    context, recorder = detached_run()
    subject: Subject[int] = Subject()
    busy = threading.Event()
    release = threading.Event()
    done = threading.Event()
    got: list[int] = []

    def slow(item: int) -> None:
        got.append(item)
        busy.set()
        release.wait(5.0)

    with running(context):
        buffered = subject.pipe(bounded_buffer(2, overflow="drop_newest"))
        subscription = buffered.subscribe(slow, on_completed=done.set)
    assert wait_for(lambda: bool(subject.observers))
    subject.on_next(0)
    assert busy.wait(5.0)
    for i in range(1, 10):
        subject.on_next(i)  # 1 and 2 wait in the buffer, 3..9 are dropped
    release.set()
    subject.on_completed()
    assert done.wait(5.0)
    subscription.dispose()
    assert got == [0, 1, 2]
    dropped = recorder.of_type(BatchesDropped)
    assert sum(e.batches for e in dropped) == 7
    assert dropped[-1].total_batches == 7


# -- parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, r"capacity: expected an int >= 1\. Received: 0"),
        ({"capacity": 2, "max_bytes": 0}, r"max_bytes: expected an int >= 1 or None"),
        ({"capacity": 2, "overflow": "spill"}, r"overflow: expected one of .*Received: 'spill'"),
    ],
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    """Bad parameters raise ConfigError saying what was expected and received."""
    with pytest.raises(ConfigError, match=message):
        bounded_buffer(**kwargs)
