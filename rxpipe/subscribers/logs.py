"""Log events as structlog lines: a console renderer for people, JSON for machines."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from rxpipe.events import (
    BatchesDropped,
    Event,
    StageCompleted,
    StageStalled,
    StageStarted,
    ThroughputSnapshot,
    TrainProgress,
)
from rxpipe.flow._tally import FITTING_PASS
from rxpipe.subscribers._plain import plain

LEFT_OUT = (TrainProgress, StageStarted, StageCompleted)
"""Event types :class:`EventLogger` does not log (too frequent; all are in events.jsonl)."""
LOG_FORMATS = ("console", "json")
"""The formats of :class:`EventLogger` (``rxpipe run --log-format``)."""


def _compact(value: Any) -> Any:
    """Round floats and keep only the scalars of nested metrics, so a line stays readable."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {
            k: _compact(v)
            for k, v in value.items()
            if v is None  # a NaN or infinity, in JSON
            or isinstance(v, int | float | str)
            or (isinstance(v, dict) and k != "per_class")
        }
    return value


class EventLogger:
    """Log events as structlog lines, one per event, named after it (``epoch_ended`` ...).

    Logged: the run's start, completion and failure, epochs, evaluations, saved
    artifacts, dropped batches, skipped samples, rebuilt caches, and throughput snapshots
    (one summary line each). A stalled stage (``stage_stalled``: its input ended and it
    neither emits nor ends) is a ``warning`` line with its fields and a ``message`` saying
    what to check; a failed run an ``error`` line. Left out as too frequent for a log (see
    :data:`LEFT_OUT`): ``train_progress`` (a few per second), ``stage_started`` and
    ``stage_completed`` (one per stage per pass over the data); and so are the samples a
    processor consumed to fit itself (``batches_dropped`` with reason ``"fitting pass"``:
    nothing is lost). Floats are rounded and per-class metrics and confusion matrices are
    dropped; in JSON, NaN and infinities are ``null``, so every line is strict JSON. The
    run's events.jsonl has every event in full.
    The logger has its own processor chain and bound-logger class, so it neither needs
    nor changes the application's global structlog configuration, and is not filtered by
    it: a level filter set there for the application's own logs drops none of these lines.

    Args:
        log_format: ``"console"`` or ``"json"``.
        stream: where lines go (default: standard error).

    Example:
        >>> import io, json
        >>> from rxpipe.events import ArtifactSaved
        >>> stream = io.StringIO()
        >>> EventLogger("json", stream)(
        ...     ArtifactSaved(run_id="r", seq=3, time=0.0, name="model", path="runs/x/model")
        ... )
        >>> json.loads(stream.getvalue())["event"]
        'artifact_saved'
    """

    def __init__(self, log_format: str = "console", stream: TextIO | None = None) -> None:
        if log_format not in LOG_FORMATS:
            raise ValueError(f"log_format: expected one of {LOG_FORMATS}. Received: {log_format!r}")
        renderer: Any = (
            structlog.processors.JSONRenderer(default=str)
            if log_format == "json"
            else structlog.dev.ConsoleRenderer(colors=False)
        )
        self._json = log_format == "json"
        self._log = structlog.wrap_logger(
            structlog.PrintLogger(stream or sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
            context_class=dict,
            cache_logger_on_first_use=False,
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                renderer,
            ],
        )

    def __call__(self, event: Event) -> None:
        if isinstance(event, LEFT_OUT):
            return
        if isinstance(event, BatchesDropped) and event.reason == FITTING_PASS:
            return
        if isinstance(event, ThroughputSnapshot):  # one readable line, not a tuple of records
            self._log.info(event.kind, run_id=event.run_id, seq=event.seq, stages=event.summary())
            return
        data = plain(event.to_dict(), finite=self._json)
        fields = {key: _compact(value) for key, value in data.items()}
        del fields["event"], fields["time"]
        if event.kind == "run_failed":
            self._log.error(event.kind, **fields)
        elif isinstance(event, StageStalled):
            self._log.warning(event.kind, **fields, message=event.summary())
        else:
            self._log.info(event.kind, **fields)
