"""Shared helpers of the tabular plugins: which columns, and checks with clear errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rxpipe.batch import Batch, FeatureSpec
from rxpipe.errors import BatchError


def is_table(features: Any) -> bool:
    """True for named columns (a mapping), False for one matrix."""
    return isinstance(features, Mapping)


def matrix(stage: str, batch: Batch) -> np.ndarray[Any, Any]:
    """The batch's features as a numeric matrix (n, d); a clear error otherwise."""
    x = batch.features
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype == object:
        got = (
            f"named features {sorted(x)}"
            if not isinstance(x, np.ndarray)
            else f"samples of shape {x.shape[1:]}, dtype {x.dtype.name}"
        )
        raise BatchError(
            f"{stage}: expected a numeric matrix (samples of shape (n_features,)) or named "
            f"columns. Received: {got}"
        )
    return x


def columns_of(
    stage: str,
    batch: Batch,
    wanted: tuple[str, ...] | None,
    kinds: tuple[str, ...] = ("numeric", "text"),
) -> tuple[str, ...]:
    """The named columns to work on: ``wanted`` (checked), or every scalar column of ``kinds``.

    Raises:
        BatchError: naming the unknown or unsuitable columns and the ones available.
    """
    features = batch.features
    if not isinstance(features, Mapping):
        raise BatchError(
            f"{stage}: expected named columns (e.g. from collect.csv) to pick columns from. "
            "Received: one unnamed array (leave columns unset to use every column)"
        )
    if wanted is not None:
        unknown = [c for c in wanted if c not in features]
        if unknown:
            raise BatchError(
                f"{stage}: expected columns among {sorted(features)}. Received: {unknown}"
            )
        return wanted
    return tuple(
        name for name, array in features.items() if array.ndim == 1 and kind_of(array) in kinds
    )


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
