"""collect.digits: scikit-learn's bundled handwritten digits (nothing is downloaded)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import reactivex

from rxpipe.batch import Batch, DatasetMetadata, FeatureSpec
from rxpipe.errors import ConfigError
from rxpipe.flow import generate
from rxpipe.registry import plugin
from rxpipe.stage import Operator

DIGITS_METADATA = DatasetMetadata(
    name="digits",
    features=FeatureSpec((8, 8, 1), "uint8", (0.0, 16.0)),
    label_names=tuple(str(d) for d in range(10)),
    split_sizes={"unsplit": 1797},
)


@functools.cache
def _load() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = data.images.astype(np.uint8)[..., np.newaxis]
    return images, data.target.astype(np.int64)


@plugin("collect.digits")
def digits(chunk_size: int = 256, limit: int | None = None) -> Operator[Batch, Batch]:
    """1,797 real 8×8 handwritten digits (0–16 gray levels), labels 0–9, from scikit-learn.

    Emits uint8 images of shape (8, 8, 1) in chunks; sample ids are the row numbers.

    Args:
        chunk_size: samples per emitted batch.
        limit: emit only the first ``limit`` samples (for quick runs).

    Example:
        >>> from rxpipe.testing import collect
        >>> batches = collect(reactivex.empty().pipe(digits(chunk_size=1000)))
        >>> [b.size for b in batches], batches[0].features.shape[1:]
        ([1000, 797], (8, 8, 1))
    """
    if chunk_size < 1:
        raise ConfigError(f"chunk_size: expected an int >= 1. Received: {chunk_size!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit: expected None or an int >= 1. Received: {limit!r}")

    def batches() -> Iterator[Batch]:
        images, labels = _load()
        n = len(images) if limit is None else min(limit, len(images))
        ids = np.arange(n, dtype=np.int64)
        for start in range(0, n, chunk_size):
            part = slice(start, min(start + chunk_size, n))
            yield Batch(images[part], labels[part], ids[part], DIGITS_METADATA)

    own = generate(batches)
    return lambda source: reactivex.concat(source, own)
