"""Log events as structlog lines: a console renderer for people, JSON for machines."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import structlog

from rxpipe.events import (
    BatchesDropped,
    Event,
    StageCompleted,
    StageStarted,
    ThroughputSnapshot,
    TrainProgress,
)
from rxpipe.flow._tally import FITTING_PASS

_QUIET = (TrainProgress, StageStarted, StageCompleted)
_FORMATS = ("console", "json")


def _compact(value: Any) -> Any:
    """Round floats and keep only the scalars of nested metrics, so a line stays readable."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {
            k: _compact(v)
            for k, v in value.items()
            if isinstance(v, int | float | str) or (isinstance(v, dict) and k != "per_class")
        }
    return value


class EventLogger:
    """Log each event as one structlog line named after the event (``epoch_ended`` ...).

    Train-progress and per-pass stage events are left out, and so are the samples a
    processor consumed to fit itself (dropped with reason ``"fitting pass"``: nothing is
    lost). Floats are rounded and per-class metrics and confusion matrices are dropped
    (everything is in events.jsonl).
    The logger has its own processor chain, so it neither needs nor changes the
    application's global structlog configuration.

    Args:
        log_format: ``"console"`` or ``"json"``.
        stream: where lines go (default: standard error).
    """

    def __init__(self, log_format: str = "console", stream: TextIO | None = None) -> None:
        if log_format not in _FORMATS:
            raise ValueError(f"log_format: expected one of {_FORMATS}. Received: {log_format!r}")
        renderer: Any = (
            structlog.processors.JSONRenderer(default=str)
            if log_format == "json"
            else structlog.dev.ConsoleRenderer(colors=False)
        )
        self._log = structlog.wrap_logger(
            structlog.PrintLogger(stream or sys.stderr),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                renderer,
            ],
        )

    def __call__(self, event: Event) -> None:
        if isinstance(event, _QUIET):
            return
        if isinstance(event, BatchesDropped) and event.reason == FITTING_PASS:
            return
        if isinstance(event, ThroughputSnapshot):  # one readable line, not a tuple of records
            self._log.info(event.kind, run_id=event.run_id, seq=event.seq, stages=event.summary())
            return
        fields = {key: _compact(value) for key, value in event.to_dict().items()}
        del fields["event"], fields["time"]
        if event.kind == "run_failed":
            self._log.error(event.kind, **fields)
        else:
            self._log.info(event.kind, **fields)
