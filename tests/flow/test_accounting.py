"""Tests for per-stage accounting: samples in = out + dropped + failed, checked at run end."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops

from rxpipe import AccountingError, Batch, Pipeline, PluginKind, Stage, StageCounts
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus, RunFailed, StageCompleted
from rxpipe.flow import bounded_buffer, check_accounting, current_tally, instrument, map_batches
from rxpipe.operators import access
from rxpipe.testing import EventRecorder, collect, fail_on, from_arrays, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")


def samples(n: int, batch_size: int) -> reactivex.Observable[Batch]:
    """A source of n one-feature samples (ids 0..n-1)."""
    return from_arrays(np.arange(float(n))[:, None], batch_size=batch_size)


def keep_even(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    """A custom stage that silently leaves out odd sample ids (an accounting bug)."""
    return source.pipe(ops.map(lambda b: b.select(b.ids % 2 == 0)))


def keep_even_counted(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    """The same stage, reporting what it leaves out to its tally."""

    def subscribe(observer: reactivex.abc.ObserverBase[Batch], scheduler: object = None) -> object:
        tally = current_tally("custom.keep_even")

        def on_next(batch: Batch) -> None:
            odd = batch.ids % 2 == 1
            if odd.any():
                tally.drop(int(odd.sum()), "odd ids")
            observer.on_next(batch.select(~odd))

        return source.subscribe(on_next, observer.on_error, observer.on_completed)

    return reactivex.create(subscribe)  # type: ignore[arg-type]


def test_a_plugin_stage_that_loses_samples_fails_the_run(runs_dir: Path) -> None:
    """Samples a plugin leaves unaccounted for are a bug: the run fails with AccountingError."""
    stage = Stage("process.keep_even", keep_even, kind=PluginKind.PROCESS)
    pipeline = Pipeline(stage, source=samples(10, 4), name="lose", runs_dir=runs_dir)
    recorder = EventRecorder()
    pipeline.events.subscribe(recorder)
    with pytest.raises(AccountingError) as info:
        pipeline.run(progress=False)
    assert "process.keep_even: 10 in, 5 out, 0 dropped, 0 failed" in str(info.value)
    assert "(+5 unaccounted)" in str(info.value)
    [failed] = recorder.of_type(RunFailed)
    assert failed.error_type == "AccountingError"
    [run_dir] = (runs_dir / "lose").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_a_custom_filter_stage_is_counted_but_not_checked(runs_dir: Path) -> None:
    """Any user operator (here a filter) may remove samples; its counts are still reported."""
    pipeline = Pipeline(
        Stage("custom.keep_even", keep_even),
        source=samples(10, 4),
        name="filter",
        runs_dir=runs_dir,
    )
    counts = pipeline.run(progress=False).counts["custom.keep_even"]
    assert (counts.samples_in, counts.samples_out, counts.samples_unaccounted) == (10, 5, 0)


def test_samples_left_out_on_purpose_are_counted_as_dropped(runs_dir: Path) -> None:
    """A stage that reports what it leaves out to current_tally() balances."""
    pipeline = Pipeline(
        Stage("custom.keep_even", keep_even_counted),
        source=samples(10, 4),
        name="keep",
        runs_dir=runs_dir,
    )
    counts = pipeline.run(progress=False).counts["custom.keep_even"]
    assert (counts.samples_in, counts.samples_out, counts.samples_dropped) == (10, 5, 5)
    assert counts.balanced


def test_a_dropped_remainder_is_counted(runs_dir: Path) -> None:
    """access.batch(drop_remainder=True) counts the samples it drops."""
    pipeline = Pipeline(
        access.batch(4, drop_remainder=True), source=samples(10, 3), name="rem", runs_dir=runs_dir
    )
    recorder = EventRecorder()
    pipeline.events.subscribe(recorder)
    result = pipeline.run(progress=False)
    counts = result.counts["access.batch"]
    assert (counts.samples_out, counts.samples_dropped, counts.batches_dropped) == (8, 2, 1)
    assert result.dropped == {"access.batch": 2}
    [completed] = recorder.of_type(StageCompleted)
    assert (completed.samples_dropped, completed.batches_dropped) == (2, 1)


def test_sources_and_sinks_are_not_checked(runs_dir: Path) -> None:
    """A stage that turns batches into something else (a sink) does not unbalance the run."""
    total = Stage("custom.total", ops.reduce(lambda acc, b: acc + b.size, 0))
    result = Pipeline(total, source=samples(10, 4), name="sink", runs_dir=runs_dir).run(
        progress=False
    )
    assert result.outputs == [10]
    assert result.counts["custom.total"].balanced


def detached() -> RunContext:
    """A run context without a run directory."""
    return RunContext("t", "t", None, EventBus("t"))


def test_a_pass_cut_short_leaves_its_in_flight_samples_unfinished() -> None:
    """Disposing a pass early counts what was inside the stage as unfinished, not as a bug."""
    context = detached()
    release = threading.Event()
    got: list[Batch] = []
    with running(context):
        stage = instrument("custom.buffer", "custom", bounded_buffer(4))
        subscription = (
            samples(1000, 10).pipe(stage).subscribe(lambda b: (got.append(b), release.wait(5.0)))
        )
    assert wait_for(lambda: len(got) == 1)
    threading.Event().wait(0.05)  # let the producer fill the buffer
    release.set()
    subscription.dispose()
    counts = context.counts["custom.buffer"]
    assert counts.samples_unfinished == counts.samples_in - counts.samples_out > 0
    assert counts.balanced
    check_accounting(context.counts)


def test_the_failing_batch_counts_as_failed() -> None:
    """When a stage fails, the samples of the batch it failed on count as failed."""
    context = detached()
    with running(context), pytest.raises(Exception, match="boom"):
        collect(samples(20, 5).pipe(instrument("custom.fail_on", "custom", fail_on(7))))
    counts = context.counts["custom.fail_on"]
    assert (counts.samples_in, counts.samples_out, counts.samples_failed) == (10, 5, 5)
    assert counts.samples_unfinished == 0


def test_check_accounting_names_every_unbalanced_stage() -> None:
    """check_accounting raises listing each stage whose completed passes did not balance."""
    good = StageCounts("a", samples_in=5, samples_out=5)
    bad = StageCounts("b", samples_in=5, samples_out=7, samples_unaccounted=-2)
    check_accounting({"a": good})
    with pytest.raises(AccountingError, match=r"b: 5 in, 7 out.*\(-2 unaccounted\)"):
        check_accounting({"a": good, "b": bad})


def test_counts_add_up_over_passes(runs_dir: Path) -> None:
    """Every pass (subscription) adds to the stage's totals."""
    context = detached()
    stage = instrument("custom.double", "custom", map_batches("custom.double", lambda b: b))
    with running(context):
        data = samples(10, 4).pipe(stage)
        collect(data)
        collect(data)
    counts = context.counts["custom.double"]
    assert (counts.passes, counts.samples_in, counts.samples_out) == (2, 20, 20)
