"""access.shard: keep one of ``count`` disjoint shards of the samples."""

from __future__ import annotations

from collections.abc import Iterable

from rxpipe.batch import Batch
from rxpipe.config import check_seed
from rxpipe.context import current_run
from rxpipe.errors import ConfigError
from rxpipe.flow import current_tally, transform
from rxpipe.registry import plugin
from rxpipe.sharding import shard_mask
from rxpipe.stage import Operator

from .._checks import non_negative_int, positive_int


class _Sharder:
    def __init__(self, index: int, count: int, seed: int) -> None:
        self._index = index
        self._count = count
        self._seed = seed
        self._tally = current_tally("access.shard")

    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        mask = shard_mask(batch.ids, self._index, self._count, self._seed)
        kept = int(mask.sum())
        if kept < batch.size:
            self._tally.drop(batch.size - kept, f"other shards than {self._index}/{self._count}")
        if kept == batch.size:
            return (batch,)
        return (batch.select(mask),) if kept else ()

    def on_end(self) -> Iterable[Batch]:
        return ()


@plugin("access.shard")
def shard(index: int, count: int, seed: int | None = None) -> Operator[Batch, Batch]:
    """Keep shard ``index`` of ``count``: disjoint, together covering every sample.

    A sample's shard depends only on its id and the seed (not on arrival order), so
    ``count`` workers running ``shard(i, count)`` for i in 0..count-1 read disjoint parts
    of the data on every pass, whatever stages come before. The other samples are
    counted as dropped. Shards hold about ``1/count`` of the samples each.

    Args:
        index: which shard to keep, from 0.
        count: how many shards there are.
        seed: hash seed; defaults to the run's seed.

    Example:
        >>> import numpy as np
        >>> from rxpipe.testing import collect, from_arrays
        >>> source = from_arrays(np.zeros((100, 1)), batch_size=10)
        >>> halves = [collect(source.pipe(shard(i, 2, seed=0))) for i in (0, 1)]
        >>> sorted(int(i) for part in halves for b in part for i in b.ids) == list(range(100))
        True
    """
    if seed is not None:
        seed = check_seed(seed, "access.shard.seed")
    positive_int("access.shard", "count", count)
    non_negative_int("access.shard", "index", index)
    if index >= count:
        raise ConfigError(
            f"expected an index below count ({count}). Received: {index}", "access.shard.index"
        )

    def make() -> _Sharder:
        return _Sharder(index, count, current_run().seed if seed is None else seed)

    return transform("access.shard", make)
