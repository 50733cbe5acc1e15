"""Drops and failures counted by the operators inside a stage, for one pass over the data.

:func:`~rxpipe.flow.instrument` counts what enters and leaves a stage; only the
operators inside it know what they dropped (a full buffer, a dropped remainder) or
skipped (bad records). They report it to the :class:`Tally` of the pass they serve,
found with :func:`current_tally` when they are subscribed: ``instrument`` makes its
pass's tally current while the stage subscribes (and makes none current while the
stage subscribes to the stages before it). Outside a pipeline, operators get a
detached tally, whose events go to :func:`~rxpipe.context.current_run`'s bus.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rxpipe.batch import Batch
from rxpipe.context import RunContext, SkippedSample, current_run
from rxpipe.events import BatchesDropped, SamplesSkipped

__all__ = ["FITTING_PASS", "Tally", "current_tally", "tallying"]

DROP_EVENT_INTERVAL_S = 1.0
"""Drop events of one pass are published at most about this often."""

FITTING_PASS = "fitting pass"
"""The drop reason of samples a processor consumed to fit itself (nothing was lost)."""


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else value


class Tally:
    """Batches and samples one pass of a stage dropped or failed; thread-safe.

    Args:
        stage: the stage's name (in events and skipped-sample records).
        run: the run to publish events on (default: the current run).

    Example:
        >>> tally = Tally("custom.demo")
        >>> tally.drop(3, "remainder")
        >>> tally.batches_dropped, tally.samples_dropped
        (1, 3)
    """

    def __init__(self, stage: str, run: RunContext | None = None) -> None:
        self.stage = stage
        self.run = run if run is not None else current_run()
        self.batches_dropped = 0
        self.samples_dropped = 0
        self.batches_failed = 0
        self.samples_failed = 0
        self.skipped: list[SkippedSample] = []
        self.workers = 0  # worker threads or processes doing the stage's work, if any
        self.work_s = 0.0  # the time they spent on items, summed
        self._lock = threading.Lock()
        self._pending_batches = 0
        self._pending_samples = 0
        self._pending_reason = ""
        self._last_report = -float("inf")

    def add_work(self, seconds: float) -> None:
        """Add the time one of the stage's workers spent on one item."""
        with self._lock:
            self.work_s += seconds

    def drop(self, item: object, reason: str) -> None:
        """Count ``item`` (a batch, or a number of samples) as dropped, for ``reason``."""
        samples = item.size if isinstance(item, Batch) else item if isinstance(item, int) else 0
        reports = []
        with self._lock:
            self.batches_dropped += 1
            self.samples_dropped += samples
            if self._pending_batches and reason != self._pending_reason:
                reports.append(self._take_pending())
            self._pending_batches += 1
            self._pending_samples += samples
            self._pending_reason = reason
            if time.monotonic() - self._last_report >= DROP_EVENT_INTERVAL_S:
                reports.append(self._take_pending())
        for report in reports:
            self.run.publish(BatchesDropped, **report)

    def _take_pending(self) -> dict[str, Any]:
        self._last_report = time.monotonic()
        report = {
            "stage": self.stage,
            "reason": self._pending_reason,
            "batches": self._pending_batches,
            "samples": self._pending_samples,
            "total_batches": self.batches_dropped,
            "total_samples": self.samples_dropped,
        }
        self._pending_batches = self._pending_samples = 0
        return report

    def skip(
        self,
        sample_ids: Sequence[Any],
        reason: str,
        *,
        whole_batch: bool,
        max_skipped: int | None = None,
    ) -> int:
        """Count samples skipped as bad records; publish :class:`SamplesSkipped`.

        The event names only the samples no pass of this run has reported before.

        Args:
            sample_ids: the skipped samples' ids.
            reason: the error, as ``"ValueError: message"``.
            whole_batch: nothing of the batch was delivered (it counts as a failed batch).
            max_skipped: the stage's limit, for the event.

        Returns:
            Samples skipped in this pass so far.
        """
        ids = tuple(_plain(i) for i in sample_ids)
        with self._lock:
            self.samples_failed += len(ids)
            self.batches_failed += int(whole_batch)
            self.skipped.extend(SkippedSample(self.stage, i, reason) for i in ids)
            total = len(self.skipped)
        fresh = self.run.first_skips(self.stage, ids)
        if not fresh:  # an earlier pass of this run reported them
            return total
        self.run.publish(
            SamplesSkipped,
            stage=self.stage,
            sample_ids=fresh,
            reason=reason,
            total=total,
            max_skipped=max_skipped,
        )
        return total

    def flush(self) -> None:
        """Publish drops not reported yet (at the end of the pass)."""
        with self._lock:
            report = self._take_pending() if self._pending_batches else None
        if report is not None:
            self.run.publish(BatchesDropped, **report)


_active: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("rxpipe_tally", default=None)


def current_tally(stage: str = "detached") -> Tally:
    """The tally of the stage pass being subscribed, or a detached one named ``stage``.

    Call it when your operator is subscribed (in its ``subscribe`` function, or in a
    :func:`~rxpipe.flow.transform` state's ``__init__``), not later: the tally is
    current only while the stage subscribes.

    Example:
        >>> current_tally("custom.mine").stage
        'custom.mine'
    """
    tally = _active.get()
    return tally if tally is not None else Tally(stage)


@contextmanager
def tallying(tally: Tally | None) -> Iterator[None]:
    """Make ``tally`` current within the ``with`` block (``None``: no stage's tally)."""
    token = _active.set(tally)
    try:
        yield
    finally:
        _active.reset(token)
