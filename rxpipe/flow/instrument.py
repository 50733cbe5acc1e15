"""Wrap a stage with accounting, stage events, error labelling and a stall watchdog."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import reactivex
from reactivex import abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

from rxpipe.batch import Batch
from rxpipe.context import RunContext, StageCounts, current_run
from rxpipe.errors import AccountingError, ConfigError, StageError
from rxpipe.events import StageCompleted, StageStalled, StageStarted
from rxpipe.flow._tally import Tally, tallying
from rxpipe.flow.buffer import buffer_stats
from rxpipe.flow.transform import as_stage_error
from rxpipe.lineage import Describe, lineage_of

Operator = Callable[[reactivex.Observable[Any]], reactivex.Observable[Any]]

__all__ = [
    "STALL_WARNING_S",
    "LiveStage",
    "StageCounts",
    "check_accounting",
    "instrument",
    "live_stages",
]

STALL_WARNING_S = 30.0
"""Seconds a stage may stay silent after its input ended before :func:`instrument` warns
(:class:`~rxpipe.events.StageStalled`); it warns again each time the silence doubles."""

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
        self.handed_on = 0  # items whose on_next downstream has returned
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


class _StallWatch:
    """Warns while a stage whose input ended neither emits nor ends (one pass of it).

    Armed when the pass's input completes or fails (never per batch): the stage should
    then end soon. A check after ``after_s`` s looks at the pass's counts; if nothing
    moved (no batch in or out, no input being handled, no item being handed downstream)
    it publishes :class:`~rxpipe.events.StageStalled`, and checks again when the silence
    has doubled. Any activity starts the silence over. :meth:`stop` (the pass ended)
    cancels the pending check; a check never reschedules after it.
    """

    def __init__(
        self,
        run: RunContext,
        stage: str,
        pass_index: int,
        counts: _Pass,
        after_s: float,
        scheduler: abc.SchedulerBase,
    ) -> None:
        self._run, self._stage, self._pass_index = run, stage, pass_index
        self._counts, self._after_s, self._scheduler = counts, after_s, scheduler
        self._lock = threading.Lock()
        self._timer = SerialDisposable()  # disposed: any later timer is cancelled at once
        self._generation = 0  # the latest arming; an older check does nothing
        self._input_end = "completed"
        self._ended_at = self._quiet_since = scheduler.now
        self._seen: tuple[int, int] = (0, 0)
        self._warn_at = after_s

    def _activity(self) -> tuple[int, int]:
        counts = self._counts
        return counts.batches_in, counts.batches_out + counts.other_out

    def _busy(self) -> bool:
        """Handling an input item, or waiting for downstream to take an item it emitted."""
        counts = self._counts
        return bool(counts.inside) or counts.handed_on < counts.batches_out + counts.other_out

    def input_ended(self, how: str) -> None:
        """(Re)arm: the stage's input just completed (``how="completed"``) or failed."""
        with self._lock:
            self._generation += 1
            self._input_end = how
            self._ended_at = self._quiet_since = self._scheduler.now
            self._seen = self._activity()
            self._warn_at = self._after_s
            self._timer.disposable = self._scheduler.schedule_relative(
                self._after_s, self._check, self._generation
            )

    def stop(self) -> None:
        """The pass ended: no more checks."""
        self._timer.dispose()

    def _check(self, scheduler: abc.SchedulerBase, generation: int | None) -> None:
        warning: dict[str, Any] | None = None
        with self._lock:
            if generation != self._generation or self._counts.ended or self._timer.is_disposed:
                return
            now = scheduler.now
            seen = self._activity()
            if seen != self._seen or self._busy():
                self._seen, self._quiet_since, self._warn_at = seen, now, self._after_s
                delay = self._after_s
            else:
                quiet = (now - self._quiet_since).total_seconds()
                if quiet >= self._warn_at * 0.999:  # timers may fire a hair early
                    warning = {
                        "stage": self._stage,
                        "pass_index": self._pass_index,
                        "input_end": self._input_end,
                        "input_ended_s": (now - self._ended_at).total_seconds(),
                        "silent_s": quiet,
                        "batches_in": seen[0],
                        "batches_out": self._counts.batches_out,
                    }
                    self._warn_at *= 2
                delay = max(self._warn_at - quiet, 0.0)
            self._timer.disposable = scheduler.schedule_relative(delay, self._check, generation)
        if warning is not None:
            self._run.publish(StageStalled, **warning)


