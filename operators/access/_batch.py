"""access.batch: re-cut the stream into batches of a fixed size, per split."""

from __future__ import annotations

from rxpipe.batch import Batch
from rxpipe.errors import ConfigError
from rxpipe.flow import transform
from rxpipe.flow.rebatch import Rebatcher
from rxpipe.registry import plugin
from rxpipe.stage import Operator


@plugin("access.batch")
def batch(size: int = 32, drop_remainder: bool = False) -> Operator[Batch, Batch]:
    """Re-cut each split's samples into batches of ``size`` (the last may be smaller).

    Args:
        size: samples per batch.
        drop_remainder: drop each split's last, partial batch.

    Example:
        >>> import numpy as np
        >>> from rxpipe.testing import collect, from_arrays
        >>> source = from_arrays(np.zeros((10, 1)), batch_size=3)
        >>> [b.size for b in collect(source.pipe(batch(4)))]
        [4, 4, 2]
    """
    if size < 1:
        raise ConfigError(f"expected an int >= 1. Received: {size!r}", "access.batch.size")
    return transform("access.batch", lambda: Rebatcher(size, drop_remainder, "access.batch"))
