"""process.fill_missing: replace missing values, with statistics of the training split."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rxpipe.batch import Batch
from rxpipe.errors import BatchError, ConfigError
from rxpipe.flow import fitted, map_batches
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import missing_strings, names, one_of
from ._recording import Recorded, layout_kept
from ._standardize import Moments
from ._tables import columns_of, is_table, kind_of, matrix, refuse_infinite
from ._tabular_steps import FillMissing, category_keys, missing_for

STRATEGIES = ("mean", "median", "most_frequent", "constant")
CENTRAL = ("mean", "median")


class _Fit:
    """Per column: the mean or median (numbers, with those strategies) or the most frequent value.

    A median is exact: the numeric training values are kept until the fit ends (8 bytes
    per value), as a streaming median would only be approximate. The missing strings are
    ``given``, or the training batches' source's (see :func:`missing_for`).
    """

    def __init__(
        self, strategy: str, columns: tuple[str, ...] | None, given: tuple[str, ...] | None
    ) -> None:
        self.strategy = strategy
        self.columns = columns
        self.given = given
        self.missing: tuple[str, ...] = ()
        self.moments = Moments()
        self.rows: list[np.ndarray[Any, Any]] = []  # numeric training rows, for "median"
        self.counts: dict[Any, Counter[Any]] = {}
        self.text: dict[str, bool] = {}

    def _count(self, key: Any, values: list[Any]) -> None:
        self.counts.setdefault(key, Counter()).update(v for v in values if v is not None)

    def update(self, batch: Batch) -> None:
        found = missing_for(self.given, batch.metadata.missing_strings)
        if found != self.missing:  # the first batch, or another source's
            self.missing = tuple(dict.fromkeys((*self.missing, *found)))
        if is_table(batch.features):
            features: Mapping[str, Any] = batch.features  # type: ignore[assignment]
            self.columns = columns_of("process.fill_missing", batch, self.columns)
            for column in self.columns:
                array = np.asarray(features[column])
                self.text[column] = kind_of(array) == "text"
                if self.text[column] or self.strategy == "most_frequent":
                    self._count(column, category_keys(array, self.missing))
            if self.strategy in CENTRAL:
                numeric = tuple(c for c in self.columns if not self.text[c])
                if numeric:
                    block = np.stack([features[c] for c in numeric], axis=1)
                    self._add_numbers(batch, block, numeric)
            return
        x = matrix("process.fill_missing", batch)
        if self.strategy in CENTRAL:
            self._add_numbers(batch, x, None)
        else:
            for index in range(x.shape[1]):
                self._count(index, category_keys(x[:, index], self.missing))

    def _add_numbers(
        self, batch: Batch, x: np.ndarray[Any, Any], names: tuple[str, ...] | None
    ) -> None:
        refuse_infinite("process.fill_missing", batch, x, names)  # an infinite fill value
        if self.strategy == "mean":
            self.moments.add(x)
        else:
            self.rows.append(x.astype(np.float64))

    def _centers(self) -> list[float]:
        """Per numeric column: its mean or median (0 for a column with no value at all)."""
        if self.strategy == "mean":
            return list(np.atleast_1d(self.moments.mean).tolist())
        if not self.rows:
            return []
        values = np.concatenate(self.rows)
        present = [column[~np.isnan(column)] for column in values.T]
        return [float(np.median(p)) if p.size else 0.0 for p in present]

    def _frequent(self, key: Any, fallback: Any) -> Any:
        counts = self.counts.get(key)
        if not counts:
            return fallback
        return min(counts, key=lambda v: (-counts[v], str(v)))

    def result(self) -> FillMissing:
        centers = self._centers()
        if self.columns is None:
            if self.strategy in CENTRAL:
                return FillMissing(values=centers, missing=self.missing)
            width = len(self.counts)
            return FillMissing(
                values=[self._frequent(i, 0.0) for i in range(width)], missing=self.missing
            )
        values: list[Any] = []
        numeric = iter(centers)
        for column in self.columns:
            if self.text[column]:
                values.append(self._frequent(column, ""))
            elif self.strategy in CENTRAL:
                values.append(next(numeric))
            else:
                values.append(self._frequent(column, 0.0))
        return FillMissing(values=values, columns=self.columns, missing=self.missing)


@plugin("process.fill_missing")
def fill_missing(
    strategy: str = "mean",
    value: float | str | None = None,
    columns: Sequence[str] | None = None,
    missing: Sequence[str] | None = None,
) -> Operator[Batch, Batch]:
    """Fill missing values (NaN in numbers, ``None`` in text) per column; recorded for serving.

    ``"mean"`` fills numbers with their training-split mean (text columns with their
    most frequent value); ``"median"`` likewise with the exact median (robust to
    outliers; it keeps the training split's numbers in memory while fitting, 8 bytes per
    value); ``"most_frequent"`` fills every column with its most frequent
    training value; ``"constant"`` fills with ``value``. Works on a numeric matrix or on
    named columns (``columns``, default every numeric and text column). Integer columns
    hold no missing values and pass unchanged.

    Text cells that are ``None`` or one of ``missing`` (compared after stripping spaces)
    are missing, in training and in the exported model, which gets ``""`` or such a
    string for a missing text value. By default ``missing`` is the strings the source
    read as missing (``collect.csv``'s ``missing``, recorded in the batches'
    ``DatasetMetadata.missing_strings``), else ``""``, ``NA``, ``N/A``, ``NaN``,
    ``nan``, ``null`` and ``None``; the source's strings are always added, so a raw
    ``"?"`` that ``collect.csv(missing=["", "?"])`` read as missing is missing in
    serving too, and a served JSON ``null`` is one of these strings (``""`` if it is
    one; with ``missing=["?"]``, where ``""`` is a category, ``"?"``). A number that
    ``collect.csv`` reads as missing (``missing=["-999"]``) is NaN before this step, in
    training and in the exported model alike (see ``collect.csv``'s ``missing``).

    Args:
        strategy: ``"mean"``, ``"median"``, ``"most_frequent"`` or ``"constant"``.
        value: the fill value, for ``"constant"``.
        columns: the named columns to fill (named features only).
        missing: strings that mean a missing text value (default: the source's, see
            above); those the source read as missing are added.

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> x = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 8.0]], "float32")
        >>> [b] = collect(from_arrays(x, split="train").pipe(fill_missing()))
        >>> b.features.tolist()
        [[1.0, 6.0], [3.0, 4.0], [2.0, 8.0]]
    """
    one_of("process.fill_missing", "strategy", strategy, STRATEGIES)
    wanted = names("process.fill_missing", "columns", columns)
    tokens = None if missing is None else missing_strings("process.fill_missing", missing)
    if (strategy == "constant") != (value is not None):
        raise ConfigError(
            f"expected a value exactly with strategy 'constant'. Received: value={value!r} "
            f"with strategy {strategy!r}",
            "process.fill_missing.value",
        )
    if strategy == "constant":
        return _constant(value, wanted, tokens)

    def make_apply(step: FillMissing) -> Callable[[Batch], Batch]:
        return Recorded(step, layout_kept)

    return fitted("process.fill_missing", lambda: _Fit(strategy, wanted, tokens), make_apply)


def _constant(
    value: Any, wanted: tuple[str, ...] | None, given: tuple[str, ...] | None
) -> Operator[Batch, Batch]:
    recorders: dict[tuple[tuple[str, ...] | None, tuple[str, ...]], Recorded] = {}

    def apply(batch: Batch) -> Batch:
        missing = missing_for(given, batch.metadata.missing_strings)
        if is_table(batch.features):
            chosen = columns_of("process.fill_missing", batch, wanted, scalar=False)
            features: Mapping[str, Any] = batch.features  # type: ignore[assignment]
            for column in chosen:
                text = kind_of(np.asarray(features[column])) == "text"
                if text != isinstance(value, str):
                    raise BatchError(
                        f"process.fill_missing: column {column!r}: expected a "
                        f"{'text' if text else 'number'} fill value. Received: {value!r}"
                    )
            key: tuple[str, ...] | None = chosen
            step = FillMissing(values=[value] * len(chosen), columns=chosen, missing=missing)
        else:
            x = matrix("process.fill_missing", batch)
            if isinstance(value, str):
                raise BatchError(
                    f"process.fill_missing: expected a number for a numeric matrix. "
                    f"Received: {value!r}"
                )
            key = None
            step = FillMissing(values=[float(value)] * x.shape[1], missing=missing)
        record = recorders.get((key, missing))
        if record is None:
            record = recorders[key, missing] = Recorded(step, layout_kept)
        return record(batch)

    return map_batches("process.fill_missing", apply)
