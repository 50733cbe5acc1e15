"""Tabular preprocessors: standardize, fill missing values, one-hot, join columns.

Tables flow as one float matrix (n, d) or as named columns (a mapping of column name to
a 1-D array: float32 with NaN for missing values, int64, or object with ``None`` for
missing strings). On the TensorFlow side, string columns are ``tf.string`` tensors and a
missing string is ``""`` or one of the other strings ``collect.csv`` reads as missing
(its ``missing``, by default :data:`MISSING`: ``NA``, ``N/A``, ``NaN``, ``nan``,
``null``, ``None``, with surrounding spaces stripped; it records them in the batches'
``DatasetMetadata.missing_strings``). The steps that treat missing text
(:class:`FillMissing`, :class:`OneHot`) use those strings (:func:`missing_for`) and
record them, so serving treats as missing what training did.
A category is its text with surrounding spaces stripped too (``" Paris "`` is
``"Paris"``), in training and in serving alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from .._checks import MISSING

__all__ = [
    "MISSING",
    "ConcatColumns",
    "FillMissing",
    "OneHot",
    "Standardize",
    "category_keys",
    "is_missing_text",
    "missing_for",
]


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _items(values: Any) -> tuple[Any, ...]:
    return tuple(values)


def _strings(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def missing_for(given: tuple[str, ...] | None, source: tuple[str, ...] | None) -> tuple[str, ...]:
    """The strings a step treats as missing text, on data whose source read ``source`` as
    missing (``DatasetMetadata.missing_strings``; ``None``: not known).

    ``given`` (the step's ``missing`` parameter; ``None``: not given) defaults to
    ``source``, or :data:`MISSING` without one. The source's strings are always added:
    the source turned such cells into NaN or ``None``, which training treats as missing,
    so the recorded step must treat the raw string as missing in serving too.

    Example:
        >>> missing_for(None, ("", "?"))
        ('', '?')
        >>> missing_for(("NA",), ("", "?")), missing_for(None, None) == MISSING
        (('NA', '', '?'), True)
    """
    base = given if given is not None else (source if source is not None else MISSING)
    return tuple(dict.fromkeys((*base, *(source or ()))))


def is_missing_text(value: Any, missing: tuple[str, ...]) -> bool:
    """Whether a text cell is missing: ``None``, or a string in ``missing`` once stripped.

    Example:
        >>> [is_missing_text(v, MISSING) for v in (None, " NA ", "", "paris")]
        [True, True, True, False]
    """
    return value is None or (isinstance(value, str) and value.strip() in missing)


def _missing_tf(x: Any, missing: tuple[str, ...]) -> Any:
    """The TF twin of :func:`is_missing_text` on a ``tf.string`` tensor (booleans)."""
    import tensorflow as tf

    if not missing:
        return tf.zeros_like(x, tf.bool)
    tokens = tf.constant(list(missing), tf.string)
    stripped = tf.strings.regex_replace(x, _EDGE_SPACE, "")[..., tf.newaxis]
    return tf.reduce_any(tf.equal(stripped, tokens), axis=-1)


_SPACE = (
    r"[\t\n\x{0b}\x{0c}\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
    r"\x{202f}\x{205f}\x{3000}]"
)
"""Every character ``str.isspace()`` accepts, in RE2 (``tf.strings.strip`` knows ASCII only)."""
_EDGE_SPACE = rf"^{_SPACE}+|{_SPACE}+$"


@attrs.frozen
class Standardize:
    """``(x - mean) / std`` in float32, per matrix column or per named column.

    Example:
        >>> Standardize(mean=(1.0, 10.0), std=(2.0, 5.0)).apply(np.array([[3.0, 0.0]])).tolist()
        [[1.0, -2.0]]
    """

    mean: tuple[float, ...] = attrs.field(converter=_floats)
    std: tuple[float, ...] = attrs.field(converter=_floats)
    columns: tuple[str, ...] | None = None
    name: str = "standardize"

    def _one(self, x: Any, i: Any) -> Any:
        mean = np.asarray(self.mean, np.float32)[i]
        std = np.asarray(self.std, np.float32)[i]
        return (np.asarray(x).astype(np.float32) - mean) / std

    def apply(self, features: Any) -> Any:
        if self.columns is None:
            return self._one(features, slice(None))
        out = dict(features)
        for i, column in enumerate(self.columns):
            out[column] = self._one(features[column], i)
        return out

    def apply_tf(self, features: Any) -> Any:
        import tensorflow as tf

        def one(x: Any, mean: Any, std: Any) -> Any:
            return (tf.cast(x, tf.float32) - tf.constant(mean, tf.float32)) / tf.constant(
                std, tf.float32
            )

        if self.columns is None:
            return one(features, self.mean, self.std)
        out = dict(features)
        for i, column in enumerate(self.columns):
            out[column] = one(features[column], self.mean[i], self.std[i])
        return out

    def to_config(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "columns": self.columns}


def _fill_array(x: Any, value: Any, missing: tuple[str, ...]) -> Any:
    array = np.asarray(x)
    if array.dtype == object:
        out = array.copy()
        out[[is_missing_text(v, missing) for v in out.tolist()]] = value
        return out
    if np.issubdtype(array.dtype, np.floating):
        return np.where(np.isnan(array), np.asarray(value, array.dtype), array)
    return array


@attrs.frozen
class FillMissing:
    """Replace missing values (NaN; ``None`` or a ``missing`` string) by fitted or given values.

    For a matrix, ``values`` holds one number per column; for named columns, one value
    per listed column. Integer columns and matrices hold no missing values and pass
    unchanged.

    Example:
        >>> FillMissing(values=(0.5, 2.0)).apply(np.array([[np.nan, 1.0]])).tolist()
        [[0.5, 1.0]]
        >>> city = np.array(["NA", None, "rome"], dtype=object)
        >>> FillMissing(("paris",), columns=("city",)).apply({"city": city})["city"].tolist()
        ['paris', 'paris', 'rome']
    """

    values: tuple[Any, ...] = attrs.field(converter=_items)
    columns: tuple[str, ...] | None = None
    missing: tuple[str, ...] = attrs.field(default=MISSING, converter=_strings)
    name: str = "fill_missing"

    def apply(self, features: Any) -> Any:
        if self.columns is None:
            array = np.asarray(features)
            if not np.issubdtype(array.dtype, np.floating):
                return array
            fill = np.broadcast_to(np.asarray(self.values, array.dtype), array.shape)
            return np.where(np.isnan(array), fill, array)
        out = dict(features)
        for column, value in zip(self.columns, self.values, strict=True):
            out[column] = _fill_array(features[column], value, self.missing)
        return out

    def apply_tf(self, features: Any) -> Any:
        import tensorflow as tf

        def one(x: Any, value: Any) -> Any:
            if x.dtype == tf.string:
                return tf.where(_missing_tf(x, self.missing), tf.constant(str(value)), x)
            if x.dtype.is_floating:
                return tf.where(tf.math.is_nan(x), tf.cast(value, x.dtype), x)
            return x  # integers (and booleans) cannot be missing

        if self.columns is None:
            if not features.dtype.is_floating:
                return features
            return one(features, tf.constant(self.values, features.dtype))
        out = dict(features)
        for column, value in zip(self.columns, self.values, strict=True):
            out[column] = one(features[column], value)
        return out

    def to_config(self) -> dict[str, Any]:
        return {"values": list(self.values), "columns": self.columns, "missing": list(self.missing)}


def category_keys(values: Any, missing: tuple[str, ...] = MISSING) -> list[Any]:
    """Hashable category keys of a column: strings stripped of surrounding spaces (as
    :func:`is_missing_text` strips them), numbers as floats.

    Missing values (NaN, ``None``, a ``missing`` string) are ``None``.

    Example:
        >>> category_keys(np.array([" a ", " NA", None, 3], dtype=object))
        ['a', None, None, '3']
    """
    array = np.asarray(values)
    if array.dtype == object:
        return [
            None if is_missing_text(v, missing) else (v if isinstance(v, str) else str(v)).strip()
            for v in array.tolist()
        ]
    return [None if np.isnan(v) else float(v) for v in array.astype(np.float64).tolist()]


@attrs.frozen
class OneHot:
    """Named categorical columns → float32 one-hot vectors (unknown or missing: all zeros).

    Text is compared with surrounding spaces stripped (``" red"`` is ``"red"``; letter
    case counts); missing text is ``None`` or a ``missing`` string.

    Example:
        >>> step = OneHot(columns=("color",), categories=(("blue", "red"),))
        >>> colors = np.array([" red", None, "green"], dtype=object)
        >>> step.apply({"color": colors})["color"].tolist()
        [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    """

    columns: tuple[str, ...]
    categories: tuple[tuple[Any, ...], ...]
    missing: tuple[str, ...] = attrs.field(default=MISSING, converter=_strings)
    name: str = "one_hot"

    def apply(self, features: Any) -> Any:
        out = dict(features)
        for column, categories in zip(self.columns, self.categories, strict=True):
            index = {c: i for i, c in enumerate(categories)}
            keys = category_keys(features[column], self.missing)
            vectors = np.zeros((len(keys), len(categories)), dtype=np.float32)
            for row, key in enumerate(keys):
                position = index.get(key)
                if position is not None:
                    vectors[row, position] = 1.0
            out[column] = vectors
        return out

    def apply_tf(self, features: Any) -> Any:
        import tensorflow as tf

        out = dict(features)
        for column, categories in zip(self.columns, self.categories, strict=True):
            x = features[column]
            if x.dtype == tf.string:
                table = tf.constant([str(c) for c in categories], tf.string)
                present = tf.logical_not(_missing_tf(x, self.missing))[:, tf.newaxis]
                x = tf.strings.regex_replace(x, _EDGE_SPACE, "")  # as category_keys strips
            else:
                x = tf.cast(x, tf.float64)
                table = tf.constant([float(c) for c in categories], tf.float64)
                present = tf.constant(True)
            hits = tf.logical_and(tf.equal(x[:, tf.newaxis], table[tf.newaxis, :]), present)
            out[column] = tf.cast(hits, tf.float32)
        return out

    def to_config(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "categories": [list(c) for c in self.categories],
            "missing": list(self.missing),
        }


@attrs.frozen
class ConcatColumns:
    """Named columns → one float32 matrix, columns in the given order (vectors flattened).

    Example:
        >>> step = ConcatColumns(columns=("a", "b"), widths=(1, 2))
        >>> step.apply({"a": np.array([1.0]), "b": np.array([[2.0, 3.0]])}).tolist()
        [[1.0, 2.0, 3.0]]
    """

    columns: tuple[str, ...]
    widths: tuple[int, ...]
    name: str = "concat_columns"

    def apply(self, features: Any) -> Any:
        if not isinstance(features, Mapping):
            raise ValueError("concat_columns: expected named columns. Received: one array")
        parts = []
        for column, width in zip(self.columns, self.widths, strict=True):
            array = np.asarray(features[column])
            if array.dtype == object:
                raise ValueError(
                    f"concat_columns: column {column!r}: expected numbers. Received: objects "
                    "(one-hot encode or drop text columns first)"
                )
            parts.append(array.astype(np.float32, copy=False).reshape(len(array), width))
        return np.concatenate(parts, axis=1)

    def apply_tf(self, features: Any) -> Any:
        import tensorflow as tf

        parts = [
            tf.reshape(tf.cast(features[column], tf.float32), [-1, width])
            for column, width in zip(self.columns, self.widths, strict=True)
        ]
        return tf.concat(parts, axis=1)

    def to_config(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "widths": list(self.widths)}
