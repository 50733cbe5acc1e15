"""Event subscribers shipped with rxpipe: events.jsonl, structlog lines, a progress bar."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rxpipe.events import Event, EventBus, StageStalled
from rxpipe.subscribers.jsonl import JsonlWriter
from rxpipe.subscribers.logs import EventLogger
from rxpipe.subscribers.progress import ProgressBar

__all__ = ["EventLogger", "JsonlWriter", "ProgressBar", "attach_subscribers"]


def attach_subscribers(
    bus: EventBus,
    run_dir: Path,
    *,
    progress: bool | None,
    log_format: str | None,
    tensorboard: bool = False,
    extra: Sequence[Callable[[Event], None]] = (),
) -> Callable[[], None]:
    """Subscribe the standard subscribers to ``bus``; return a function that detaches them.

    Raises:
        ConfigError: with ``tensorboard`` when the tensorboard package is not installed
            (checked before any subscriber is created).
    """
    if tensorboard:
        from rxpipe.subscribers.tensorboard import check_available

        check_available()
    if progress is None:
        progress = sys.stderr.isatty() and log_format is None
    sinks: list[Callable[[Event], None]] = [JsonlWriter(run_dir / "events.jsonl")]
    try:
        if log_format is not None:
            sinks.append(EventLogger(log_format))
        if progress:
            sinks.append(ProgressBar())
        if tensorboard:
            from rxpipe.subscribers.tensorboard import TensorBoardWriter

            sinks.append(TensorBoardWriter(run_dir / "tensorboard"))
    except BaseException:
        _close(sinks)
        raise
    if log_format is None and not progress:
        sinks.append(_warn_stalls)
    sinks.extend(extra)
    subscriptions = [bus.events.subscribe(sink) for sink in sinks]

    def detach() -> None:
        for subscription in subscriptions:
            subscription.dispose()
        _close(sinks)

    return detach


def _warn_stalls(event: Event) -> None:
    """A quiet run (no log, no progress bar) still tells of a stalled stage, through the
    standard library's ``logging`` (printed to stderr unless the application configures it).
    """
    if isinstance(event, StageStalled):
        logging.getLogger("rxpipe").warning("rxpipe: warning: %s", event.summary())


def _close(sinks: Sequence[Callable[[Event], None]]) -> None:
    for sink in sinks:
        close = getattr(sink, "close", None)
        if callable(close):
            close()
