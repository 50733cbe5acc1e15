"""Helpers for testing pipelines and plugins: fake sources, capturing sinks, event recorders.

rxpipe's own tests use these; so can yours.

Example:
    >>> import numpy as np
    >>> from rxpipe.operators import access
    >>> source = from_arrays(np.zeros((10, 2), "float32"), np.arange(10) % 2, batch_size=4)
    >>> [b.size for b in collect(source.pipe(access.batch(5)))]
    [5, 5]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import attrs
import numpy as np
import reactivex
from reactivex import operators as ops

from rxpipe.batch import Batch, DatasetMetadata, FeatureSpec, Split, inferred_label_names
from rxpipe.errors import describe_value
from rxpipe.events import Event
from rxpipe.flow import generate, map_batches
from rxpipe.stage import Operator, Stage

__all__ = [
    "EventRecorder",
    "check_contract",
    "collect",
    "fail_on",
    "from_arrays",
    "make_metadata",
    "wait_for",
]

T = TypeVar("T")


def make_metadata(
    features: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any] | None = None,
    name: str = "arrays",
) -> DatasetMetadata:
    """Metadata describing ``features`` (and ``labels``, if given, as ``collect.numpy``
    reads them: integer or one-hot labels are classes, other float labels are targets)."""
    label_names = None
    if labels is not None:
        label_names = inferred_label_names(labels.dtype, labels.shape, lambda: [labels])
    return DatasetMetadata(name, FeatureSpec(features.shape[1:], features.dtype.name), label_names)


def from_arrays(
    features: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any] | None = None,
    *,
    batch_size: int = 32,
    split: Split | str = Split.UNSPLIT,
    metadata: DatasetMetadata | None = None,
) -> reactivex.Observable[Batch]:
    """A cold source of batches cut from in-memory arrays (sample ids 0..n-1)."""
    meta = metadata or make_metadata(features, labels)
    ids = np.arange(len(features))

    def batches() -> Iterator[Batch]:
        for start in range(0, len(features), batch_size):
            part = slice(start, start + batch_size)
            yield Batch(
                features[part], None if labels is None else labels[part], ids[part], meta, split
            )

    return generate(batches)


def collect(source: reactivex.Observable[T], timeout: float = 60.0) -> list[T]:
    """Subscribe, wait for completion, and return every item; re-raise an error.

    Raises:
        TimeoutError: if the source neither completes nor fails within ``timeout`` s
            (saying how many items arrived).
    """
    items: list[T] = []
    errors: list[Exception] = []
    done = threading.Event()

    def on_error(error: Exception) -> None:
        errors.append(error)
        done.set()

    subscription = source.subscribe(items.append, on_error, done.set)
    try:
        if not done.wait(timeout):
            raise TimeoutError(
                f"collect: expected on_completed or on_error within {timeout} s. Received: "
                f"{len(items)} item(s) and neither (does a stage drop on_completed?)"
            )
    finally:
        subscription.dispose()
    if errors:
        raise errors[0]
    return items


def fail_on(sample_id: int, message: str = "boom") -> Stage[Batch, Batch]:
    """A stage that raises ``ValueError(message)`` on the batch holding ``sample_id``."""

    def check(batch: Batch) -> Batch:
        if sample_id in batch.ids:
            raise ValueError(message)
        return batch

    return Stage("custom.fail_on", map_batches("custom.fail_on", check))


@attrs.define
class EventRecorder:
    """Records events; use as a subscriber (``pipeline.events.subscribe(recorder)``)."""

    events: list[Event] = attrs.Factory(list)

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        """The recorded events' kinds, in order (``["run_started", ...]``)."""
        return [e.kind for e in self.events]

    def of_type(self, event_type: type[Any]) -> list[Any]:
        """The recorded events of ``event_type``."""
        return [e for e in self.events if isinstance(e, event_type)]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` s pass; return its last value."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def check_contract(
    make: Callable[[], Operator[Batch, Batch]],
    features: np.ndarray[Any, Any] | None = None,
    labels: np.ndarray[Any, Any] | None = None,
    *,
    batch_size: int = 4,
    split: Split | str = Split.TRAIN,
    ordered: bool = True,
    streaming: bool = True,
    timeout: float = 10.0,
) -> None:
    """Check a batch→batch plugin against the contract rxpipe's own plugins pass.

    The stage, built afresh by ``make()`` for each check, must: complete once its input
    has completed (within ``timeout`` s of it), emitting only
    :class:`~rxpipe.batch.Batch` items; keep the samples' order within a split (unless
    ``ordered`` is false); pass an upstream error on as the very same object; dispose its
    upstream once its subscriber has what it wants (and, if ``streaming``, read no more of
    it than it needs); and leave no thread running. The input is ``features`` (and
    ``labels``) in batches of ``batch_size``, repeated as needed; by default 4 float32
    columns and 3 classes.

    Args:
        make: builds the stage, e.g. ``lambda: clip(0.0, 1.0)``.
        features: sample features (one row per sample) of the kind the stage takes.
        labels: the samples' labels.
        batch_size: samples per input batch.
        split: the input's split (fitted stages learn from ``train``).
        ordered: whether the stage promises to keep the samples' order.
        streaming: whether the stage passes batches on as they come; false for stages
            that read ahead or fit first (a shuffle buffer, ``fitted`` processors).
        timeout: seconds each check may wait (for the input to be read to the end, then
            again for the stage to complete after it).

    Raises:
        AssertionError: naming the stage and the rule it breaks, in the form
            ``"<stage>: expected X. Received: Y"``.

    Example:
        >>> from reactivex import operators as ops
        >>> check_contract(lambda: map_batches("custom.same", lambda b: b))
        >>> check_contract(lambda: Stage("custom.features", ops.map(lambda b: b.features)))
        Traceback (most recent call last):
        ...
        AssertionError: custom.features: expected Batch items. Received: array([[ 0., 1., ...
    """
    if features is None:
        features = np.arange(48, dtype="float32").reshape(12, 4)
        labels = np.arange(12) % 3 if labels is None else labels
    name = _stage_name(make())
    meta = make_metadata(features, labels)

    def source(batches: int, produced: list[int], closed: threading.Event) -> Any:
        def items() -> Iterator[Batch]:
            try:
                for index in range(batches):
                    rows = np.arange(index * batch_size, (index + 1) * batch_size) % len(features)
                    ids = np.arange(index * batch_size, (index + 1) * batch_size)
                    produced.append(index)
                    picked = None if labels is None else labels[rows]
                    yield Batch(features[rows], picked, ids, meta, split)
            finally:
                closed.set()

        return generate(items)

    before = set(threading.enumerate())
    data = source(max(3, -(-len(features) // batch_size)), [], threading.Event())
    out = _completed_after_input(name, data, make(), timeout)
    strays = [item for item in out if not isinstance(item, Batch)]
    if strays:
        raise AssertionError(f"{name}: expected Batch items. Received: {describe_value(strays[0])}")
    if ordered:
        by_split: dict[str, list[int]] = {}
        for batch in out:
            by_split.setdefault(str(batch.split), []).extend(int(i) for i in batch.ids)
        for which, ids in by_split.items():
            if ids != sorted(ids):
                raise AssertionError(
                    f"{name}: expected the samples of split {which!r} in input order. "
                    f"Received: ids {ids[:12]}"
                )

    upstream = RuntimeError(f"upstream failure before {name}")
    failing = reactivex.concat(source(2, [], threading.Event()), reactivex.throw(upstream))
    try:
        collect(failing.pipe(make()), timeout)
    except Exception as received:
        if received is not upstream:
            raise AssertionError(
                f"{name}: expected the upstream error passed on unchanged. Received: "
                f"{type(received).__name__}: {received}"
            ) from received
    else:
        raise AssertionError(
            f"{name}: expected the upstream error passed on unchanged. Received: completion"
        )

    produced: list[int] = []
    closed = threading.Event()
    try:
        taken = collect(source(200, produced, closed).pipe(make(), ops.take(1)), timeout)
    except TimeoutError as error:
        raise AssertionError(f"{name}: expected take(1) to complete. {error}") from None
    if not taken:
        return  # the stage emitted nothing for the first batches: nothing more to check
    if not closed.wait(timeout):
        raise AssertionError(
            f"{name}: expected its upstream disposed once the subscriber left. Received: "
            f"the source still running {timeout} s later ({len(produced)} batches read)"
        )
    if streaming and len(produced) >= 200:
        raise AssertionError(
            f"{name}: expected to read only what its subscriber takes (streaming=True). "
            "Received: the whole source (200 batches) read for take(1)"
        )
    if not wait_for(lambda: not (set(threading.enumerate()) - before), timeout):
        left = sorted(t.name for t in set(threading.enumerate()) - before)
        raise AssertionError(f"{name}: expected no thread left running. Received: {left}")


def _completed_after_input(
    name: str, data: reactivex.Observable[Batch], stage: Operator[Batch, Batch], timeout: float
) -> list[Any]:
    """What ``stage`` emits for ``data``; it must complete within ``timeout`` s of its input.

    Raises:
        AssertionError: if its input is not read to the end within ``timeout`` s, or the
            stage does not complete within ``timeout`` s after its input completed.
        Exception: the stage's own error.
    """
    input_completed = threading.Event()
    done = threading.Event()
    items: list[Any] = []
    errors: list[Exception] = []

    def on_error(error: Exception) -> None:
        errors.append(error)
        done.set()

    watched = data.pipe(ops.do_action(on_completed=input_completed.set))
    subscription = watched.pipe(stage).subscribe(items.append, on_error, done.set)
    try:
        if not wait_for(lambda: done.is_set() or input_completed.is_set(), timeout):
            raise AssertionError(
                f"{name}: expected to read its input to the end and complete. Received: "
                f"neither on_completed nor on_error within {timeout} s, {len(items)} item(s) "
                "out and its input not read to the end"
            )
        if not done.wait(timeout):
            raise AssertionError(
                f"{name}: expected on_completed within {timeout} s after its input completed "
                "(a stage must call on_completed after its input completes). Received: "
                f"{len(items)} item(s) out and no on_completed {timeout} s after its input "
                "completed"
            )
    finally:
        subscription.dispose()
    if errors:
        raise errors[0]
    return items


def _stage_name(operator: Any) -> str:
    """The name a check reports: the stage's, else the function's."""
    for attribute in ("name", "stage_name", "__name__", "__qualname__"):
        value = getattr(operator, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(operator).__name__
