"""access.split: assign every sample to train / validation / test, deterministically."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from rxpipe.batch import Batch, Split
from rxpipe.context import current_run
from rxpipe.errors import ConfigError
from rxpipe.flow import transform
from rxpipe.registry import plugin
from rxpipe.stage import Operator

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """splitmix64: a fast, well-spread 64-bit hash, vectorised."""
    z = values.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
    return z ^ (z >> np.uint64(31))


def unit_hash(ids: np.ndarray[Any, Any], seed: int) -> np.ndarray[Any, Any]:
    """Map sample ids to floats in [0, 1), the same for the same (id, seed) everywhere."""
    if np.issubdtype(ids.dtype, np.integer):
        keys = ids.astype(np.uint64)
    else:
        keys = np.array(
            [int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest()) for i in ids],
            dtype=np.uint64,
        )
    with np.errstate(over="ignore"):
        mixed = _mix(keys ^ _mix(np.array([seed], dtype=np.uint64)))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class _Splitter:
    def __init__(self, bounds: tuple[float, float], seed: int) -> None:
        self._bounds = bounds
        self._seed = seed

    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        if batch.split is not Split.UNSPLIT:
            return (batch,)
        u = unit_hash(batch.ids, self._seed)
        which = np.searchsorted(np.asarray(self._bounds), u, side="right")
        out = []
        for index, split in enumerate((Split.TRAIN, Split.VALIDATION, Split.TEST)):
            mask = which == index
            if mask.all():
                return (batch.evolve(split=split),)
            if mask.any():
                out.append(batch.select(mask).evolve(split=split))
        return out

    def on_end(self) -> Iterable[Batch]:
        return ()


@plugin("access.split")
def split(
    train: float = 0.8, validation: float = 0.1, test: float = 0.1, seed: int | None = None
) -> Operator[Batch, Batch]:
    """Split unsplit samples into train, validation and test by a seeded hash of their id.

    Streaming and deterministic: a sample's split depends only on its id and the seed,
    never on arrival order, so every pass (every epoch) and every worker agrees, and
    no sample moves between splits. Split sizes follow the ratios up to sampling noise
    (±1–2 % on a thousand samples). Batches that already have a split pass unchanged.

    Args:
        train: share of samples for training.
        validation: share for validation (may be 0).
        test: share for the final evaluation (may be 0).
        seed: hash seed; defaults to the run's seed.

    Raises:
        ConfigError: if a ratio is negative or they do not sum to 1.

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> source = from_arrays(np.zeros((1000, 1)), np.zeros(1000, "int64"), batch_size=100)
        >>> sizes = {}
        >>> for b in collect(source.pipe(split(0.5, 0.25, 0.25, seed=1))):
        ...     sizes[b.split.value] = sizes.get(b.split.value, 0) + b.size
        >>> sorted(sizes), sum(sizes.values())
        (['test', 'train', 'validation'], 1000)
    """
    ratios = {"train": train, "validation": validation, "test": test}
    for name, ratio in ratios.items():
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"{name}: expected a ratio between 0 and 1. Received: {ratio!r}")
    if abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise ConfigError(
            f"train + validation + test: expected a sum of 1. Received: {sum(ratios.values())!r} "
            f"({train} + {validation} + {test})"
        )
    bounds = (train, train + validation)

    def make() -> _Splitter:
        return _Splitter(bounds, current_run().seed if seed is None else seed)

    return transform("access.split", make)
