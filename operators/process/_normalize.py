"""process.normalize: rescale feature values, recorded for serving."""

from __future__ import annotations

from typing import Any

import numpy as np

from rxpipe.batch import Batch, DatasetMetadata, FeatureSpec
from rxpipe.errors import BatchError, ConfigError
from rxpipe.flow import OnError, map_batches
from rxpipe.preprocessing import Rescale
from rxpipe.registry import plugin
from rxpipe.stage import Operator


def _plan(
    meta: DatasetMetadata, scale: float | None, offset: float
) -> tuple[Rescale, DatasetMetadata]:
    spec = meta.feature_spec
    if scale is None:
        if spec.value_range is None:
            raise BatchError(
                f"process.normalize: expected the data set {meta.name!r} to declare a value "
                "range for its features, or an explicit scale. Received: no value_range; "
                "pass scale= (and offset=)"
            )
        low, high = spec.value_range
        scale, offset = 1.0 / (high - low), -low / (high - low)
    step = Rescale(scale=scale, offset=offset)
    value_range = None
    if spec.value_range is not None:
        ends = sorted(v * scale + offset for v in spec.value_range)
        value_range = (ends[0], ends[1])
    new_spec = FeatureSpec(spec.shape, step.dtype, value_range, spec.columns)
    return step, meta.with_preprocessor(step, new_spec)


@plugin("process.normalize")
def normalize(
    scale: float | None = None,
    offset: float = 0.0,
    on_error: OnError = "raise",
    max_skipped: int | None = None,
    workers: int = 1,
) -> Operator[Batch, Batch]:
    """Map features to ``x * scale + offset`` as float32; by default from their range to [0, 1].

    The transform is recorded in the metadata, so the exported model applies it to raw
    input by itself.

    Args:
        scale: multiplier; default ``1 / (high - low)`` from the features' value range.
        offset: added after scaling; default ``-low / (high - low)`` with the range.
        on_error: ``"raise"`` fails the run on a batch that cannot be normalized;
            ``"skip"`` skips its bad samples (counted, with ids and reasons, in the run
            result and events).
        max_skipped: with ``"skip"``, fail once a pass skipped more samples than this.
        workers: normalize this many batches at once on threads (numpy releases the GIL);
            output keeps the input order.

    Example:
        >>> from rxpipe.testing import collect
        >>> import reactivex
        >>> from rxpipe.operators import collect as sources
        >>> first = collect(reactivex.empty().pipe(sources.digits(), normalize()))[0]
        >>> float(first.features.max()) <= 1.0, first.features.dtype.name
        (True, 'float32')
    """
    if scale is not None and (not np.isfinite(scale) or scale == 0):
        raise ConfigError(
            f"expected a finite, non-zero number. Received: {scale!r}", "process.normalize.scale"
        )
    if not np.isfinite(offset):
        raise ConfigError(
            f"expected a finite number. Received: {offset!r}", "process.normalize.offset"
        )
    plans: dict[int, tuple[DatasetMetadata, Rescale, DatasetMetadata]] = {}

    def apply(batch: Batch) -> Batch:
        key = id(batch.metadata)
        cached = plans.get(key)
        if cached is None or cached[0] is not batch.metadata:
            step, meta = _plan(batch.metadata, scale, offset)
            cached = plans[key] = (batch.metadata, step, meta)
        _, step, meta = cached
        features: Any = batch.features
        return batch.evolve(features=step.apply(features), metadata=meta)

    return map_batches(
        "process.normalize", apply, on_error=on_error, max_skipped=max_skipped, workers=workers
    )
