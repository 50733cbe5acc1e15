"""process.concat_columns: named numeric columns → one float32 matrix, for the models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import BatchError
from rxpipe.flow import map_batches
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import names
from ._recording import Recorded
from ._tables import ONE_COLUMN
from ._tabular_steps import ConcatColumns


def _plan(meta: DatasetMetadata, wanted: tuple[str, ...] | None) -> ConcatColumns:
    specs = meta.features
    if not isinstance(specs, Mapping):
        hint = (
            f" ({ONE_COLUMN}, which the models take as it is: leave process.concat_columns out)"
            if specs.shape == ()
            else ""
        )
        raise BatchError(
            "process.concat_columns: expected named columns (e.g. from collect.csv). "
            f"Received: one array of samples of shape {specs.shape}{hint}"
        )
    chosen = wanted if wanted is not None else tuple(specs)
    unknown = [c for c in chosen if c not in specs]
    if unknown:
        raise BatchError(
            f"process.concat_columns: expected columns among {list(specs)}. Received: {unknown}"
        )
    text = [c for c in chosen if specs[c].dtype == "object"]
    if text:
        raise BatchError(
            f"process.concat_columns: expected numeric columns. Received: text columns {text} "
            "(encode them with process.one_hot, or leave them out with columns=[...]; numbers "
            "written with a thousands separator, a unit or a percent sign are read as text)"
        )
    widths = tuple(int(np.prod(specs[c].shape, dtype=np.int64)) for c in chosen)
    return ConcatColumns(columns=chosen, widths=widths)


@plugin("process.concat_columns")
def concat_columns(columns: Sequence[str] | None = None) -> Operator[Batch, Batch]:
    """Join named numeric columns (scalars and vectors) into one float32 matrix.

    The models take one array per sample; this is the last tabular step, after
    ``process.fill_missing``, ``process.one_hot`` and ``process.standardize``. Recorded
    for serving: the exported model takes the named columns.

    Args:
        columns: the columns, in order (default: every column, in the data's order).

    Example:
        >>> from rxpipe.testing import collect
        >>> from rxpipe.batch import DatasetMetadata, FeatureSpec
        >>> import reactivex
        >>> meta = DatasetMetadata("t", {"a": FeatureSpec((), "float32"),
        ...                              "b": FeatureSpec((2,), "float32")})
        >>> cols = {"a": np.array([1.0], "float32"), "b": np.array([[2.0, 3.0]], "float32")}
        >>> source = reactivex.of(Batch(cols, None, np.arange(1), meta))
        >>> [b] = collect(source.pipe(concat_columns()))
        >>> b.features.tolist(), b.metadata.feature_spec.shape
        ([[1.0, 2.0, 3.0]], (3,))
    """
    wanted = names("process.concat_columns", "columns", columns)
    recorders: dict[int, tuple[DatasetMetadata, Recorded]] = {}

    def apply(batch: Batch) -> Batch:
        known = recorders.get(id(batch.metadata))
        if known is None or known[0] is not batch.metadata:
            known = recorders[id(batch.metadata)] = (
                batch.metadata,
                Recorded(_plan(batch.metadata, wanted)),
            )
        return known[1](batch)

    return map_batches("process.concat_columns", apply)
