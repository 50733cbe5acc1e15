"""Tests for the structlog event logger."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import numpy as np
import pytest
import structlog

from rxpipe.events import (
    ArtifactSaved,
    BatchesDropped,
    EpochEnded,
    Event,
    EventBus,
    RunCompleted,
    RunFailed,
    StageCompleted,
    StageStalled,
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


STALLED = {
    "stage": "custom.swallow",
    "pass_index": 0,
    "input_end": "completed",
    "input_ended_s": 30.0,
    "silent_s": 30.0,
    "batches_in": 2,
    "batches_out": 2,
}


def test_a_stalled_stage_is_a_warning_naming_it_and_what_to_check() -> None:
    """stage_stalled is logged at warning level, with the stage and the rule it breaks."""
    stream = io.StringIO()
    bus = EventBus("r")
    bus.events.subscribe(EventLogger("json", stream))
    bus.publish(StageStalled, **STALLED)
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert (line["event"], line["level"], line["stage"]) == (
        "stage_stalled",
        "warning",
        "custom.swallow",
    )
    assert line["message"].startswith("custom.swallow: expected on_completed after its input")
    assert "a stage must call on_completed after its input completes" in line["message"]


def test_a_stalled_stage_reads_as_a_warning_on_the_console() -> None:
    """The console line says warning and carries the whole message."""
    stream = io.StringIO()
    EventLogger("console", stream)(StageStalled(run_id="r", seq=3, time=0.0, **STALLED))
    line = stream.getvalue()
    assert "[warning  ] stage_stalled" in line
    assert "stage=custom.swallow" in line
    assert "Ctrl-C stops it" in line


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


def test_json_lines_are_strict_json_with_numpy_and_non_finite_values() -> None:
    """NaN and infinities are null, numpy numbers numbers (rounded): strict JSON per line."""
    stream = io.StringIO()
    log = EventLogger("json", stream)
    head = {"run_id": "r", "seq": 0, "time": 0.0}
    logs = {"loss": 0.5, "ratio": float("inf"), "val_ratio": float("nan")}
    log(EpochEnded(**head, epoch=1, epochs=2, logs=logs, duration_s=1.0, samples_per_s=2.0))
    metrics = {"test": {"accuracy": np.float32(0.123456), "r2": float("-inf")}}
    log(RunCompleted(**head, duration_s=1.0, metrics=metrics))
    log(RunFailed(**head, error_type="StageError", message="m", sample_ids=(np.int64(5),)))

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    lines = [json.loads(line, parse_constant=refuse) for line in stream.getvalue().splitlines()]
    assert lines[0]["logs"] == {"loss": 0.5, "ratio": None, "val_ratio": None}
    assert lines[1]["metrics"] == {"test": {"accuracy": 0.1235, "r2": None}}
    assert lines[2]["sample_ids"] == [5]


def test_console_lines_show_numpy_values_as_plain_numbers() -> None:
    """A sample id that is a numpy integer reads as the number, not as its repr."""
    stream = io.StringIO()
    EventLogger("console", stream)(
        RunFailed(
            run_id="r", seq=1, time=0.0, error_type="E", message="m", sample_ids=(np.int64(5),)
        )
    )
    assert "sample_ids=[5]" in stream.getvalue()
    assert "np." not in stream.getvalue()


@pytest.fixture
def warnings_only_structlog() -> Iterator[None]:
    """An application's global structlog configuration that filters out info lines."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=True,
    )
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("warnings_only_structlog")
def test_the_application_structlog_level_does_not_filter_the_event_lines() -> None:
    """A level filter in the global structlog configuration drops none of the logger's lines."""
    stream = io.StringIO()
    EventLogger("json", stream)(
        ArtifactSaved(run_id="r", seq=3, time=0.0, name="model", path="runs/x/model")
    )
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == [
        "artifact_saved"
    ]
