"""Typed progress events and the hot observable they are published on.

Every event is a frozen attrs object carrying the run id, a sequence number (strictly
increasing within a run) and a wall-clock timestamp. The progress bar, the log lines,
``events.jsonl`` and TensorBoard are all plain subscribers of :attr:`EventBus.events`.

Example:
    >>> bus = EventBus("run-1")
    >>> seen = []
    >>> _ = bus.events.subscribe(seen.append)
    >>> bus.publish(RunStarted, pipeline="demo", run_dir="runs/demo/x").seq
    0
    >>> type(seen[0]).__name__
    'RunStarted'
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import attrs
import reactivex
from reactivex.subject import Subject

__all__ = [
    "ArtifactSaved",
    "BatchesDropped",
    "CacheRebuilt",
    "EpochEnded",
    "EvaluationCompleted",
    "Event",
    "EventBus",
    "EventSubject",
    "RunCompleted",
    "RunFailed",
    "RunStarted",
    "SamplesSkipped",
    "StageCompleted",
    "StageRate",
    "StageStalled",
    "StageStarted",
    "SubscriberError",
    "ThroughputSnapshot",
    "TrainProgress",
]

E = TypeVar("E", bound="Event")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@attrs.frozen(kw_only=True)
class Event:
    """Base of all events.

    Attributes:
        run_id: the run that published the event.
        seq: position in the run's event sequence, from 0 (a resumed run goes on from the
            last ``seq`` in its events.jsonl).
        time: seconds since the epoch (``time.time()``) when it was published.
    """

    kind: ClassVar[str] = "event"

    run_id: str
    seq: int
    time: float

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = _snake(cls.__name__)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with an ``event`` key naming the event type."""
        return {"event": self.kind, **attrs.asdict(self, recurse=True)}


@attrs.frozen(kw_only=True)
class RunStarted(Event):
    """A pipeline run began."""

    pipeline: str
    run_dir: str


@attrs.frozen(kw_only=True)
class RunCompleted(Event):
    """A pipeline run finished successfully."""

    duration_s: float
    metrics: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RunFailed(Event):
    """A pipeline run stopped with an error."""

    error_type: str
    message: str
    stage: str | None = None
    sample_ids: tuple[Any, ...] = ()


@attrs.frozen(kw_only=True)
class StageStarted(Event):
    """A stage was subscribed to (once per pass over the data, e.g. once per epoch)."""

    stage: str
    kind_of_stage: str
    pass_index: int


@attrs.frozen(kw_only=True)
class StageCompleted(Event):
    """A stage finished one pass over the data, with its counts for that pass.

    ``busy_s`` is the time spent in the stage's own work (see
    :class:`~rxpipe.context.StageCounts`); ``buffer_empty``/``buffer_full`` how often its
    bounded buffers were found empty or full.
    """

    stage: str
    pass_index: int
    batches_in: int
    batches_out: int
    samples_in: int
    samples_out: int
    duration_s: float
    batches_dropped: int = 0
    samples_dropped: int = 0
    batches_failed: int = 0
    samples_failed: int = 0
    busy_s: float = 0.0
    batches_per_s: float = 0.0
    samples_per_s: float = 0.0
    buffer_empty: int = 0
    buffer_full: int = 0


def _seconds(value: float) -> str:
    """Seconds for people: ``30``, ``1,920``; under 10 with a tenth (``0.2``, ``2.5``)."""
    if value >= 10:
        return f"{value:,.0f}"
    return f"{value:.1f}".removesuffix(".0")


@attrs.frozen(kw_only=True)
class StageStalled(Event):
    """A stage's input ended, and since then the stage has neither emitted nor ended.

    Published by the run's watchdog (see :func:`rxpipe.flow.instrument`) when a stage
    stays silent for ``stall_warning_s`` (30 s by default) after its input completed or
    failed, then again each time the silence doubles (60 s, 120 s, ...). The run goes on
    waiting: a stage may still be working (a flush on a thread of its own), but a stage
    that never passes on its input's ``on_completed`` (or ``on_error``) hangs the run.
    Ctrl-C stops it.

    Attributes:
        stage: the silent stage.
        pass_index: its pass over the data (as in :class:`StageStarted`).
        input_end: how its input ended: ``"completed"`` or ``"failed"``.
        input_ended_s: seconds since its input ended.
        silent_s: seconds without output since then (at least this long).
        batches_in: batches it took in during this pass.
        batches_out: batches it emitted during this pass.
    """

    stage: str
    pass_index: int
    input_end: str
    input_ended_s: float
    silent_s: float
    batches_in: int = 0
    batches_out: int = 0

    def summary(self) -> str:
        """What happened and what to check, as ``"<stage>: expected X. Received: Y"``.

        Example:
            >>> stalled = StageStalled(
            ...     run_id="r", seq=9, time=0.0, stage="custom.f", pass_index=0,
            ...     input_end="completed", input_ended_s=30.0, silent_s=30.0, batches_in=3,
            ... )
            >>> print(stalled.summary())
            custom.f: expected on_completed after its input completed (a stage must call
            on_completed after its input completes). Received: neither output nor
            on_completed for 30 s since its input completed (3 batches in, 0 out); the run
            waits for it (Ctrl-C stops it)
        """
        if self.input_end == "failed":
            expected = (
                "the input's error passed on with on_error (a stage must call on_error "
                "after its input fails)"
            )
            signal = "on_error"
        else:
            expected = (
                "on_completed after its input completed (a stage must call on_completed "
                "after its input completes)"
            )
            signal = "on_completed"
        quiet = f"{_seconds(self.silent_s)} s since its input {self.input_end}"
        if _seconds(self.silent_s) != _seconds(self.input_ended_s):
            quiet = (
                f"{_seconds(self.silent_s)} s (its input {self.input_end} "
                f"{_seconds(self.input_ended_s)} s ago)"
            )
        return (
            f"{self.stage}: expected {expected}. Received: neither output nor {signal} for "
            f"{quiet} ({self.batches_in} batches in, {self.batches_out} out); the run waits "
            "for it (Ctrl-C stops it)"
        )