def instrument(
    name: str,
    kind: str,
    operator: Operator,
    lineage: Describe | None = None,
    *,
    stall_warning_s: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
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

    A stage must end after its input does. When a pass's input has completed (or failed)
    and the stage stays silent (no output, no end) for ``stall_warning_s`` seconds, a
    watchdog publishes :class:`~rxpipe.events.StageStalled` naming it (the log and the
    progress bar show it as a warning), and again each time the silence doubles (30 s,
    60 s, 120 s, ... by default). The run is not failed: a stage may still be working
    after its input ended. The watchdog costs nothing per batch: its timer starts only
    when a pass's input ends while the stage has not ended yet, and is cancelled when the
    pass ends (completed, failed or disposed), so it outlives no run.

    Args:
        name: the stage's name in events, counts and errors.
        kind: its plugin kind (``"process"``, ``"custom"``, ...).
        operator: the stage itself.
        lineage: what its input is made of.
        stall_warning_s: seconds of silence after the input ended before the first
            warning; ``None``: :data:`STALL_WARNING_S` (30 s); ``0``: never warn.
        scheduler: where the watchdog's timers run (default: reactivex's
            ``TimeoutScheduler``, daemon timer threads; tests pass a ``TestScheduler``).

    Returns:
        The instrumented operator.

    Raises:
        ConfigError: if ``stall_warning_s`` is not a number of seconds >= 0 or ``None``.

    Example:
        >>> from rxpipe.testing import EventRecorder, collect
        >>> from rxpipe.context import RunContext, running
        >>> from rxpipe.events import EventBus
        >>> run = RunContext("r", "demo", None, EventBus("r"))
        >>> recorder = EventRecorder()
        >>> _ = run.bus.events.subscribe(recorder)
        >>> with running(run):
        ...     collect(reactivex.of(1, 2).pipe(instrument("custom.same", "custom", lambda s: s)))
        [1, 2]
        >>> recorder.kinds()
        ['stage_started', 'stage_completed']
    """
    after_s = STALL_WARNING_S if stall_warning_s is None else stall_warning_s
    if isinstance(after_s, bool) or not isinstance(after_s, int | float) or not after_s >= 0:
        raise ConfigError(
            f"stall_warning_s: expected a number of seconds >= 0 or None. Received: "
            f"{stall_warning_s!r}"
        )
    timers = scheduler  # (each subscription has a ``scheduler`` of its own)

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
            watches: list[_StallWatch] = []  # made when the input first ends, if ever
            run.publish(StageStarted, stage=name, kind_of_stage=kind, pass_index=pass_index)

            def input_ended(how: str) -> None:
                """After the stage handled its input's end: watch it unless it ended."""
                if not after_s:
                    return
                with end_lock:
                    if counts.ended:
                        return
                    if not watches:
                        clock = timers or TimeoutScheduler.singleton()
                        watches.append(_StallWatch(run, name, pass_index, counts, after_s, clock))
                watches[0].input_ended(how)

            def end(outcome: str, failed_ids: int = 0) -> bool:
                with end_lock:
                    if counts.ended:
                        return False
                    counts.ended = True
                    if watches:
                        watches[0].stop()
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
                counts.handed_on += 1
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
                    input_ended("completed")

                def forward_error(error: Exception) -> None:
                    upstream_errors.add(id(error))
                    inner.on_error(error)
                    input_ended("failed")

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
