"""The run context: what stages of one run share (events, run directory, seed, counts).

Operators are built before a run exists, so they look the run up when they are
subscribed, with :func:`current_run`. :meth:`rxpipe.Pipeline.run` sets it; the flow
engine carries it onto the threads it starts. Outside a run, :func:`current_run` returns
a detached context: events go nowhere and there is no run directory.
"""

from __future__ import annotations

import contextvars
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs

from rxpipe.events import Event, EventBus

__all__ = [
    "RunContext",
    "SkippedSample",
    "StageCounts",
    "atomic_write",
    "current_epoch",
    "current_run",
    "in_epoch",
    "not_replaceable",
    "running",
]

E = TypeVar("E", bound=Event)


@attrs.frozen
class SkippedSample:
    """A sample a stage failed to process and skipped (``on_error="skip"``).

    Attributes:
        stage: the stage that skipped it.
        sample_id: the sample's id.
        reason: the error, as ``"ValueError: message"``.
    """

    stage: str
    sample_id: Any
    reason: str


@attrs.define
class StageCounts:
    """Accounting of one stage, summed over all its passes (one pass per subscription).

    Every sample that enters a stage leaves it (``samples_out``), is dropped (a full
    buffer's overflow policy, a dropped remainder), or fails (skipped as a bad record,
    or in the batch that failed the stage). A pass cut short (disposed, or failed
    elsewhere) leaves its in-flight samples ``unfinished``. So, always::

        samples_in == samples_out + samples_dropped + samples_failed + samples_unfinished
                      + samples_unaccounted

    where ``samples_unaccounted`` is what a *completed* pass did not account for: a bug
    in the stage, which fails the run (:class:`~rxpipe.errors.AccountingError`). Sources
    (no batches in) and sinks (non-batch items out) are not checked.

    Attributes:
        duration_s: wall time of the stage's passes (subscription to end).
        busy_s: time spent in the stage's own work: between taking an item and emitting
            its results, not counting the time downstream stages took with them (for a
            source, its pass time minus that). For a stage whose work runs on worker
            threads or processes (``workers``, ``rxpipe.flow.parallel_map``): the time its
            workers spent on items divided by their number, so 100% means all were busy.
        buffer_empty: times the stage's bounded buffers were found empty by the consumer.
        buffer_full: times they were found full by the producer.
        skipped: the samples skipped as bad records (once per sample id).
    """

    stage: str
    kind: str = ""
    passes: int = 0
    batches_in: int = 0
    batches_out: int = 0
    samples_in: int = 0
    samples_out: int = 0
    duration_s: float = 0.0
    batches_dropped: int = 0
    samples_dropped: int = 0
    batches_failed: int = 0
    samples_failed: int = 0
    samples_unfinished: int = 0
    samples_unaccounted: int = 0
    busy_s: float = 0.0
    buffer_empty: int = 0
    buffer_full: int = 0
    skipped: list[SkippedSample] = attrs.Factory(list)

    @property
    def samples_per_s(self) -> float:
        """Samples out per second of the stage's passes (0 before any pass ended)."""
        return self.samples_out / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def batches_per_s(self) -> float:
        """Batches out per second of the stage's passes (0 before any pass ended)."""
        return self.batches_out / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def busy_share(self) -> float:
        """Share of the stage's pass time spent in its own work (not waiting downstream)."""
        return min(1.0, self.busy_s / self.duration_s) if self.duration_s > 0 else 0.0

    @property
    def balanced(self) -> bool:
        """True if every completed pass accounted for every sample it took in."""
        return self.samples_unaccounted == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return attrs.asdict(self)


