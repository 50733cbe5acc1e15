"""Wrap a stage with accounting, stage events and error labelling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import reactivex
from reactivex import abc
from reactivex.disposable import CompositeDisposable, Disposable

from rxpipe.batch import Batch
from rxpipe.context import StageCounts, current_run
from rxpipe.errors import AccountingError, StageError
from rxpipe.events import StageCompleted, StageStarted
from rxpipe.flow._tally import Tally, tallying
from rxpipe.flow.transform import as_stage_error

Operator = Callable[[reactivex.Observable[Any]], reactivex.Observable[Any]]

__all__ = ["StageCounts", "check_accounting", "instrument"]

_merge_lock = threading.Lock()

# Stages whose output need not balance their input: a collect stage passes its input on and
# adds its own samples; a custom stage (any operator, e.g. ops.filter) may remove samples
# without a tally. Their counts are still reported.
_UNBALANCED_KINDS = frozenset({"collect", "custom"})


class _Pass:
    """The counts of one pass of one stage, merged into the stage's totals at its end."""

    def __init__(self, tally: Tally, balanced: bool) -> None:
        self.tally = tally
        self.balanced = balanced
        self.batches_in = self.samples_in = 0
        self.batches_out = self.samples_out = 0
        self.other_out = 0
        self.ended = False

    def residual(self) -> int:
        tally = self.tally
        return self.samples_in - self.samples_out - tally.samples_dropped - tally.samples_failed

    def merge(self, total: StageCounts, duration: float, outcome: str, failed_ids: int = 0) -> None:
        """Add this pass to ``total``: ``outcome`` is "completed", "failed" or "disposed"."""
        tally = self.tally
        tally.flush()
        residual = self.residual()
        failed = tally.samples_failed
        unfinished = unaccounted = 0
        if outcome == "completed":
            checked = self.balanced and self.batches_in > 0 and self.other_out == 0
            unaccounted = residual if checked else 0
        elif residual > 0:
            own = min(residual, failed_ids)  # the samples of the batch that failed the stage
            failed += own
            unfinished = residual - own
        with _merge_lock:
            total.batches_in += self.batches_in
            total.batches_out += self.batches_out
            total.samples_in += self.samples_in
            total.samples_out += self.samples_out
            total.batches_dropped += tally.batches_dropped
            total.samples_dropped += tally.samples_dropped
            total.batches_failed += tally.batches_failed + int(failed > tally.samples_failed)
            total.samples_failed += failed
            total.samples_unfinished += unfinished
            total.samples_unaccounted += unaccounted
            total.duration_s += duration
            seen = {s.sample_id for s in total.skipped}
            total.skipped.extend(s for s in tally.skipped if s.sample_id not in seen)


