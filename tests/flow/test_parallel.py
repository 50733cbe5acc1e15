"""Tests for rxpipe.flow.parallel_map: k workers, bounded in-flight items, input order."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flow_workers
import numpy as np
import pytest
import reactivex

from rxpipe import Batch, ConfigError, Pipeline, Stage, StageError
from rxpipe.errors import SkipLimitError
from rxpipe.flow import generate, map_batches, parallel_map
from rxpipe.testing import collect, from_arrays, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")


def counting(n: int, produced: list[int]) -> reactivex.Observable[int]:
    """A cold source of 0..n-1 that records what it has produced."""

    def numbers() -> Iterator[int]:
        for i in range(n):
            produced.append(i)
            yield i

    return generate(numbers)


def jittery_square(x: int) -> int:
    """x², after a random pause, so that workers finish out of order."""
    time.sleep(random.random() / 500)
    return x * x


def exit_on_three(x: int) -> int:
    """x, except for 3, where it calls sys.exit (a BaseException, not an Exception)."""
    if x == 3:
        raise SystemExit(3)
    return x


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_results_come_in_input_order(workers: int) -> None:
    """Whatever order the workers finish in, results are emitted in input order."""
    out = collect(counting(60, []).pipe(parallel_map("square", jittery_square, workers)))
    assert out == [x * x for x in range(60)]


def test_unordered_emits_results_as_they_are_ready() -> None:
    """With ordered=False a slow first item does not hold back the ones after it."""
    emitted: list[int] = []
    second_out = threading.Event()

    def slow_first(x: int) -> int:
        if x == 0:
            second_out.wait(5.0)
        return x

    def record(x: int) -> None:
        emitted.append(x)
        if x == 1:
            second_out.set()

    done = threading.Event()
    source = reactivex.from_iterable(range(5))
    source.pipe(parallel_map("slow", slow_first, 2, ordered=False)).subscribe(
        record, on_completed=done.set
    )
    assert done.wait(5.0)
    assert sorted(emitted) == [0, 1, 2, 3, 4]
    assert emitted.index(1) < emitted.index(0)


def test_workers_run_at_the_same_time() -> None:
    """k workers process k items concurrently (they all meet at a barrier)."""
    barrier = threading.Barrier(3, timeout=5.0)

    def meet(x: int) -> int:
        if x < 3:
            barrier.wait()
        return x

    assert collect(reactivex.from_iterable(range(6)).pipe(parallel_map("meet", meet, 3))) == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]


def test_at_most_workers_plus_prefetch_items_are_in_flight() -> None:
    """With the consumer stuck, upstream is read at most workers + prefetch (+1) ahead."""
    produced: list[int] = []
    release = threading.Event()
    done = threading.Event()
    stage = parallel_map("identity", lambda x: x, 2, prefetch=3)
    subscription = (
        counting(100, produced)
        .pipe(stage)
        .subscribe(lambda _: release.wait(), on_completed=done.set)
    )
    assert wait_for(lambda: len(produced) >= 5)
    threading.Event().wait(0.1)  # give the producer time to overrun, if it could
    assert len(produced) <= 2 + 3 + 1  # in flight + the one waiting for a slot
    release.set()
    assert done.wait(5.0)
    subscription.dispose()


def test_a_worker_error_names_the_stage_and_samples_after_the_items_before_it() -> None:
    """A failing batch becomes a StageError with its sample ids; earlier batches still arrive."""
    source = from_arrays(np.arange(40.0)[:, None], batch_size=4)
    got: list[Batch] = []
    errors: list[Exception] = []
    done = threading.Event()
    source.pipe(parallel_map("process.double", flow_workers.double_features, 3)).subscribe(
        got.append, lambda e: (errors.append(e), done.set())
    )
    assert done.wait(5.0)
    [error] = errors
    assert isinstance(error, StageError)
    assert error.stage == "process.double"
    assert error.sample_ids == (12, 13, 14, 15)
    assert "ValueError: sample 13 is corrupt" in str(error)
    assert [b.ids[0] for b in got] == [0, 4, 8]


def test_a_worker_raising_system_exit_ends_the_stream_instead_of_hanging() -> None:
    """A worker thread whose function raises SystemExit ends the stream with it, in order."""
    got: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()
    source = reactivex.from_iterable(range(10)).pipe(parallel_map("p", exit_on_three, 2))
    subscription = source.subscribe(got.append, lambda e: (errors.append(e), done.set()), done.set)
    assert done.wait(5.0)
    subscription.dispose()
    assert got == [0, 1, 2]
    assert isinstance(errors[0], SystemExit)


def test_an_error_stops_reading_the_source() -> None:
    """After a worker fails, the source is read no further than the in-flight window."""
    produced: list[int] = []
    with pytest.raises(StageError):
        collect(counting(10_000, produced).pipe(parallel_map("f", flow_workers.fail_on_seven, 2)))
    assert len(produced) <= 8 + 4 + 1


def test_skip_drops_only_the_bad_samples() -> None:
    """on_error="skip" re-runs a failing batch per sample and skips the ones that fail."""
    source = from_arrays(np.arange(20.0)[:, None], batch_size=4)
    stage = parallel_map("double", flow_workers.double_features, 2, on_error="skip")
    out = collect(source.pipe(stage))
    ids = [int(i) for b in out for i in b.ids]
    assert ids == [i for i in range(20) if i != 13]
    assert float(out[0].features[1, 0]) == 2.0


def test_skip_fails_past_max_skipped() -> None:
    """More skipped samples than max_skipped fail the stage with SkipLimitError."""

    def reject_odd(batch: Batch) -> Batch:
        if any(int(i) % 2 for i in batch.ids):
            raise ValueError("odd")
        return batch

    source = from_arrays(np.arange(20.0)[:, None], batch_size=4)
    stage = parallel_map("even", reject_odd, 2, on_error="skip", max_skipped=3)
    with pytest.raises(SkipLimitError) as info:
        collect(source.pipe(stage))
    assert info.value.sample_ids == (1, 3, 5, 7)
    assert "expected at most 3 skipped samples" in str(info.value)


def test_inside_a_pipeline_errors_carry_the_pipeline_stage_name(runs_dir: Path) -> None:
    """A worker error in a pipeline names the pipeline's stage (e.g. a repeated plugin's #2)."""
    source = from_arrays(np.arange(40.0)[:, None], batch_size=4)
    pipeline = Pipeline(
        Stage("custom.double", map_batches("custom.double", lambda b: b)),
        Stage("custom.double", parallel_map("custom.double", flow_workers.double_features, 2)),
        source=source,
        name="par",
        runs_dir=runs_dir,
    )
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False)
    assert info.value.stage == "custom.double#2"
    assert 13 in info.value.sample_ids


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, r"workers: expected an int >= 1\. Received: 0"),
        ({"executor": "gpu"}, r"executor: expected 'thread' or 'process'\. Received: 'gpu'"),
        ({"prefetch": -1}, r"prefetch: expected an int >= 0 or None\. Received: -1"),
        ({"mp_context": "magic"}, r"mp_context: expected one of spawn, forkserver, fork"),
        ({"on_error": "ignore"}, r"on_error: expected 'raise' or 'skip'\. Received: 'ignore'"),
        ({"max_skipped": 3}, r"max_skipped: expected only with on_error='skip'"),
        ({"executor": "process", "fn": lambda x: x}, r"fn: expected a picklable function"),
        ({"fn": None}, r"fn: expected a callable\. Received: None"),
    ],
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    """Bad parameters raise ConfigError saying what was expected and received."""
    fn = kwargs.pop("fn", flow_workers.square)
    with pytest.raises(ConfigError, match=message):
        parallel_map("bad", fn, **kwargs)


