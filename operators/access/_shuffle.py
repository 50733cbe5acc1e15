"""access.shuffle: a seeded shuffle buffer, with a new order every epoch."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from rxpipe.batch import Batch, Split
from rxpipe.context import current_epoch, current_run
from rxpipe.errors import ConfigError
from rxpipe.flow import transform
from rxpipe.registry import plugin
from rxpipe.stage import Operator


class _ShuffleBuffer:
    """Hold up to ``2 * buffer_size`` samples per split; shuffle and release half at a time.

    Each sample is copied a bounded number of times on average (amortised O(1)), unlike a
    naive buffer that re-concatenates everything on every batch.
    """

    def __init__(self, buffer_size: int, rng: np.random.Generator) -> None:
        self._buffer_size = buffer_size
        self._rng = rng
        self._held: dict[Split, list[Batch]] = {}
        self._count: dict[Split, int] = {}
        self._chunk = 1

    def _release(self, split: Split, keep: int) -> list[Batch]:
        merged = Batch.concat(self._held[split])
        merged = merged.select(self._rng.permutation(merged.size))
        cut = merged.size - keep
        out = [
            merged.select(slice(i, min(i + self._chunk, cut))) for i in range(0, cut, self._chunk)
        ]
        self._held[split] = [merged.select(slice(cut, None))] if keep else []
        self._count[split] = keep
        return out

    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        self._chunk = max(self._chunk, batch.size)
        self._held.setdefault(batch.split, []).append(batch)
        count = self._count[batch.split] = self._count.get(batch.split, 0) + batch.size
        if count < 2 * self._buffer_size:
            return ()
        return self._release(batch.split, self._buffer_size)

    def on_end(self) -> Iterable[Batch]:
        return [
            b for split in list(self._held) if self._held[split] for b in self._release(split, 0)
        ]


@plugin("access.shuffle")
def shuffle(buffer_size: int = 10_000, seed: int | None = None) -> Operator[Batch, Batch]:
    """Shuffle samples within each split through a buffer of ``buffer_size`` samples.

    The order is drawn from (seed, epoch): reproducible for a given seed, different in
    every epoch. A buffer at least as large as the data set gives a uniform shuffle;
    smaller buffers bound memory (about two buffers of samples per split) at the cost
    of a more local shuffle. Output batches have the size of the largest input batch.

    Args:
        buffer_size: samples held per split before releasing shuffled ones.
        seed: random seed; defaults to the run's seed.

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> source = from_arrays(np.arange(6)[:, None], batch_size=2)
        >>> out = collect(source.pipe(shuffle(buffer_size=100, seed=0)))
        >>> sorted(int(i) for b in out for i in b.ids)
        [0, 1, 2, 3, 4, 5]
    """
    if buffer_size < 1:
        raise ConfigError(f"buffer_size: expected an int >= 1. Received: {buffer_size!r}")

    def make() -> _ShuffleBuffer:
        base = current_run().seed if seed is None else seed
        return _ShuffleBuffer(buffer_size, np.random.default_rng([base, current_epoch()]))

    return transform("access.shuffle", make)