@attrs.frozen
class StageRate:
    """One stage's throughput in a :class:`ThroughputSnapshot`.

    Attributes:
        stage: the stage's name.
        batches: batches it emitted so far in the run.
        samples: samples it emitted so far in the run.
        batches_per_s: batches emitted per second since the previous snapshot.
        samples_per_s: samples emitted per second since the previous snapshot.
        busy_share: share of that interval spent in its own work.
        buffer_fill: share of its bounded buffers' capacity held now (``None``: none).
    """

    stage: str
    batches: int
    samples: int
    batches_per_s: float
    samples_per_s: float
    busy_share: float
    buffer_fill: float | None = None


@attrs.frozen(kw_only=True)
class ThroughputSnapshot(Event):
    """Published every few seconds while a pipeline runs: each active stage's throughput.

    Attributes:
        elapsed_s: seconds since the run started.
        interval_s: seconds since the previous snapshot.
        stages: one :class:`StageRate` per stage that has started, in pipeline order.
    """

    elapsed_s: float
    interval_s: float
    stages: tuple[StageRate, ...] = ()

    def summary(self) -> str:
        """One line: ``stage 1,234/s (busy 71%, buffer 50%) · ...``."""
        parts = []
        for rate in self.stages:
            text = f"{rate.stage} {rate.samples_per_s:,.0f}/s (busy {rate.busy_share:.0%}"
            if rate.buffer_fill is not None:
                text += f", buffer {rate.buffer_fill:.0%}"
            parts.append(text + ")")
        return " · ".join(parts)


@attrs.frozen(kw_only=True)
class BatchesDropped(Event):
    """A stage dropped batches (a full buffer's overflow policy, a dropped remainder).

    Drops are coalesced: published for the first drop of a pass, then at most about
    once a second while drops go on, and once more when the pass ends.

    Attributes:
        stage: the stage that dropped them.
        reason: why, e.g. ``"overflow: drop_oldest"``.
        batches: batches dropped since the previous event of this pass.
        samples: samples in those batches.
        total_batches: batches dropped in this pass so far.
        total_samples: samples dropped in this pass so far.
    """

    stage: str
    reason: str
    batches: int
    samples: int
    total_batches: int
    total_samples: int


@attrs.frozen(kw_only=True)
class SamplesSkipped(Event):
    """A stage with ``on_error="skip"`` skipped samples it failed to process.

    Attributes:
        stage: the stage that skipped them.
        sample_ids: the skipped samples' ids.
        reason: the error, as ``"ValueError: message"``.
        total: samples skipped in this pass so far.
        max_skipped: the limit after which the stage fails (``None``: no limit).
    """

    stage: str
    sample_ids: tuple[Any, ...]
    reason: str
    total: int
    max_skipped: int | None = None


@attrs.frozen(kw_only=True)
class TrainProgress(Event):
    """Training progress within an epoch (published at most a few times per second).

    ``step`` counts the epoch's steps, ``steps`` is the epoch's length when known, and
    ``global_step`` counts every step of the run (a resumed run goes on from its
    checkpoint's).
    """

    epoch: int
    epochs: int
    step: int
    steps: int | None
    samples: int
    loss: float
    global_step: int = 0