# -- worker processes -------------------------------------------------------------------


@pytest.mark.slow
def test_processes_give_the_same_results_in_order() -> None:
    """Process workers compute in child processes and emit in input order."""
    source = reactivex.from_iterable(range(30))
    out = collect(source.pipe(parallel_map("square", flow_workers.square, 2, executor="process")))
    assert out == [x * x for x in range(30)]


@pytest.mark.slow
def test_process_errors_carry_sample_ids_and_the_child_traceback() -> None:
    """An exception in a child reaches downstream as a StageError with the child's traceback."""
    source = from_arrays(np.arange(40.0)[:, None], batch_size=4)
    stage = parallel_map("double", flow_workers.double_features, 2, executor="process")
    with pytest.raises(StageError) as info:
        collect(source.pipe(stage))
    assert info.value.sample_ids == (12, 13, 14, 15)
    assert isinstance(info.value.cause, ValueError)
    assert any("flow_workers.py" in note for note in info.value.cause.__notes__)


@pytest.mark.slow
def test_process_skip_applies_in_the_child() -> None:
    """on_error="skip" works the same with process workers."""
    source = from_arrays(np.arange(20.0)[:, None], batch_size=4)
    stage = parallel_map(
        "double", flow_workers.double_features, 2, executor="process", on_error="skip"
    )
    ids = [int(i) for b in collect(source.pipe(stage)) for i in b.ids]
    assert ids == [i for i in range(20) if i != 13]


@pytest.mark.slow
def test_a_crashing_child_fails_the_stage() -> None:
    """A worker process that dies (not an exception) fails the stage, naming its exit code."""
    stage = parallel_map("crash", flow_workers.exit_abruptly, 2, executor="process")
    with pytest.raises(StageError, match="exited with code 17"):
        collect(reactivex.from_iterable(range(10)).pipe(stage))


@pytest.mark.slow
def test_an_item_the_child_cannot_unpickle_fails_the_stage_saying_why() -> None:
    """An item that cannot be rebuilt in the child fails the stage with the reason, not a crash."""
    items: list[object] = [1, flow_workers.Unreadable(), 3]
    stage = parallel_map("read", flow_workers.identity, 1, executor="process")
    with pytest.raises(StageError, match="ValueError: cannot rebuild this item"):
        collect(reactivex.from_iterable(items).pipe(stage))
