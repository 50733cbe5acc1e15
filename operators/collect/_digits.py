"""collect.digits: scikit-learn's bundled handwritten digits (nothing is downloaded)."""

from __future__ import annotations

import functools

import numpy as np

from rxpipe.batch import Batch, DatasetMetadata, FeatureSpec
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from ._bundled import Table, chunked_source

DIGITS_METADATA = DatasetMetadata(
    name="digits",
    features=FeatureSpec((8, 8, 1), "uint8", (0.0, 16.0)),
    label_names=tuple(str(d) for d in range(10)),
    split_sizes={"unsplit": 1797},
)


@functools.cache
def _load() -> Table:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = data.images.astype(np.uint8)[..., np.newaxis]
    return images, data.target.astype(np.int64), DIGITS_METADATA


@plugin("collect.digits")
def digits(chunk_size: int = 256, limit: int | None = None) -> Operator[Batch, Batch]:
    """1,797 real 8×8 handwritten digits (0–16 gray levels), labels 0–9, from scikit-learn.

    Emits uint8 images of shape (8, 8, 1) in chunks; sample ids are the row numbers.

    Args:
        chunk_size: samples per emitted batch.
        limit: emit only the first ``limit`` samples (for quick runs).

    Example:
        >>> import reactivex
        >>> from rxpipe.testing import collect
        >>> batches = collect(reactivex.empty().pipe(digits(chunk_size=1000)))
        >>> [b.size for b in batches], batches[0].features.shape[1:]
        ([1000, 797], (8, 8, 1))
    """
    return chunked_source("collect.digits", _load, chunk_size, limit)
