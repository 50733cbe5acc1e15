"""Tests for events.jsonl: strict JSON lines that give back every event's fields."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from rxpipe import events
from rxpipe.events import (
    ArtifactSaved,
    BatchesDropped,
    CacheRebuilt,
    EpochEnded,
    EvaluationCompleted,
    Event,
    EventBus,
    RunCompleted,
    RunFailed,
    RunStarted,
    SamplesSkipped,
    StageCompleted,
    StageRate,
    StageStalled,
    StageStarted,
    ThroughputSnapshot,
    TrainProgress,
)
from rxpipe.subscribers import JsonlWriter

HEAD: dict[str, Any] = {"run_id": "r", "time": 1.5}
ONE_OF_EACH: list[Event] = [
    RunStarted(**HEAD, seq=0, pipeline="dígits", run_dir="runs/dígits/x"),
    StageStarted(**HEAD, seq=1, stage="process.ñormalize", kind_of_stage="process", pass_index=0),
    StageCompleted(
        **HEAD,
        seq=2,
        stage="s",
        pass_index=0,
        batches_in=2,
        batches_out=2,
        samples_in=64,
        samples_out=64,
        duration_s=0.25,
        busy_s=0.125,
        samples_per_s=256.0,
    ),
    BatchesDropped(
        **HEAD,
        seq=3,
        stage="s",
        reason="overflow: drop_oldest",
        batches=1,
        samples=32,
        total_batches=1,
        total_samples=32,
    ),
    SamplesSkipped(**HEAD, seq=4, stage="s", sample_ids=(3, "a/b.png"), reason="E: x", total=2),
    CacheRebuilt(**HEAD, seq=5, stage="access.cache", path="c", reason="scale: 0.5 → 0.25"),
    TrainProgress(
        **HEAD, seq=6, epoch=1, epochs=2, step=3, steps=None, samples=96, loss=0.5, global_step=2
    ),
    ThroughputSnapshot(
        **HEAD,
        seq=7,
        elapsed_s=5.0,
        interval_s=5.0,
        stages=(StageRate("s", 1, 32, 0.5, 16.0, 0.25),),
    ),
    EpochEnded(
        **HEAD,
        seq=8,
        epoch=1,
        epochs=2,
        logs={"loss": 0.5, "val_loss": 0.75},
        duration_s=1.0,
        samples_per_s=96.0,
        data_wait_share=0.125,
        steps=3,
        samples=96,
    ),
    EvaluationCompleted(**HEAD, seq=9, split="test", metrics={"accuracy": 0.5, "per_class": {}}),
    ArtifactSaved(**HEAD, seq=10, name="model", path="runs/x/model"),
    RunFailed(
        **HEAD, seq=11, error_type="StageError", message="bäd\nline", stage="s", sample_ids=(7,)
    ),
    StageStalled(
        **HEAD,
        seq=12,
        stage="custom.swallow",
        pass_index=1,
        input_end="completed",
        input_ended_s=60.5,
        silent_s=30.25,
        batches_in=4,
        batches_out=3,
    ),
    RunCompleted(**HEAD, seq=13, duration_s=2.0, metrics={"test": {"accuracy": 0.5}}),
]


def _strict(line: str) -> Any:
    """``line`` parsed as strict JSON (no ``NaN`` or ``Infinity`` tokens)."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(line, parse_constant=refuse)


def _written(path: Path, *published: Event) -> list[Any]:
    writer = JsonlWriter(path)
    for event in published:
        writer(event)
    writer.close()
    return [_strict(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _as_json_types(value: Any) -> Any:
    """``value`` with tuples as lists, as JSON gives them back."""
    if isinstance(value, dict):
        return {key: _as_json_types(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json_types(item) for item in value]
    return value


def test_every_event_type_round_trips(tmp_path: Path) -> None:
    """Each event type's line gives back its kind and every field's value."""
    kinds = {cls.kind for cls in Event.__subclasses__() if cls.__module__ == events.__name__}
    assert {event.kind for event in ONE_OF_EACH} == kinds  # a new event type needs a case
    lines = _written(tmp_path / "events.jsonl", *ONE_OF_EACH)
    for event, line in zip(ONE_OF_EACH, lines, strict=True):
        assert line == {"event": event.kind, **_as_json_types(attrs.asdict(event))}


def test_numpy_values_are_numbers_and_non_finite_ones_null(tmp_path: Path) -> None:
    """Numpy scalars stay numbers, NaN and infinities are null: every line is strict JSON."""
    bus = EventBus("r")
    writer = JsonlWriter(tmp_path / "events.jsonl")
    bus.events.subscribe(writer)
    logs = {"loss": 0.5, "ratio": float("inf"), "val_ratio": float("nan"), "lr": np.float32(0.5)}
    bus.publish(EpochEnded, epoch=1, epochs=2, logs=logs, duration_s=1.0, samples_per_s=2.0)
    bus.publish(
        EvaluationCompleted,
        split="test",
        metrics=types.MappingProxyType({"r2": float("-inf"), "samples": np.int64(27)}),
    )
    bus.publish(RunFailed, error_type="StageError", message="m", sample_ids=(np.int64(5), "x"))
    writer.close()
    assert not bus.subscriber_errors
    lines = [_strict(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert lines[0]["logs"] == {"loss": 0.5, "ratio": None, "val_ratio": None, "lr": 0.5}
    assert lines[1]["metrics"] == {"r2": None, "samples": 27}
    assert lines[2]["sample_ids"] == [5, "x"]