def instrument(name: str, kind: str, operator: Operator) -> Operator:
    """Wrap ``operator`` as the pipeline stage ``name``.

    Each subscription (one pass over the data) publishes ``StageStarted`` and, on
    completion, ``StageCompleted`` with that pass's counts, and adds its counts to the
    run's :class:`StageCounts` when it ends (completed, failed or disposed). While the
    stage subscribes, the pass's :class:`~rxpipe.flow.Tally` is current, so operators
    inside report what they drop or skip. A completed pass of a plugin stage that does
    not account for every sample it took in adds to ``samples_unaccounted`` (see
    :func:`check_accounting`); ``collect`` stages (which add samples) and ``custom``
    stages (any operator) are counted but not checked.

    An error raised by the stage itself (not one passing through from upstream) reaches
    downstream as a :class:`StageError` named ``name``, with the ids of the last batch
    that entered the stage. Pipelines name a repeated plugin ``"process.normalize#2"``;
    its errors are relabelled to that name.
    """

    def instrumented(source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            run = current_run()
            total = run.stage_counts(name, kind)
            with _merge_lock:
                pass_index = total.passes
                total.passes += 1
            started = time.perf_counter()
            counts = _Pass(Tally(name, run), balanced=kind not in _UNBALANCED_KINDS)
            end_lock = threading.Lock()
            upstream_errors: set[int] = set()
            last_input: list[Any] = [None]
            run.publish(StageStarted, stage=name, kind_of_stage=kind, pass_index=pass_index)

            def end(outcome: str, failed_ids: int = 0) -> bool:
                with end_lock:
                    if counts.ended:
                        return False
                    counts.ended = True
                counts.merge(total, time.perf_counter() - started, outcome, failed_ids)
                return True

            def on_next(item: Any) -> None:
                if isinstance(item, Batch):
                    counts.batches_out += 1
                    counts.samples_out += item.size
                else:
                    counts.other_out += 1
                observer.on_next(item)

            def on_error(error: Exception) -> None:
                failed_ids = 0
                if id(error) not in upstream_errors:
                    if isinstance(error, StageError):
                        # Only the stage's own errors take its pipeline name; an error
                        # of an upstream stage seen through a nested subscription (the
                        # trainer reads its data inside its own operator) keeps its name.
                        if error.stage == name.partition("#")[0]:
                            error = error.relabel(name)
                    else:
                        error = as_stage_error(name, error, last_input[0])
                    if isinstance(error, StageError) and error.stage == name:
                        failed_ids = len(error.sample_ids)
                end("failed", failed_ids)
                observer.on_error(error)

            def on_completed() -> None:
                end("completed")
                tally = counts.tally
                run.publish(
                    StageCompleted,
                    stage=name,
                    pass_index=pass_index,
                    batches_in=counts.batches_in,
                    batches_out=counts.batches_out,
                    samples_in=counts.samples_in,
                    samples_out=counts.samples_out,
                    duration_s=time.perf_counter() - started,
                    batches_dropped=tally.batches_dropped,
                    samples_dropped=tally.samples_dropped,
                    batches_failed=tally.batches_failed,
                    samples_failed=tally.samples_failed,
                )
                observer.on_completed()

            def tap(
                inner: abc.ObserverBase[Any], sch: abc.SchedulerBase | None = None
            ) -> abc.DisposableBase:
                def forward(item: Any) -> None:
                    last_input[0] = item
                    if isinstance(item, Batch):
                        counts.batches_in += 1
                        counts.samples_in += item.size
                    inner.on_next(item)

                def forward_error(error: Exception) -> None:
                    upstream_errors.add(id(error))
                    inner.on_error(error)

                with tallying(None):  # the stages before this one report to their own
                    return source.subscribe(
                        forward, forward_error, inner.on_completed, scheduler=sch
                    )

            with tallying(counts.tally):
                subscription = operator(reactivex.create(tap)).subscribe(
                    on_next, on_error, on_completed, scheduler=scheduler
                )

            def on_dispose() -> None:
                end("disposed")

            return CompositeDisposable(subscription, Disposable(on_dispose))

        return reactivex.create(subscribe)

    return instrumented


def check_accounting(counts: Mapping[str, StageCounts]) -> None:
    """Raise :class:`AccountingError` if a stage's completed passes lost or made up samples.

    Example:
        >>> check_accounting({"s": StageCounts("s", samples_in=4, samples_out=4)})
    """
    wrong = [c for c in counts.values() if c.samples_unaccounted]
    if not wrong:
        return
    details = "; ".join(
        f"{c.stage}: {c.samples_in} in, {c.samples_out} out, {c.samples_dropped} dropped, "
        f"{c.samples_failed} failed, {c.samples_unfinished} unfinished "
        f"({c.samples_unaccounted:+d} unaccounted)"
        for c in wrong
    )
    raise AccountingError(
        "expected every sample a stage takes in to come out, be dropped or fail "
        f"(a stage that removes samples counts them with rxpipe.flow.current_tally().drop). "
        f"Received: {details}"
    )