@attrs.frozen(kw_only=True)
class EpochEnded(Event):
    """An epoch finished; ``logs`` uses Keras's keys (``loss``, ``val_loss``, metric names).

    ``samples_per_s`` is the training throughput of the epoch's training pass;
    ``data_wait_share`` the share of that pass the trainer spent waiting for the next batch
    (0: the device never waited for data); ``steps`` and ``samples`` what it trained on;
    ``traces`` how many times the train and test steps were traced so far in the run (1
    each: an epoch's last, smaller batch runs on the same trace; a number that grows
    epoch after epoch is a retrace storm).
    """

    epoch: int
    epochs: int
    logs: Mapping[str, float]
    duration_s: float
    samples_per_s: float
    data_wait_share: float = 0.0
    steps: int = 0
    samples: int = 0
    traces: Mapping[str, int] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class EvaluationCompleted(Event):
    """An evaluation finished on ``split``; ``metrics`` are JSON-ready."""

    split: str
    metrics: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class ArtifactSaved(Event):
    """A complete artifact (model, metrics file, ...) is in place at ``path``."""

    name: str
    path: str


@attrs.frozen(kw_only=True)
class CacheRebuilt(Event):
    """A folder cache no longer matched what its stage receives and is being rebuilt.

    Attributes:
        stage: the cache stage.
        path: the cache folder.
        reason: what changed upstream, e.g. ``"process.normalize.scale: 0.5 → 0.25"``.
    """

    stage: str
    path: str
    reason: str


@attrs.frozen
class SubscriberError:
    """An exception a subscriber raised while handling an event.

    Attributes:
        subscriber: the subscriber's name (its function's or class's qualified name).
        event: the kind of event it was handling, e.g. ``"epoch_ended"``.
        error: what it raised.
    """

    subscriber: str
    event: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.subscriber} on {self.event}: {type(self.error).__name__}: {self.error}"


def _subscriber_name(observer: Any) -> str:
    target = getattr(observer, "_on_next", observer)  # subscribe() wraps a function
    target = getattr(target, "__self__", target)  # a bound method: its object's class
    named = target if callable(target) and hasattr(target, "__qualname__") else type(target)
    return str(getattr(named, "__qualname__", repr(named)))


class EventSubject(Subject[Event]):
    """A subject that calls its observers one by one: one that raises misses nothing else.

    RxPY's :class:`~reactivex.subject.Subject` stops delivering an item at the first
    observer that raises, so a broken subscriber would cut off every one after it (the
    run's events.jsonl among them). Here each observer's error is recorded in
    :attr:`errors` and the others still get the event, as does the broken one next time.

    Example:
        >>> subject = EventSubject()
        >>> seen = []
        >>> _ = subject.subscribe(lambda e: 1 / 0)
        >>> _ = subject.subscribe(seen.append)
        >>> subject.on_next(RunStarted(run_id="r", seq=0, time=0.0, pipeline="p", run_dir="d"))
        >>> len(seen), str(subject.errors[0])
        (1, '<lambda> on run_started: ZeroDivisionError: division by zero')
    """

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[SubscriberError] = []

    def _on_next_core(self, value: Event) -> None:
        with self.lock:
            observers = self.observers.copy()
        for observer in observers:
            try:
                observer.on_next(value)
            except Exception as error:  # a broken subscriber must not break the run
                self.errors.append(SubscriberError(_subscriber_name(observer), value.kind, error))


class EventBus:
    """Publishes a run's events, in order, on a hot observable.

    ``publish`` is thread-safe: stages on different threads may publish concurrently;
    subscribers see events one at a time, in ``seq`` order. A subscriber that raises
    does not stop the run, nor keep the event from the other subscribers: the error is
    kept in :attr:`subscriber_errors`. Subscribers are called on the publishing thread
    (the trainer's, a stage's): one that takes long slows the run, so hand slow work
    (uploads, plots) to a thread or queue of its own.
    :class:`RunCompleted` or :class:`RunFailed` is always the last event: what threads
    still winding down publish after it (e.g. a stage's pass ending as the run is
    cancelled) is not delivered.

    Args:
        run_id: the id stamped on every event.
        first_seq: the ``seq`` of the first event (a resumed run continues its sequence).

    Example:
        >>> EventBus("r", first_seq=7).publish(RunStarted, pipeline="p", run_dir="d").seq
        7
    """

    def __init__(self, run_id: str, first_seq: int = 0) -> None:
        self.run_id = run_id
        self._subject = EventSubject()
        self._lock = threading.Lock()
        self._seq = first_seq
        self._ended = False

    @property
    def subscriber_errors(self) -> list[SubscriberError]:
        """What subscribers raised while handling events, in order."""
        return self._subject.errors

    @property
    def events(self) -> reactivex.Observable[Event]:
        """The hot observable of events; subscribe before the run starts to see them all."""
        return self._subject

    def publish(self, event_type: type[E], **fields: Any) -> E:
        """Create an event of ``event_type`` with the next sequence number and publish it.

        Returns:
            The published event (not delivered if the run has already ended).
        """
        with self._lock:
            event = event_type(run_id=self.run_id, seq=self._seq, time=time.time(), **fields)
            if self._ended:
                return event
            self._ended = event_type in (RunCompleted, RunFailed)
            self._seq += 1
            self._subject.on_next(event)
        return event

    def close(self) -> None:
        """Complete the observable: subscribers see ``on_completed``."""
        with self._lock:
            self._subject.on_completed()
