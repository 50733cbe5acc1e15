"""Deterministic assignment of samples to buckets (splits, shards) by a seeded hash of their id."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

__all__ = ["shard_mask", "unit_hash"]

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
    """Map sample ids to floats in [0, 1), the same for the same (id, seed) everywhere.

    Integer ids are hashed vectorised; other ids (file names, ...) through BLAKE2b.

    Example:
        >>> u = unit_hash(np.arange(4), seed=0)
        >>> bool(((u >= 0) & (u < 1)).all()), bool((u == unit_hash(np.arange(4), 0)).all())
        (True, True)
    """
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


def shard_mask(
    ids: np.ndarray[Any, Any], index: int, count: int, seed: int
) -> np.ndarray[Any, Any]:
    """Which of ``ids`` belong to shard ``index`` of ``count`` (disjoint, covering all ids).

    Example:
        >>> ids = np.arange(100)
        >>> masks = [shard_mask(ids, i, 3, seed=1) for i in range(3)]
        >>> int(sum(m.sum() for m in masks)), bool((masks[0] & masks[1]).any())
        (100, False)
    """
    buckets: np.ndarray[Any, Any] = np.floor(unit_hash(ids, seed + 0x5EED) * count)
    mask: np.ndarray[Any, Any] = buckets.astype(np.int64) == index
    return mask
