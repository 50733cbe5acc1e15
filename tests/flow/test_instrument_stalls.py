"""Tests for the stall watchdog of instrument: a stage silent after its input ended is named."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex
from reactivex import abc
from reactivex import operators as ops
from reactivex.scheduler import ImmediateScheduler
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxpipe import ConfigError, Pipeline, PipelineCancelled, Stage
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus, StageStalled
from rxpipe.flow import instrument
from rxpipe.interrupts import stopping_on_signals
from rxpipe.testing import EventRecorder, from_arrays, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")

instrument_module = sys.modules["rxpipe.flow.instrument"]  # the package exports the function
RULE = "a stage must call on_completed after its input completes"


def swallow_completion(source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
    """A buggy stage: passes items and errors on, never its input's on_completed."""

    def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> abc.DisposableBase:
        return source.subscribe(observer.on_next, observer.on_error, lambda: None)

    return reactivex.create(subscribe)


def swallow_error(source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
    """A buggy stage: passes items and completion on, never its input's on_error."""

    def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> abc.DisposableBase:
        return source.subscribe(observer.on_next, lambda _: None, observer.on_completed)

    return reactivex.create(subscribe)


def filter_into_subject(source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
    """A buggy stage: a filter feeding a subject it never completes."""
    out: Subject[Any] = Subject()

    def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> abc.DisposableBase:
        mine = out.subscribe(observer)
        source.pipe(ops.filter(lambda x: x % 2 == 0)).subscribe(out.on_next, out.on_error)
        return mine

    return reactivex.create(subscribe)


def timers_pending(scheduler: TestScheduler) -> int:
    """Actions due on the virtual clock and not cancelled (a watchdog not stopped has one)."""
    queued = scheduler._queue.items  # the test scheduler exposes no public view
    return sum(not item.is_cancelled() for item, _ in queued)


class Watched:
    """A run with an event recorder and a virtual clock, and one instrumented stage in it."""

    def __init__(self, stage: Callable[..., Any], name: str = "custom.buggy") -> None:
        self.scheduler = TestScheduler()
        self.run = RunContext("r", "demo", None, EventBus("r"))
        self.recorder = EventRecorder()
        self.run.bus.events.subscribe(self.recorder)
        self.stage = instrument(name, "custom", stage, scheduler=self.scheduler)
        self.items: list[Any] = []
        self.ended: list[str] = []

    def subscribe(self, source: reactivex.Observable[Any]) -> abc.DisposableBase:
        with running(self.run):
            return source.pipe(self.stage).subscribe(
                self.items.append,
                lambda e: self.ended.append(f"error: {e}"),
                lambda: self.ended.append("completed"),
            )

    def stalls(self) -> list[StageStalled]:
        return self.recorder.of_type(StageStalled)

    def warned_at(self, until: float) -> list[float]:
        """Advance the virtual clock to ``until``; the times (s) of the warnings so far."""
        times: list[float] = []
        seen = len(self.stalls())
        step = 0.5
        while self.scheduler.clock < until:
            self.scheduler.advance_by(step)
            now = self.stalls()
            times.extend([self.scheduler.clock] * (len(now) - seen))
            seen = len(now)
        return times


def test_a_stage_that_swallows_on_completed_is_warned_about_at_growing_intervals() -> None:
    """Warnings at 30, 60, 120 and 240 s of silence, each naming the stage and the rule."""
    watched = Watched(swallow_completion)
    watched.subscribe(reactivex.of(1, 2, 3))
    assert watched.items == [1, 2, 3]
    assert watched.ended == []
    assert watched.warned_at(29.5) == []
    assert watched.warned_at(250.0) == [30.0, 60.0, 120.0, 240.0]
    stalls = watched.stalls()
    assert [s.silent_s for s in stalls] == [30.0, 60.0, 120.0, 240.0]
    assert [s.input_ended_s for s in stalls] == [30.0, 60.0, 120.0, 240.0]
    first = stalls[0]
    assert (first.stage, first.pass_index, first.input_end) == ("custom.buggy", 0, "completed")
    assert (first.batches_in, first.batches_out) == (0, 0)  # plain items, not batches
    assert first.summary().startswith("custom.buggy: expected on_completed after its input")
    assert RULE in first.summary()
    assert "for 30 s since its input completed" in first.summary()


def test_a_filter_feeding_a_subject_it_never_completes_is_named() -> None:
    """The other common form of the bug: ops.filter into a subject never completed."""
    watched = Watched(filter_into_subject, name="custom.evens")
    watched.subscribe(reactivex.of(1, 2, 3, 4))
    assert watched.items == [2, 4]
    assert watched.warned_at(31.0) == [30.0]
    assert watched.stalls()[0].summary().startswith("custom.evens: expected on_completed")


def test_a_well_behaved_stage_is_never_warned_about() -> None:
    """A stage that completes with its input arms no watchdog at all."""
    watched = Watched(lambda source: source.pipe(ops.map(lambda x: x * 2)))
    watched.subscribe(reactivex.of(1, 2))
    assert watched.ended == ["completed"]
    assert watched.warned_at(500.0) == []
    assert timers_pending(watched.scheduler) == 0


def test_a_stage_that_swallows_its_inputs_error_is_named() -> None:
    """An input's error the stage never passes on hangs the run too; the warning says so."""
    watched = Watched(swallow_error)
    watched.subscribe(reactivex.concat(reactivex.of(1), reactivex.throw(ValueError("x"))))
    assert watched.warned_at(31.0) == [30.0]
    [stall] = watched.stalls()
    assert stall.input_end == "failed"
    assert "custom.buggy: expected the input's error passed on with on_error" in stall.summary()


def test_silence_is_counted_from_the_last_output() -> None:
    """A stage still emitting after its input ended is not silent; its silence starts over."""
    watched = Watched(lambda source: late_emitter(source, watched.scheduler, (20.0, 45.0)))
    watched.subscribe(reactivex.of(1))
    # checks at 30 and 60 see new output; the one at 90, 30 s of silence
    assert watched.warned_at(91.0) == [90.0]
    [stall] = watched.stalls()
    assert (stall.silent_s, stall.input_ended_s) == (30.0, 90.0)
    assert "for 30 s (its input completed 90 s ago)" in stall.summary()


def late_emitter(
    source: reactivex.Observable[Any], scheduler: TestScheduler, at: tuple[float, ...]
) -> reactivex.Observable[Any]:
    """Passes items on; once the input completes, emits "late" at each time of ``at``
    (virtual seconds after the input's end) and never completes."""

    def subscribe(observer: abc.ObserverBase[Any], _: Any = None) -> abc.DisposableBase:
        def completed() -> None:
            for delay in at:
                scheduler.schedule_relative(delay, lambda *_: observer.on_next("late"))

        return source.subscribe(observer.on_next, observer.on_error, completed)

    return reactivex.create(subscribe)


def test_a_stage_that_ends_late_stops_being_warned_about() -> None:
    """Warnings stop once the stage completes, and no timer is left behind."""
    subject: Subject[int] = Subject()

    def completes_when_told(source: reactivex.Observable[int]) -> reactivex.Observable[int]:
        return reactivex.merge(source.pipe(ops.ignore_elements()), subject)

    watched = Watched(completes_when_told)
    watched.subscribe(reactivex.of(1))
    assert watched.warned_at(61.0) == [30.0, 60.0]
    subject.on_completed()
    assert watched.ended == ["completed"]
    assert timers_pending(watched.scheduler) == 0
    assert watched.warned_at(500.0) == []
    assert timers_pending(watched.scheduler) == 0


def test_a_disposed_pass_is_no_longer_watched() -> None:
    """Disposing the subscription (an error elsewhere, Ctrl-C) cancels the watchdog."""
    watched = Watched(swallow_completion)
    subscription = watched.subscribe(reactivex.of(1))
    assert watched.warned_at(40.0) == [30.0]
    subscription.dispose()
    assert timers_pending(watched.scheduler) == 0
    assert watched.warned_at(500.0) == []
    assert timers_pending(watched.scheduler) == 0


def test_a_stage_waiting_for_downstream_is_not_silent() -> None:
    """A models-like stage whose item downstream works on (training reads the stage's input
    again and again inside on_next) is busy, not stalled, however long that takes."""
    scheduler = TestScheduler()
    run = RunContext("r", "demo", None, EventBus("r"))
    recorder = EventRecorder()
    run.bus.events.subscribe(recorder)
    plan = instrument("models.plan", "models", reactivex.just, scheduler=scheduler)
    passes: list[list[int]] = []

    def train(data: reactivex.Observable[int]) -> None:
        for _ in range(3):  # three epochs, each reading the data to its end
            passes.append([])
            data.subscribe(passes[-1].append)
            assert passes[-1] == [1, 2]  # the pass ran (and ended) inside on_next
            scheduler.advance_by(100.0)  # an epoch of training

    done: list[str] = []
    data = reactivex.from_iterable([1, 2], ImmediateScheduler())  # read within on_next
    with running(run):
        data.pipe(plan).subscribe(train, on_completed=lambda: done.append("done"))
    assert passes == [[1, 2]] * 3
    assert done == ["done"]
    assert recorder.of_type(StageStalled) == []
    scheduler.advance_by(500.0)
    assert recorder.of_type(StageStalled) == []


def test_a_stage_working_on_its_inputs_end_is_not_silent() -> None:
    """Work done while handling on_completed (a flush, a fit) is not silence."""
    scheduler = TestScheduler()

    def slow_flush(source: reactivex.Observable[int]) -> reactivex.Observable[int]:
        def subscribe(observer: abc.ObserverBase[int], _: Any = None) -> abc.DisposableBase:
            def completed() -> None:
                scheduler.advance_by(300.0)  # five minutes of flushing
                observer.on_next(99)
                observer.on_completed()

            return source.subscribe(observer.on_next, observer.on_error, completed)

        return reactivex.create(subscribe)

    run = RunContext("r", "demo", None, EventBus("r"))
    recorder = EventRecorder()
    run.bus.events.subscribe(recorder)
    stage = instrument("custom.flush", "custom", slow_flush, scheduler=scheduler)
    with running(run):
        out = reactivex.of(1).pipe(stage).pipe(ops.to_list()).run()
    assert out == [1, 99]
    scheduler.advance_by(500.0)
    assert recorder.of_type(StageStalled) == []


def test_the_warning_can_be_turned_off() -> None:
    """stall_warning_s=0: no watchdog."""
    scheduler = TestScheduler()
    run = RunContext("r", "demo", None, EventBus("r"))
    recorder = EventRecorder()
    run.bus.events.subscribe(recorder)
    stage = instrument(
        "custom.buggy", "custom", swallow_completion, stall_warning_s=0, scheduler=scheduler
    )
    with running(run):
        reactivex.of(1).pipe(stage).subscribe()
    scheduler.advance_by(500.0)
    assert recorder.of_type(StageStalled) == []


@pytest.mark.parametrize("value", [-1.0, "30", True, float("nan")])
def test_an_invalid_threshold_is_a_config_error(value: Any) -> None:
    """stall_warning_s must be a number of seconds >= 0 (or None for the default)."""
    with pytest.raises(ConfigError, match=r"stall_warning_s: expected a number of seconds >= 0"):
        instrument("custom.x", "custom", lambda s: s, stall_warning_s=value)


def test_the_default_threshold_is_thirty_seconds() -> None:
    """The first warning comes after 30 s of silence unless told otherwise."""
    assert instrument_module.STALL_WARNING_S == 30.0
    watched = Watched(swallow_completion)
    watched.subscribe(reactivex.of(1))
    assert watched.warned_at(31.0) == [30.0]


def test_real_timers_warn_and_leave_no_thread_behind() -> None:
    """With the default (thread) timers: a warning within the threshold, and once the pass
    is disposed no timer thread stays (the no_leaks fixture checks)."""
    run = RunContext("r", "demo", None, EventBus("r"))
    recorder = EventRecorder()
    run.bus.events.subscribe(recorder)
    stage = instrument("custom.buggy", "custom", swallow_completion, stall_warning_s=0.05)
    with running(run):
        subscription = reactivex.of(1).pipe(stage).subscribe()
    assert wait_for(lambda: len(recorder.of_type(StageStalled)) >= 2, timeout=5.0)
    first, second = recorder.of_type(StageStalled)[:2]
    assert first.stage == "custom.buggy"
    assert first.silent_s >= 0.05
    assert second.silent_s >= 0.1
    subscription.dispose()


@pytest.mark.usefixtures("default_signal_handlers")
@pytest.mark.parametrize(
    ("signum", "named"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")]
)
def test_a_hung_run_is_warned_about_and_stopped_by_a_signal(
    runs_dir: Path,
    caplog: pytest.LogCaptureFixture,
    signum: int,
    named: str,
) -> None:
    """Pipeline.run with a stage that swallows on_completed: the warning names the stage
    (in the events, events.jsonl and, as the run shows no log or progress bar, a standard
    library log record), Ctrl-C or SIGTERM (as the command line handles it) stops the run as
    cancelled, and no thread is left."""
    pipeline = Pipeline(
        Stage("custom.swallow", swallow_completion),
        source=from_arrays(np.zeros((8, 2), "float32"), batch_size=4),
        name="hung",
        runs_dir=runs_dir,
    )
    recorder = EventRecorder()

    def interrupt_once_warned() -> None:
        wait_for(lambda: bool(recorder.of_type(StageStalled)), timeout=10.0)
        os.kill(os.getpid(), signum)  # also without a warning: the assertions below fail

    interrupter = threading.Thread(target=interrupt_once_warned, name="test-interrupter")
    interrupter.start()
    try:
        with (
            pytest.raises(PipelineCancelled, match=rf"interrupted \({named}\)"),
            stopping_on_signals(signal.SIGINT, signal.SIGTERM),  # what the CLI does
        ):
            pipeline.run(progress=False, subscribers=[recorder], stall_warning=0.1)
    finally:
        interrupter.join()
    [stall, *_] = recorder.of_type(StageStalled)
    assert (stall.stage, stall.batches_in, stall.batches_out) == ("custom.swallow", 2, 2)
    assert recorder.kinds()[-1] == "run_failed"
    [run_dir] = (runs_dir / "hung").iterdir()
    logged = (run_dir / "events.jsonl").read_text()
    assert '"event": "stage_stalled"' in logged
    assert '"stage": "custom.swallow"' in logged
    [record, *_] = [r for r in caplog.records if r.name == "rxpipe"]
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith("rxpipe: warning: custom.swallow: expected on_completed")
