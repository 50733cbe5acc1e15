"""One metadata object per source, across passes (so downstream caches stay small)."""

from __future__ import annotations

import threading

from rxpipe.batch import DatasetMetadata


class MetadataMemo:
    """Returns the metadata of an earlier pass when the new one equals it.

    Sources rebuild their metadata on every pass (a folder's classes may have changed);
    stages downstream key their per-metadata state by identity, so equal metadata should
    be the same object.

    Example:
        >>> from rxpipe.batch import FeatureSpec
        >>> memo = MetadataMemo()
        >>> a = memo(DatasetMetadata("x", FeatureSpec((1,), "float32")))
        >>> memo(DatasetMetadata("x", FeatureSpec((1,), "float32"))) is a
        True
    """

    def __init__(self) -> None:
        self._last: DatasetMetadata | None = None
        self._lock = threading.Lock()

    def __call__(self, meta: DatasetMetadata) -> DatasetMetadata:
        with self._lock:
            if self._last is not None and self._last == meta:
                return self._last
            self._last = meta
            return meta
