"""process.label_encode: labels (strings or numbers) → class indices, with label names."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import BatchError
from rxpipe.flow import OnError, fitted, map_batches
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._bad_records import check_on_error
from .._checks import fail, names


def _key(value: Any) -> Any:
    """A label's class key: text as str without surrounding spaces, integral floats as int;
    ``None`` if it is missing.

    Example:
        >>> [_key(v) for v in (" cat ", b"dog", 2.0, 2.5, float("nan"))]
        ['cat', 'dog', 2, 2.5, None]
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return value.strip()  # " yes" (a CSV written "a, b, yes") is the class "yes"
    if isinstance(value, float):
        if math.isnan(value):
            return None  # a missing label (e.g. an empty cell of a float column)
        if value.is_integer():
            return int(value)
    return value


def _labels(batch: Batch) -> list[Any]:
    if batch.labels is None:
        raise BatchError(
            f"process.label_encode: expected labelled samples. Received: no labels "
            f"(samples {batch.ids[:4].tolist()}...)"
        )
    if batch.labels.ndim != 1:
        raise BatchError(
            "process.label_encode: expected one label per sample. Received: labels of "
            f"shape {batch.labels.shape[1:]}"
        )
    return [_key(v) for v in batch.labels.tolist()]


class _Fit:
    def __init__(self) -> None:
        self.seen: set[Any] = set()

    def update(self, batch: Batch) -> None:
        self.seen.update(v for v in _labels(batch) if v is not None)

    def result(self) -> tuple[Any, ...]:
        if all(isinstance(v, int | float) for v in self.seen):
            return tuple(sorted(self.seen))
        return tuple(sorted(self.seen, key=str))


def _encoder(classes: tuple[Any, ...]) -> Callable[[Batch], Batch]:
    index = {str(c).strip(): i for i, c in enumerate(classes)}
    index.update({c: i for i, c in enumerate(classes)})
    label_names = tuple(str(c) for c in classes)
    evolved: dict[int, tuple[DatasetMetadata, DatasetMetadata]] = {}

    def encode(batch: Batch) -> Batch:
        values = _labels(batch)
        codes = np.empty(len(values), dtype=np.int64)
        for position, value in enumerate(values):
            code = None if value is None else index.get(value, index.get(str(value)))
            if code is None:
                sample_id = batch.ids[position].item()
                received = "a missing label (None or NaN)" if value is None else repr(value)
                raise BatchError(
                    f"process.label_encode: sample {sample_id!r}: expected a label among "
                    f"{list(label_names)}. Received: {received}",
                    [sample_id],
                )
            codes[position] = code
        known = evolved.get(id(batch.metadata))
        if known is None or known[0] is not batch.metadata:
            known = (batch.metadata, batch.metadata.evolve(label_names=label_names))
            evolved[id(batch.metadata)] = known
        return batch.evolve(labels=codes, metadata=known[1])

    return encode


@plugin("process.label_encode")
def label_encode(
    label_names: Sequence[str] | None = None,
    on_error: str = "raise",
    max_skipped: int | None = None,
) -> Operator[Batch, Batch]:
    """Encode labels as class indices 0..k-1 and set the data set's label names.

    With ``label_names``, they give the classes in order (labels are matched by their
    text). Without, the classes are the distinct labels of the training split, sorted
    (numbers numerically, else as text). Text labels are compared with surrounding spaces
    stripped (``" yes"`` is ``"yes"``). A missing label (``None`` or NaN) is never a
    class. A label that is not a class, or is missing, fails the run naming the sample,
    or is skipped and reported with ``on_error="skip"``.

    Args:
        label_names: the classes, in index order (default: learned from the train split).
        on_error: ``"raise"`` or ``"skip"`` for samples with an unknown label.
        max_skipped: with ``"skip"``, fail after this many skipped samples in a pass.

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> labels = np.array(["spam", "ham", "spam"], dtype=object)
        >>> source = from_arrays(np.zeros((3, 1)), labels, split="train")
        >>> [b] = collect(source.pipe(label_encode()))
        >>> b.labels.tolist(), b.metadata.label_names
        ([1, 0, 1], ('ham', 'spam'))
    """
    given = names("process.label_encode", "label_names", label_names)
    if given is not None and len({n.strip() for n in given}) != len(given):
        raise fail(
            "process.label_encode",
            "label_names",
            "names distinct without surrounding spaces",
            given,
        )
    check_on_error("process.label_encode", on_error, max_skipped)
    if given is not None:
        return map_batches(
            "process.label_encode",
            _encoder(given),
            on_error=_policy(on_error),
            max_skipped=max_skipped,
        )
    return fitted(
        "process.label_encode", _Fit, _encoder, on_error=on_error, max_skipped=max_skipped
    )


def _policy(value: str) -> OnError:
    return "skip" if value == "skip" else "raise"
