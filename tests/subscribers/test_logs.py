"""Tests for the structlog event logger."""

from __future__ import annotations

import io
import json

import pytest

from rxpipe.events import (
    BatchesDropped,
    EpochEnded,
    Event,
    EventBus,
    RunFailed,
    StageCompleted,
    StageStarted,
    TrainProgress,
)
from rxpipe.subscribers import EventLogger
from rxpipe.subscribers.logs import LEFT_OUT


def test_json_lines_are_valid_json_with_event_names() -> None:
    """--log-format json writes one parseable JSON object per event."""
    stream = io.StringIO()
    bus = EventBus("r")
    bus.events.subscribe(EventLogger("json", stream))
    bus.publish(
        EpochEnded, epoch=1, epochs=2, logs={"loss": 0.123456}, duration_s=1.0, samples_per_s=5.0
    )
    bus.publish(RunFailed, error_type="StageError", message="boom", stage="s")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["epoch_ended", "run_failed"]
    assert lines[0]["logs"] == {"loss": 0.1235}
    assert lines[1]["level"] == "error"


def test_train_progress_is_not_logged() -> None:
    """High-rate progress events stay out of the log."""
    stream = io.StringIO()
    EventLogger("console", stream)(
        TrainProgress(
            run_id="r", seq=0, time=0.0, epoch=1, epochs=1, step=1, steps=None, samples=1, loss=1.0
        )
    )
    assert stream.getvalue() == ""


def test_samples_consumed_by_a_fitting_pass_are_not_logged_as_losses() -> None:
    """A processor's fitting pass is not logged as dropped data; real drops are."""
    stream = io.StringIO()
    bus = EventBus("r")
    bus.events.subscribe(EventLogger("json", stream))
    counts = {"batches": 2, "samples": 16, "total_batches": 2, "total_samples": 16}
    bus.publish(BatchesDropped, stage="process.standardize", reason="fitting pass", **counts)
    bus.publish(BatchesDropped, stage="access.buffer", reason="buffer full", **counts)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["stage"]) for line in lines] == [
        ("batches_dropped", "access.buffer")
    ]


def test_unknown_format_is_rejected() -> None:
    """Only console and json formats exist."""
    with pytest.raises(ValueError, match="log_format: expected one of"):
        EventLogger("xml")


def test_throughput_snapshots_are_logged_as_one_summary() -> None:
    """A snapshot becomes one line naming each stage's rate."""
    from rxpipe.events import StageRate, ThroughputSnapshot

    stream = io.StringIO()
    bus = EventBus("r")
    bus.events.subscribe(EventLogger("json", stream))
    rate = StageRate(
        stage="process.resize",
        batches=3,
        samples=96,
        batches_per_s=1.0,
        samples_per_s=32.0,
        busy_share=0.71,
    )
    bus.publish(ThroughputSnapshot, elapsed_s=5.0, interval_s=5.0, stages=(rate,))
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["stages"] == "process.resize 32/s (busy 71%)"


@pytest.mark.parametrize(
    "event",
    [
        StageStarted(run_id="r", seq=0, time=0.0, stage="s", kind_of_stage="process", pass_index=0),
        StageCompleted(
            run_id="r",
            seq=1,
            time=0.0,
            stage="s",
            pass_index=0,
            batches_in=1,
            batches_out=1,
            samples_in=8,
            samples_out=8,
            duration_s=0.1,
        ),
    ],
    ids=lambda e: e.kind,
)
def test_per_pass_stage_events_are_not_logged(event: Event) -> None:
    """Stage start and completion events (one per stage per pass) stay out of the log."""
    stream = io.StringIO()
    EventLogger("json", stream)(event)
    assert stream.getvalue() == ""


def test_the_docstring_names_every_event_left_out() -> None:
    """What the logger leaves out is what its documentation says it leaves out."""
    assert {cls.kind for cls in LEFT_OUT} == {"train_progress", "stage_started", "stage_completed"}
    for cls in LEFT_OUT:
        assert f"``{cls.kind}``" in (EventLogger.__doc__ or "")
