"""``access`` plugins: split, shuffle, batch, cache, buffer, subset (Pipcook's dataAccess)."""

from ._batch import batch
from ._buffer import buffer, prefetch
from ._cache import cache
from ._shard import shard
from ._shuffle import shuffle
from ._split import split
from ._take import skip, take
from ._unbatch import unbatch

__all__ = [
    "batch",
    "buffer",
    "cache",
    "prefetch",
    "shard",
    "shuffle",
    "skip",
    "split",
    "take",
    "unbatch",
]
