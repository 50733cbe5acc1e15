"""access.unbatch: one batch per sample."""

from __future__ import annotations

from collections.abc import Iterable

from rxpipe.batch import Batch
from rxpipe.flow import transform
from rxpipe.registry import plugin
from rxpipe.stage import Operator


class _Unbatcher:
    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        if batch.size == 1:
            return (batch,)
        return [batch.select(slice(i, i + 1)) for i in range(batch.size)]

    def on_end(self) -> Iterable[Batch]:
        return ()


@plugin("access.unbatch")
def unbatch() -> Operator[Batch, Batch]:
    """Split every batch into batches of one sample, in order.

    Example:
        >>> import numpy as np
        >>> from rxpipe.testing import collect, from_arrays
        >>> source = from_arrays(np.zeros((3, 1)), batch_size=2)
        >>> [b.ids.tolist() for b in collect(source.pipe(unbatch()))]
        [[0], [1], [2]]
    """
    state = _Unbatcher()
    return transform("access.unbatch", lambda: state)
