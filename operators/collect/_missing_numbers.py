"""Numbers that mean "missing": ``collect.csv``'s numeric missing strings, for serving too.

``collect.csv(missing=["-999"])`` reads a number cell whose value is -999 as missing
(NaN). A served row holds the number itself, so the source records
:class:`MissingNumbers` as the data's first preprocessing step: the exported model turns
those values into NaN before any other step, and ``process.fill_missing`` (or
``process.one_hot``) then treats them as it treated the training cells.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import numpy as np

__all__ = ["MissingNumbers", "missing_numbers"]


@functools.lru_cache(maxsize=64)
def _values(missing: frozenset[str]) -> tuple[float, ...]:
    numbers = set()
    for token in missing:
        if token != token.strip():  # a stripped cell never equals it: it marks nothing
            continue
        try:
            number = float(token)
        except ValueError:
            continue
        with np.errstate(over="ignore"):
            single = np.float32(number)
        if math.isfinite(single):  # NaN is missing anyway; an infinity is never a sentinel
            numbers.add(float(single))
    return tuple(sorted(numbers))


def missing_numbers(missing: Iterable[str]) -> tuple[float, ...]:
    """The values of the ``missing`` strings that read as numbers finite in float32,
    rounded to float32 (as the number cells are), sorted.

    A number cell whose float32 value is one of these is missing, however it is written
    (``-999``, ``-999.0``, ``-9.99e2``): serving, which gets numbers rather than text,
    can only compare values. ``nan`` and ``inf`` are left out (NaN is missing anyway; an
    infinity is refused by serving, so only its text marks it missing), and so is a
    string with surrounding spaces (a stripped cell never equals it).

    Example:
        >>> missing_numbers(["", "NA", "-999", "-999.0", "0.1", "nan", "inf", "1e39"])
        (-999.0, 0.10000000149011612)
    """
    return _values(frozenset(missing))


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(np.float32(v)) for v in values)


def _names(values: Any) -> tuple[str, ...] | None:
    return None if values is None else tuple(str(v) for v in values)


def _marked(x: Any, values: tuple[float, ...]) -> Any:
    array = np.asarray(x)
    if not np.issubdtype(array.dtype, np.floating) or not values:
        return array
    hits = np.isin(array, np.asarray(values, array.dtype))
    return np.where(hits, np.asarray(np.nan, array.dtype), array) if hits.any() else array


def _marked_tf(x: Any, values: tuple[float, ...]) -> Any:
    import tensorflow as tf

    if not x.dtype.is_floating or not values:
        return x  # integers hold no missing values; text is compared as text by the steps
    sentinels = tf.constant(values, x.dtype)
    hits = tf.reduce_any(tf.equal(x[..., tf.newaxis], sentinels), axis=-1)
    return tf.where(hits, tf.constant(float("nan"), x.dtype), x)


@attrs.frozen
class MissingNumbers:
    """Float values equal to one of ``values`` → NaN (missing), per named column or in
    the one array (``columns`` ``None``); integer and text columns pass unchanged.

    Compared in the column's dtype (float32 for ``collect.csv``), in numpy and in
    TensorFlow alike.

    Example:
        >>> step = MissingNumbers(values=(-999.0,), columns=("size",))
        >>> step.apply({"size": np.array([1.5, -999.0], "float32")})["size"].tolist()
        [1.5, nan]
    """

    values: tuple[float, ...] = attrs.field(converter=_floats)
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    name: str = "missing_numbers"

    def apply(self, features: Any) -> Any:
        return self._each(features, _marked)

    def apply_tf(self, features: Any) -> Any:
        return self._each(features, _marked_tf)

    def _each(self, features: Any, mark: Callable[[Any, tuple[float, ...]], Any]) -> Any:
        """``mark`` applied to the one array, or to each of ``columns``."""
        if self.columns is None:
            return mark(features, self.values)
        return {**features, **{c: mark(features[c], self.values) for c in self.columns}}

    def to_config(self) -> dict[str, Any]:
        return {
            "values": list(self.values),
            "columns": None if self.columns is None else list(self.columns),
        }
