"""access.shuffle: a seeded shuffle buffer, with a new order every epoch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from rxpipe.batch import Batch, Split
from rxpipe.config import check_seed
from rxpipe.context import current_epoch, current_run
from rxpipe.errors import BatchError, ConfigError
from rxpipe.flow import transform
from rxpipe.memory import SHAREABLE_KINDS, aligned_empty
from rxpipe.registry import plugin
from rxpipe.stage import Operator

Arrays = dict[str, np.ndarray[Any, Any]]


def _arrays(batch: Batch) -> Arrays:
    """A batch's arrays by name: ``features`` (or ``features/<name>``), ``labels``, ``ids``."""
    if isinstance(batch.features, np.ndarray):
        arrays = {"features": batch.features}
    else:
        arrays = {f"features/{k}": v for k, v in batch.features.items()}
    if batch.labels is not None:
        arrays["labels"] = batch.labels
    arrays["ids"] = batch.ids
    return arrays


def _take(array: np.ndarray[Any, Any], rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if array.dtype.kind not in SHAREABLE_KINDS:
        return np.take(array, rows, axis=0)
    # aligned, so the training feed can share it; rows are always in range, and
    # mode="raise" would make take() buffer its output (about 30x slower)
    return np.take(
        array,
        rows,
        axis=0,
        out=aligned_empty((len(rows), *array.shape[1:]), array.dtype),
        mode="clip",
    )


class _Pool:
    """The shuffle buffer of one split: arrays owned by the shuffle, reused for the whole pass.

    It fills with whole batches until it holds at least ``capacity`` samples. The arrays
    grow geometrically as it fills, so a small data set never allocates a large buffer.
    """

    def __init__(self, first: Batch, capacity: int) -> None:
        self.metadata, self.split = first.metadata, first.split
        self.capacity = capacity
        self.count = 0
        rows = min(capacity, max(2 * first.size, 1))
        self.arrays = {
            name: np.empty((rows, *a.shape[1:]), a.dtype) for name, a in _arrays(first).items()
        }

    def _check(self, incoming: Arrays, batch: Batch) -> None:
        for name in self.arrays.keys() | incoming.keys():
            held, new = self.arrays.get(name), incoming.get(name)
            if held is not None and new is not None and held.dtype.kind == new.dtype.kind in "US":
                # strings (text, file-path ids) vary in length: widen the buffer's dtype
                held = self.arrays[name] = held.astype(np.result_type(held, new))
            if (
                held is None
                or new is None
                or held.shape[1:] != new.shape[1:]
                or not np.can_cast(new.dtype, held.dtype, "safe")
            ):
                expected = "none" if held is None else f"{held.dtype} {held.shape[1:]}"
                got = "none" if new is None else f"{new.dtype} {new.shape[1:]}"
                raise BatchError(
                    f"{name}: expected every batch of split {batch.split.value!r} to match "
                    f"the first one, {expected} per sample. Received: {got}"
                )

    def _grow(self, rows: int) -> None:
        size = len(next(iter(self.arrays.values())))
        if rows <= size:
            return
        size = max(rows, min(2 * size, self.capacity))
        for name, old in self.arrays.items():
            grown = np.empty((size, *old.shape[1:]), old.dtype)
            grown[: self.count] = old[: self.count]
            self.arrays[name] = grown

    def exchange(self, batch: Batch, rng: np.random.Generator) -> list[Batch]:
        """Hold ``batch`` while the buffer fills; once full, swap its samples for random ones."""
        incoming = _arrays(batch)
        self._check(incoming, batch)
        if self.count < self.capacity:
            # Whole batches only, so an output batch has its input batch's size unless
            # that is larger than the fill (access.batch downstream can then slice).
            self._grow(self.count + batch.size)
            for name, array in incoming.items():
                self.arrays[name][self.count : self.count + batch.size] = array
            self.count += batch.size
            return []
        out = []
        for start in range(0, batch.size, self.count):
            stop = min(start + self.count, batch.size)
            slots = rng.choice(self.count, size=stop - start, replace=False)
            out.append(self.gather(slots))
            for name, array in incoming.items():
                self.arrays[name][slots] = array[start:stop]
        return out

    def gather(self, rows: np.ndarray[Any, Any]) -> Batch:
        """A new batch (copied rows) of the samples at ``rows``."""
        picked = {name: _take(a, rows) for name, a in self.arrays.items()}
        features: Any = picked.pop("features", None)
        if features is None:
            features = {k.removeprefix("features/"): v for k, v in picked.items() if "/" in k}
        return Batch(features, picked.get("labels"), picked["ids"], self.metadata, self.split)


class _ShuffleBuffer:
    """A buffer of ``buffer_size`` samples per split, as in ``tf.data``'s shuffle.

    Until the buffer is full, batches are held; after that each new sample takes the
    place of one drawn at random, which is emitted. At the end the buffer is emitted in
    random order. Every sample is copied twice (in and out); the buffer's arrays are
    allocated once per pass, growing geometrically while they fill.
    """

    def __init__(self, buffer_size: int, rng: np.random.Generator) -> None:
        self._buffer_size = buffer_size
        self._rng = rng
        self._pools: dict[Split, _Pool] = {}
        self._chunk = 1

    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        self._chunk = max(self._chunk, batch.size)
        pool = self._pools.get(batch.split)
        if pool is None:
            pool = self._pools[batch.split] = _Pool(batch, self._buffer_size)
        return pool.exchange(batch, self._rng)

    def on_end(self) -> Iterable[Batch]:
        out = []
        for pool in self._pools.values():
            order = self._rng.permutation(pool.count)
            out += [
                pool.gather(order[i : i + self._chunk]) for i in range(0, pool.count, self._chunk)
            ]
        return out


@plugin("access.shuffle")
def shuffle(buffer_size: int = 10_000, seed: int | None = None) -> Operator[Batch, Batch]:
    """Shuffle samples within each split through a buffer of ``buffer_size`` samples.

    The order is drawn from (seed, epoch): reproducible for a given seed, different in
    every epoch. As in ``tf.data``, each sample arriving at a full buffer replaces a random
    held one, which is emitted; a buffer at least as large as the data set gives a uniform
    shuffle, a smaller one bounds memory (``buffer_size`` samples per split, rounded up to
    whole input batches) at the cost of a more local shuffle. Batch sizes are not kept
    exactly: an input batch at most as large as the buffer's fill (``buffer_size``
    rounded up to whole input batches) comes out as one batch of its size, but a larger
    one comes out cut into batches of that fill (with ``buffer_size=5`` and input
    batches of 7 then 11, a split's buffer holds 7, and the 11 leave as 7 and 4); the
    batches emptying the buffer at the end have the size of the largest input batch
    (the last one fewer). Follow with ``access.batch`` for batches of one size. Every
    batch of a split must have the first batch's per-sample shapes, and dtypes that
    cast safely to its dtypes.

    Args:
        buffer_size: samples held per split (rounded up to whole input batches).
        seed: random seed; defaults to the run's seed.

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> source = from_arrays(np.arange(6)[:, None], batch_size=2)
        >>> out = collect(source.pipe(shuffle(buffer_size=100, seed=0)))
        >>> sorted(int(i) for b in out for i in b.ids)
        [0, 1, 2, 3, 4, 5]
    """
    if seed is not None:
        seed = check_seed(seed, "access.shuffle.seed")
    if buffer_size < 1:
        raise ConfigError(f"buffer_size: expected an int >= 1. Received: {buffer_size!r}")

    def make() -> _ShuffleBuffer:
        base = current_run().seed if seed is None else seed
        return _ShuffleBuffer(buffer_size, np.random.default_rng([base, current_epoch()]))

    return transform("access.shuffle", make)
