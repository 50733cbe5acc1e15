"""Shared helpers of the tabular plugins: which columns, and checks with clear errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rxpipe.batch import Batch, FeatureSpec
from rxpipe.errors import BatchError

ONE_COLUMN = "collect.csv reads a file with one feature column as one array"
"""Why a stage may get one unnamed array where it expected named columns."""


def is_table(features: Any) -> bool:
    """True for named columns (a mapping), False for one matrix."""
    return isinstance(features, Mapping)


def matrix(stage: str, batch: Batch) -> np.ndarray[Any, Any]:
    """The batch's features as a numeric matrix (n, d); a clear error otherwise.

    One number per sample (``collect.csv`` reads a file with one feature column so) is a
    matrix of one column, (n, 1): the steps fitted on it broadcast back to (n,).

    Example:
        >>> from rxpipe.testing import make_metadata
        >>> x = np.array([1.0, 2.0], "float32")
        >>> matrix("s", Batch(x, None, np.arange(2), make_metadata(x))).shape
        (2, 1)
    """
    x = batch.features
    if isinstance(x, np.ndarray) and x.ndim == 1 and kind_of(x) == "numeric":
        return x[:, np.newaxis]
    if not isinstance(x, np.ndarray) or x.ndim != 2 or kind_of(x) != "numeric":
        got = (
            f"named features {sorted(x)}"
            if not isinstance(x, np.ndarray)
            else f"samples of shape {x.shape[1:]}, dtype {x.dtype.name}"
        )
        if isinstance(x, np.ndarray) and x.ndim == 1:
            got += f" ({ONE_COLUMN})"
        raise BatchError(
            f"{stage}: expected a numeric matrix (samples of shape (n_features,)), one "
            f"number per sample, or named columns. Received: {got}"
        )
    return x


def columns_of(
    stage: str,
    batch: Batch,
    wanted: tuple[str, ...] | None,
    kinds: tuple[str, ...] = ("numeric", "text"),
    *,
    unset_ok: bool = True,
    scalar: bool = True,
) -> tuple[str, ...]:
    """The named columns to work on: ``wanted`` (checked), or every scalar column of ``kinds``.

    A column in ``wanted`` must hold values of one of ``kinds``, one per sample if
    ``scalar``.
    ``unset_ok``: the stage works on unnamed features when its ``columns`` are unset
    (the error for unnamed features says so).

    Raises:
        BatchError: naming the unknown or unsuitable columns and the ones available.
    """
    features = batch.features
    if not isinstance(features, Mapping):
        array = np.asarray(features)
        single = f" ({ONE_COLUMN})"
        raise BatchError(
            f"{stage}: expected named columns (e.g. from collect.csv) to pick columns "
            f"{list(wanted or ())} from. Received: one unnamed array of samples of shape "
            f"{array.shape[1:]}{single if array.ndim == 1 else ''}"
            f"{'; leave columns unset to use it whole' if unset_ok else ''}"
        )
    if wanted is not None:
        unknown = [c for c in wanted if c not in features]
        if unknown:
            raise BatchError(
                f"{stage}: expected columns among {sorted(features)}. Received: {unknown}"
            )
        for name in wanted:
            check_column(stage, name, np.asarray(features[name]), kinds, scalar=scalar)
        return wanted
    return tuple(
        name for name, array in features.items() if array.ndim == 1 and kind_of(array) in kinds
    )


def refuse_infinite(
    stage: str, batch: Batch, block: np.ndarray[Any, Any], names: tuple[str, ...] | None
) -> None:
    """Raise if a fitting block (n, d) holds an infinity, naming its column and sample.

    One infinite value would make the fitted statistic infinite or NaN, and with it
    every sample's value, in training and in serving.
    """
    infinite = np.isinf(block) if block.dtype.kind == "f" else None
    if infinite is None or not infinite.any():
        return
    row, column = (int(i) for i in np.argwhere(infinite)[0])
    where = f"column {names[column]!r}" if names is not None else f"column {column}"
    sample_id = batch.ids[row].item()
    raise BatchError(
        f"{stage}: {where}, sample {sample_id!r}: expected finite numbers (NaN for a missing "
        f"value). Received: {block[row, column].item()!r}",
        [sample_id],
    )


_KIND_WORDS = {"numeric": "numbers", "text": "text"}


def check_column(
    stage: str,
    name: str,
    array: np.ndarray[Any, Any],
    kinds: tuple[str, ...],
    *,
    scalar: bool = True,
) -> None:
    """Raise unless ``array`` holds values of one of ``kinds`` (one per sample if ``scalar``).

    Example:
        >>> check_column("s", "n", np.zeros((3, 2)), ("numeric",))
        Traceback (most recent call last):
        ...
        rxpipe.errors.BatchError: s: column 'n': expected numbers, one per sample.
        Received: samples of shape (2,)
    """
    expected = " or ".join(_KIND_WORDS[k] for k in kinds) + (", one per sample" if scalar else "")
    if scalar and array.ndim != 1:
        received = f"samples of shape {array.shape[1:]}"
    elif kind_of(array) == "other":
        received = f"values of dtype {array.dtype.name}"
    elif kind_of(array) not in kinds:
        present = [v for v in array.tolist() if v is not None][:1]
        example = f" such as {str(present[0])[:40]!r}" if present else ""
        received = f"{_KIND_WORDS[kind_of(array)]}{example}"
        if kind_of(array) == "text":
            received += (
                " (numbers written with a thousands separator, a unit or a percent sign are "
                "read as text: write plain numbers, or encode the column with process.one_hot)"
            )
    else:
        return
    raise BatchError(f"{stage}: column {name!r}: expected {expected}. Received: {received}")


def kind_of(array: np.ndarray[Any, Any]) -> str:
    """``"numeric"``, ``"text"`` (object arrays) or ``"other"``."""
    if array.dtype == object:
        return "text"
    if np.issubdtype(array.dtype, np.number) or array.dtype == bool:
        return "numeric"
    return "other"


def spec_with(
    features: FeatureSpec | Mapping[str, FeatureSpec], changes: Mapping[str, FeatureSpec]
) -> Mapping[str, FeatureSpec]:
    """A column spec mapping with ``changes`` applied (order kept)."""
    base = dict(features) if isinstance(features, Mapping) else {}
    return {**base, **changes}
