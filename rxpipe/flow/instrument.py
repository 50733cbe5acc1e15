"""Wrap a stage with accounting, stage events and error labelling."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import reactivex
from reactivex import abc
from reactivex.disposable import CompositeDisposable, Disposable

from rxpipe.batch import Batch
from rxpipe.context import RunContext, StageCounts, current_run
from rxpipe.errors import AccountingError, StageError
from rxpipe.events import StageCompleted, StageStarted
from rxpipe.flow._tally import Tally, tallying
from rxpipe.flow.buffer import buffer_stats
from rxpipe.flow.transform import as_stage_error
from rxpipe.lineage import Describe, lineage_of

Operator = Callable[[reactivex.Observable[Any]], reactivex.Observable[Any]]

__all__ = ["LiveStage", "StageCounts", "check_accounting", "instrument", "live_stages"]

_merge_lock = threading.Lock()
_perf = time.perf_counter
_ident = threading.get_ident

# The passes of each run that have not ended yet, by stage (for live throughput).
_LIVE: weakref.WeakKeyDictionary[RunContext, dict[str, list[_Pass]]] = weakref.WeakKeyDictionary()

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
        self.started = _perf()
        self.began: float | None = None  # when its first input, or its input's end, came
        self.inside = 0  # the thread id while the stage handles an input item, else 0
        self.own_s = 0.0  # time handling input items (and their completion)
        self.nested_s = 0.0  # ... of which downstream stages took this long
        self.outside_s = 0.0  # time downstream took with items emitted on their own

    def busy(self, now: float | None = None) -> float:
        """Time spent in the stage's own work so far (see StageCounts.busy_s)."""
        stats = buffer_stats(self.tally)
        blocked = 0.0 if stats is None else stats.blocked_s  # a full buffer's producer waits
        own = self.own_s - self.nested_s - blocked
        if self.tally.workers:  # its work runs on worker threads or processes: their
            # time, not the waits for a free worker (which a slow downstream also causes)
            own = self.tally.work_s / self.tally.workers
        if not self.batches_in and self.began is not None:
            # A source (or a stage taking no batches, like a trainer): busy from when its
            # input began or ended, minus downstream's time. Before that it only waits.
            elapsed = (now if now is not None else _perf()) - self.began
            own = max(own, elapsed - self.outside_s - self.nested_s - blocked)
        return max(0.0, own)

    def residual(self) -> int:
        tally = self.tally
        return self.samples_in - self.samples_out - tally.samples_dropped - tally.samples_failed

    def merge(self, total: StageCounts, duration: float, outcome: str, failed_ids: int = 0) -> None:
        """Add this pass to ``total``: ``outcome`` is "completed", "failed" or "disposed"."""
        tally = self.tally
        tally.flush()
        busy = min(self.busy(self.started + duration), duration)
        stats = buffer_stats(tally)
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
            total.busy_s += busy
            if stats is not None:
                total.buffer_empty += stats.empty
                total.buffer_full += stats.full
            seen = {s.sample_id for s in total.skipped}
            total.skipped.extend(s for s in tally.skipped if s.sample_id not in seen)


def instrument(
    name: str, kind: str, operator: Operator, lineage: Describe | None = None
) -> Operator:
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

    While the stage subscribes, ``lineage`` (what its input is made of, see
    :mod:`rxpipe.lineage`) is current too.
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
            with _merge_lock:
                _LIVE.setdefault(run, {}).setdefault(name, []).append(counts)
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
                with _merge_lock:
                    live = _LIVE.get(run, {}).get(name, [])
                    if counts in live:
                        live.remove(counts)
                return True

            def on_next(item: Any) -> None:
                if isinstance(item, Batch):
                    counts.batches_out += 1
                    counts.samples_out += item.size
                else:
                    counts.other_out += 1
                before = _perf()
                observer.on_next(item)  # if it raises, the pass ends: no timing to keep
                if counts.inside == _ident():
                    counts.nested_s += _perf() - before
                else:
                    counts.outside_s += _perf() - before

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
                duration = time.perf_counter() - started
                end("completed")
                tally = counts.tally
                stats = buffer_stats(tally)
                run.publish(
                    StageCompleted,
                    stage=name,
                    pass_index=pass_index,
                    batches_in=counts.batches_in,
                    batches_out=counts.batches_out,
                    samples_in=counts.samples_in,
                    samples_out=counts.samples_out,
                    duration_s=duration,
                    batches_dropped=tally.batches_dropped,
                    samples_dropped=tally.samples_dropped,
                    batches_failed=tally.batches_failed,
                    samples_failed=tally.samples_failed,
                    busy_s=min(counts.busy(started + duration), duration),
                    batches_per_s=counts.batches_out / duration if duration > 0 else 0.0,
                    samples_per_s=counts.samples_out / duration if duration > 0 else 0.0,
                    buffer_empty=0 if stats is None else stats.empty,
                    buffer_full=0 if stats is None else stats.full,
                )
                observer.on_completed()

            def tap(
                inner: abc.ObserverBase[Any], sch: abc.SchedulerBase | None = None
            ) -> abc.DisposableBase:
                def forward(item: Any) -> None:
                    last_input[0] = item
                    if counts.began is None:
                        counts.began = _perf()
                    if isinstance(item, Batch):
                        counts.batches_in += 1
                        counts.samples_in += item.size
                    before = _perf()
                    counts.inside = _ident()
                    try:
                        inner.on_next(item)
                    finally:
                        counts.inside = 0
                        counts.own_s += _perf() - before

                def forward_completed() -> None:
                    before = _perf()
                    if counts.began is None:
                        counts.began = before
                    counts.inside = _ident()
                    try:
                        inner.on_completed()
                    finally:
                        counts.inside = 0
                        counts.own_s += _perf() - before

                def forward_error(error: Exception) -> None:
                    upstream_errors.add(id(error))
                    inner.on_error(error)

                with tallying(None), lineage_of(None):  # the stages before have their own
                    return source.subscribe(
                        forward, forward_error, forward_completed, scheduler=sch
                    )

            with tallying(counts.tally), lineage_of(lineage):
                subscription = operator(reactivex.create(tap)).subscribe(
                    on_next, on_error, on_completed, scheduler=scheduler
                )

            def on_dispose() -> None:
                end("disposed")

            return CompositeDisposable(subscription, Disposable(on_dispose))

        return reactivex.create(subscribe)

    return instrumented


class LiveStage:
    """A stage's counts so far in a running run: ended passes plus the ones under way."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.batches_out = 0
        self.samples_out = 0
        self.busy_s = 0.0
        self.buffer_fill: float | None = None
        self.active = False


def live_stages(run: RunContext) -> dict[str, LiveStage]:
    """The counts of each stage of ``run`` that has started, including passes under way.

    Used by the throughput snapshots; consistent with the run's :class:`StageCounts`
    (a pass is counted either live or merged, never both).
    """
    now = _perf()
    result: dict[str, LiveStage] = {}
    with _merge_lock:
        live = _LIVE.get(run, {})
        for name, total in list(run.counts.items()):
            stage = result[name] = LiveStage(name)
            stage.batches_out, stage.samples_out = total.batches_out, total.samples_out
            stage.busy_s = total.busy_s
            fills = []
            for p in live.get(name, []):
                stage.active = True
                stage.batches_out += p.batches_out
                stage.samples_out += p.samples_out
                stage.busy_s += p.busy(now)
                stats = buffer_stats(p.tally)
                fill = None if stats is None else stats.fill()
                if fill is not None:
                    fills.append(fill)
            stage.buffer_fill = sum(fills) / len(fills) if fills else None
    return result


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
