"""process.clip: limit feature values to [low, high], recorded for serving."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from rxpipe import Batch, ConfigError, plugin
from rxpipe.flow import map_batches
from rxpipe.stage import Operator


@attrs.frozen
class Clip:
    """A preprocessor: numpy for the data pipeline, TensorFlow ops for the serving signature."""

    low: float
    high: float
    name: str = "clip"

    def apply(self, features: Any) -> Any:
        return np.clip(features, self.low, self.high)

    def apply_tf(self, features: Any) -> Any:
        import tensorflow as tf

        return tf.clip_by_value(features, self.low, self.high)

    def to_config(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high}


@plugin("process.clip")
def clip(low: float = 0.0, high: float = 1.0) -> Operator[Batch, Batch]:
    """Clip feature values to [low, high]; the exported model clips raw input too.

    Args:
        low: the smallest value kept.
        high: the largest value kept.

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> [b] = collect(from_arrays(np.array([[-1.0], [0.5], [2.0]])).pipe(clip()))
        >>> b.features.ravel().tolist()
        [0.0, 0.5, 1.0]
    """
    if not low < high:
        raise ConfigError(
            f"expected low < high. Received: low={low!r}, high={high!r}", "process.clip.high"
        )
    step = Clip(low, high)
    seen: dict[int, Any] = {}

    def apply(batch: Batch) -> Batch:
        meta = seen.get(id(batch.metadata))
        if meta is None:
            spec = batch.metadata.feature_spec
            meta = seen[id(batch.metadata)] = batch.metadata.with_preprocessor(step, spec)
        return batch.evolve(features=step.apply(batch.features), metadata=meta)

    return map_batches("process.clip", apply)