@attrs.define(eq=False)
class RunContext:
    """State shared by the stages of one run.

    Attributes:
        run_id: unique id of the run.
        pipeline: the pipeline's name.
        run_dir: where the run writes its files; ``None`` for a detached context.
        bus: the run's event bus.
        seed: the run's base random seed; stages derive their own from it.
        counts: per-stage accounting, by stage name.
        metrics: evaluation results, by split (``{"test": {...}}``).
        artifacts: complete artifacts, name → path.
        history: the Keras-style logs of each epoch.
        resume: continue from the run directory's last checkpoint.
    """

    run_id: str
    pipeline: str
    run_dir: Path | None
    bus: EventBus
    seed: int = 0
    counts: dict[str, StageCounts] = attrs.Factory(dict)
    metrics: dict[str, Any] = attrs.Factory(dict)
    artifacts: dict[str, str] = attrs.Factory(dict)
    history: list[dict[str, float]] = attrs.Factory(list)
    resume: bool = False
    _lock: threading.Lock = attrs.field(factory=threading.Lock, alias="_lock")
    _reported_skips: set[tuple[str, Any]] = attrs.field(factory=set, alias="_reported_skips")

    def publish(self, event_type: type[E], **fields: Any) -> E:
        """Publish an event on the run's bus (see :meth:`EventBus.publish`)."""
        return self.bus.publish(event_type, **fields)

    def stage_counts(self, stage: str, kind: str = "") -> StageCounts:
        """The (shared, mutable) counts of ``stage``, created on first use."""
        with self._lock:
            counts = self.counts.get(stage)
            if counts is None:
                counts = self.counts[stage] = StageCounts(stage, kind)
            return counts

    def first_skips(self, stage: str, sample_ids: Sequence[Any]) -> tuple[Any, ...]:
        """The ids of ``sample_ids`` that ``stage`` skips for the first time in this run.

        Every pass over the data (an epoch, a fitting pass) meets a bad record again;
        :class:`~rxpipe.events.SamplesSkipped` reports it once. Outside a run (the
        detached context, shared by everything), every skip is reported.
        """
        if self is _DETACHED:
            return tuple(sample_ids)
        with self._lock:
            fresh = tuple(i for i in sample_ids if (stage, i) not in self._reported_skips)
            self._reported_skips.update((stage, i) for i in fresh)
        return fresh

    def require_run_dir(self, who: str) -> Path:
        """The run directory; a clear error for ``who`` when running detached."""
        if self.run_dir is None:
            raise RuntimeError(
                f"{who}: expected to run inside Pipeline.run() (which provides a run "
                "directory) or to be given an explicit path. Received: no run directory"
            )
        return self.run_dir

    def save_json(self, name: str, data: Mapping[str, Any] | list[Any]) -> Path | None:
        """Write ``data`` as ``run_dir/name`` atomically and record it as an artifact.

        Returns:
            The path written, or ``None`` when the context has no run directory.
        """
        if self.run_dir is None:
            return None
        path = self.run_dir / name
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default))
        self.add_artifact(name, path)
        return path

    def add_artifact(self, name: str, path: Path) -> None:
        """Record a complete artifact and publish :class:`~rxpipe.events.ArtifactSaved`."""
        from rxpipe.events import ArtifactSaved

        self.artifacts[name] = str(path)
        self.publish(ArtifactSaved, name=name, path=str(path))


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        return tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def not_replaceable(path: Path, marker: str | None = None) -> str | None:
    """Why rxpipe must not replace ``path`` with what it writes; ``None`` if it may.

    rxpipe replaces a file, an empty folder, or a folder holding ``marker`` (the file
    that marks a folder rxpipe wrote, e.g. ``model_card.json``). It never deletes a
    folder of anything else, nor a file where it writes a folder.

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "thesis.txt").write_text("mine")
        >>> not_replaceable(folder, "cache.json").split(". Received")[0]
        "expected no folder, an empty folder or one rxpipe wrote (holding 'cache.json')"
    """
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir())
        if not names or (marker is not None and marker in names):
            return None
        shown = ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
        wrote = f" (holding {marker!r})" if marker is not None else ""
        return (
            f"expected no folder, an empty folder or one rxpipe wrote{wrote}. Received: "
            f"{str(path)!r} holds {shown}; rxpipe does not delete what it did not write"
        )
    if marker is not None and path.exists():
        return f"expected a folder. Received: {str(path)!r}, which is a file"
    return None


@contextmanager
def atomic_write(path: Path, *, marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    Works for files and for folders (e.g. a SavedModel). Readers never see a
    half-written artifact: it is either absent or complete.

    Args:
        path: the file or folder to write.
        marker: for a folder, the file that marks one rxpipe wrote; an existing folder
            at ``path`` is replaced only if it is empty or holds it (see
            :func:`not_replaceable`).

    Raises:
        FileExistsError: ``path`` is a folder (or, with ``marker``, a file) that rxpipe
            did not write; checked before and after writing.

    Example:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_write(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    problem = not_replaceable(path, marker)
    if problem is not None:
        raise FileExistsError(problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        problem = not_replaceable(path, marker)  # something may have appeared meanwhile
        if problem is not None:
            raise FileExistsError(problem)
        if path.is_dir():
            _remove(path)
        os.replace(target, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


_DETACHED = RunContext("detached", "detached", None, EventBus("detached"))
_current: contextvars.ContextVar[RunContext] = contextvars.ContextVar("rxpipe_run")


_epoch: contextvars.ContextVar[int] = contextvars.ContextVar("rxpipe_epoch", default=0)


def current_epoch() -> int:
    """The epoch whose data pass is being read (0 outside training).

    Seeded stages (e.g. ``access.shuffle``) derive their randomness from (seed, epoch),
    so every epoch sees a new order and a resumed run sees the same orders again.
    """
    return _epoch.get()


@contextmanager
def in_epoch(epoch: int) -> Iterator[None]:
    """Mark data passes started within the ``with`` block as belonging to ``epoch``."""
    token = _epoch.set(epoch)
    try:
        yield
    finally:
        _epoch.reset(token)


def current_run() -> RunContext:
    """The context of the run being executed, or a detached one outside any run."""
    return _current.get(_DETACHED)


@contextmanager
def running(context: RunContext) -> Iterator[RunContext]:
    """Make ``context`` the current run within the ``with`` block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
