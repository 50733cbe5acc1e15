"""Apply a preprocessor to batches and record it in their metadata, for serving."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import attrs
import numpy as np

from rxpipe.batch import Batch, DatasetMetadata, Features, FeatureSpec
from rxpipe.preprocessing import Preprocessor

__all__ = ["Recorded", "layout_kept", "spec_of"]

Spec = FeatureSpec | Mapping[str, FeatureSpec]


def spec_of(features: Features, value_range: tuple[float, float] | None = None) -> Spec:
    """The feature spec of a batch's features (``value_range`` for a single array).

    Example:
        >>> spec_of(np.zeros((4, 8, 8, 1), "uint8"), (0.0, 255.0))
        FeatureSpec(shape=(8, 8, 1), dtype='uint8', value_range=(0.0, 255.0), columns=None)
    """
    if isinstance(features, np.ndarray):
        return FeatureSpec(features.shape[1:], features.dtype.name, value_range)
    return {name: FeatureSpec(a.shape[1:], a.dtype.name) for name, a in features.items()}


def layout_kept(meta: DatasetMetadata, features: Features) -> Spec:
    """The spec of ``features``, the output of a step that keeps its input's layout (each
    value where it was: scaled, filled): a vector keeps its ``columns`` names.

    Example:
        >>> named = FeatureSpec((2,), "float64", columns=["age", "bmi"])
        >>> layout_kept(DatasetMetadata("t", named), np.zeros((1, 2), "float32")).columns
        ('age', 'bmi')
    """
    spec = spec_of(features)
    before = meta.features

    def kept(new: FeatureSpec, old: FeatureSpec | None) -> FeatureSpec:
        if old is None or old.columns is None or old.shape != new.shape:
            return new
        return attrs.evolve(new, columns=old.columns)

    if isinstance(spec, FeatureSpec):
        return kept(spec, before if isinstance(before, FeatureSpec) else None)
    olds = before if isinstance(before, Mapping) else {}
    return {name: kept(new, olds.get(name)) for name, new in spec.items()}


class Recorded:
    """``step`` applied to each batch's features, recorded once per input metadata.

    Every batch that shares an input metadata object gets the same output metadata
    object, so downstream stages see one data set.

    Args:
        step: the preprocessor.
        spec: the output feature spec, from the input metadata and the first output.
    """

    def __init__(
        self,
        step: Preprocessor,
        spec: Callable[[DatasetMetadata, Features], Spec] | None = None,
    ) -> None:
        self.step = step
        self._spec = spec or (lambda _, features: spec_of(features))
        self._seen: dict[int, tuple[DatasetMetadata, DatasetMetadata]] = {}
        self._lock = threading.Lock()

    def metadata(self, meta: DatasetMetadata, features: Features) -> DatasetMetadata:
        """The output metadata for input ``meta`` (computed on first sight)."""
        with self._lock:
            known = self._seen.get(id(meta))
            if known is None or known[0] is not meta:
                known = (meta, meta.with_preprocessor(self.step, self._spec(meta, features)))
                self._seen[id(meta)] = known
            return known[1]

    def __call__(self, batch: Batch) -> Batch:
        features = self.step.apply(batch.features)
        return batch.evolve(features=features, metadata=self.metadata(batch.metadata, features))
