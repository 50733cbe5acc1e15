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

from rxpipe.batch import Batch, DatasetMetadata, FeatureSpec, Split, inferred_label_names
from rxpipe.events import Event
from rxpipe.flow import generate, map_batches
from rxpipe.stage import Stage

__all__ = ["EventRecorder", "collect", "fail_on", "from_arrays", "make_metadata", "wait_for"]

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
        TimeoutError: if the source neither completes nor fails within ``timeout`` s.
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
            raise TimeoutError(f"collect: the source did not finish within {timeout} s")
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
