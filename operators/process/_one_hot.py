"""process.one_hot: categorical columns → one-hot vectors, categories fitted on train."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rxpipe.batch import Batch, DatasetMetadata, Features, FeatureSpec
from rxpipe.errors import BatchError, ConfigError
from rxpipe.flow import fitted
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import missing_strings, names, optional_positive_int, positive_int
from ._recording import Recorded
from ._tables import columns_of, spec_with
from ._tabular_steps import OneHot, category_keys, missing_for


class _Fit:
    def __init__(
        self,
        columns: tuple[str, ...],
        max_categories: int | None,
        min_count: int,
        given: tuple[str, ...] | None,
    ) -> None:
        self.columns = columns
        self.given = given
        self.missing: tuple[str, ...] = ()  # given, or the source's (see missing_for)
        self.max_categories = max_categories
        self.min_count = min_count
        self.counts: dict[str, Counter[Any]] = {c: Counter() for c in columns}

    def update(self, batch: Batch) -> None:
        found = missing_for(self.given, batch.metadata.missing_strings)
        if found != self.missing:  # the first batch, or another source's
            self.missing = tuple(dict.fromkeys((*self.missing, *found)))
        columns_of("process.one_hot", batch, self.columns, unset_ok=False)
        features: Mapping[str, Any] = batch.features  # type: ignore[assignment]
        for column in self.columns:
            keys = category_keys(features[column], self.missing)
            self.counts[column].update(k for k in keys if k is not None)

    def result(self) -> OneHot:
        categories = []
        for column in self.columns:
            counts = self.counts[column]
            kept = [k for k in counts if counts[k] >= self.min_count]
            kept.sort(key=lambda k: (-counts[k], str(k)))
            if self.max_categories is not None:
                kept = kept[: self.max_categories]
            if not kept:
                raise BatchError(
                    f"process.one_hot: column {column!r}: expected categories in the "
                    "training split. Received: none (every value missing or too rare)"
                )
            categories.append(tuple(sorted(kept, key=str)))
        return OneHot(columns=self.columns, categories=tuple(categories), missing=self.missing)


@plugin("process.one_hot")
def one_hot(
    columns: Sequence[str],
    max_categories: int | None = None,
    min_count: int = 1,
    missing: Sequence[str] | None = None,
) -> Operator[Batch, Batch]:
    """Replace categorical columns by one-hot float32 vectors; categories from the train split.

    Each listed column (text, or numbers used as codes) becomes a vector with one entry
    per training category (sorted); an unseen or missing value gives all zeros. Missing
    text is ``None`` or one of ``missing`` (after stripping spaces), in training and in
    the exported model. By default ``missing`` is the strings the source read as missing
    (``collect.csv``'s ``missing``, recorded in the batches'
    ``DatasetMetadata.missing_strings``), else ``""``, ``NA``, ``N/A``, ``NaN``, ``nan``,
    ``null`` and ``None``; the source's strings are always added.
    Recorded for serving. Named features only (e.g. from ``collect.csv``).

    Args:
        columns: the categorical columns.
        max_categories: keep only this many most frequent categories per column.
        min_count: keep only categories seen this many times in training.
        missing: strings that mean a missing value (default: the source's, see above);
            those the source read as missing are added.

    Example:
        >>> from rxpipe.testing import collect
        >>> from rxpipe.batch import DatasetMetadata, FeatureSpec
        >>> import numpy as np, reactivex
        >>> color = np.array(["red", "blue", "red"], dtype=object)
        >>> meta = DatasetMetadata("t", {"color": FeatureSpec((), "object")})
        >>> batch = Batch({"color": color}, None, np.arange(3), meta, "train")
        >>> [b] = collect(reactivex.of(batch).pipe(one_hot(["color"])))
        >>> b.features["color"].tolist()
        [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    """
    chosen = names("process.one_hot", "columns", columns)
    if not chosen:
        raise ConfigError(
            "expected at least one column name. Received: []", "process.one_hot.columns"
        )
    optional_positive_int("process.one_hot", "max_categories", max_categories)
    positive_int("process.one_hot", "min_count", min_count)
    tokens = None if missing is None else missing_strings("process.one_hot", missing)

    def make_apply(step: OneHot) -> Callable[[Batch], Batch]:
        def spec(meta: DatasetMetadata, features: Features) -> Mapping[str, FeatureSpec]:
            changes = {
                c: FeatureSpec((len(cats),), "float32", (0.0, 1.0))
                for c, cats in zip(step.columns, step.categories, strict=True)
            }
            return spec_with(meta.features, changes)

        return Recorded(step, spec)

    return fitted(
        "process.one_hot",
        lambda: _Fit(chosen, max_categories, min_count, tokens),
        make_apply,
    )
