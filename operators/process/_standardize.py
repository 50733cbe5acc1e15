"""process.standardize: zero mean, unit variance per column, fitted on the training split."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rxpipe.batch import Batch
from rxpipe.flow import fitted
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import names
from ._recording import Recorded, layout_kept
from ._tables import columns_of, is_table, matrix, refuse_infinite
from ._tabular_steps import Standardize


class Moments:
    """Running per-column count, mean and sum of squared deviations, ignoring NaN.

    Batches are merged with Chan et al.'s parallel formula, so the result does not
    depend on how the data is cut into batches (up to rounding).

    Example:
        >>> m = Moments()
        >>> m.add(np.array([[1.0], [3.0]])); m.add(np.array([[np.nan], [5.0]]))
        >>> m.mean.tolist(), m.std().tolist()
        ([3.0], [1.632993161855452])
    """

    def __init__(self) -> None:
        self.count: Any = 0
        self.mean: Any = 0.0
        self.m2: Any = 0.0

    def add(self, x: np.ndarray[Any, Any]) -> None:
        """Add a batch of rows (n, d)."""
        values = x.astype(np.float64)
        present = ~np.isnan(values)
        count = present.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, np.nansum(values, axis=0) / np.maximum(count, 1), 0.0)
            m2 = np.nansum(np.where(present, (values - mean) ** 2, 0.0), axis=0)
        total = self.count + count
        delta = mean - self.mean
        safe = np.maximum(total, 1)
        self.mean = self.mean + delta * count / safe
        self.m2 = self.m2 + m2 + delta**2 * self.count * count / safe
        self.count = total

    def std(self) -> np.ndarray[Any, Any]:
        """Population standard deviation per column; 1 where it is 0 or unknown, or 0 or
        infinite in float32, in which :class:`Standardize` divides by it."""
        variance = self.m2 / np.maximum(self.count, 1)
        std = np.sqrt(np.asarray(variance, np.float64))
        with np.errstate(over="ignore"):
            in_float32 = std.astype(np.float32)
        return np.where((in_float32 > 0) & np.isfinite(in_float32), std, 1.0)


class _Fit:
    def __init__(self, columns: tuple[str, ...] | None) -> None:
        self.columns = columns
        self.moments = Moments()

    def update(self, batch: Batch) -> None:
        if is_table(batch.features):
            self.columns = columns_of("process.standardize", batch, self.columns, ("numeric",))
            block = np.stack([np.asarray(batch.features[c]) for c in self.columns], axis=1)
        else:
            if self.columns is not None:
                columns_of("process.standardize", batch, self.columns)  # explains the error
            block = matrix("process.standardize", batch)
        refuse_infinite("process.standardize", batch, block, self.columns)
        self.moments.add(block)

    def result(self) -> Standardize:
        return Standardize(
            mean=np.atleast_1d(self.moments.mean).tolist(),
            std=np.atleast_1d(self.moments.std()).tolist(),
            columns=self.columns if self.columns is not None else None,
        )


@plugin("process.standardize")
def standardize(columns: Sequence[str] | None = None) -> Operator[Batch, Batch]:
    """Scale features to zero mean and unit variance, with statistics of the training split.

    Works on a numeric matrix (every column) or on named columns (``columns``, default
    every numeric one). Missing values (NaN) are ignored when fitting and stay NaN
    (fill them with ``process.fill_missing``). Output is float32; recorded for serving.

    Args:
        columns: the named columns to scale (named features only).

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> x = np.array([[1.0, 10.0], [3.0, 30.0]], "float32")
        >>> [b] = collect(from_arrays(x, split="train").pipe(standardize()))
        >>> b.features.tolist()
        [[-1.0, -1.0], [1.0, 1.0]]
    """
    wanted = names("process.standardize", "columns", columns)

    def make_apply(step: Standardize) -> Callable[[Batch], Batch]:
        return Recorded(step, layout_kept)

    return fitted("process.standardize", lambda: _Fit(wanted), make_apply)
