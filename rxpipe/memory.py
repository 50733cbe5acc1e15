"""Arrays in memory TensorFlow can use without a copy.

TensorFlow's CPU kernels assume buffers aligned to Eigen's widest vector (64 bytes with
AVX-512); NumPy aligns to 16. The training feed hands aligned, contiguous arrays to
TensorFlow as they are (DLPack) and copies any other array first, so the stages that make the
big arrays of a batch (``process.normalize``, ``access.shuffle``) allocate them aligned.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["ALIGNMENT", "SHAREABLE_KINDS", "aligned_copy", "aligned_empty", "is_aligned"]

ALIGNMENT = 64
"""Bytes. A tensor on a less aligned buffer aborts the process in the first kernel reading it."""

SHAREABLE_KINDS = "biuf"
"""NumPy dtype kinds TensorFlow can share through DLPack: bool, integers, floats."""


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
    """An uninitialised C-contiguous array whose data starts on an :data:`ALIGNMENT` boundary.

    Example:
        >>> aligned_empty((3, 5), "float32").ctypes.data % ALIGNMENT
        0
    """
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    raw = np.empty(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    out: np.ndarray[Any, Any] = raw[start : start + size].view(dtype).reshape(shape)
    return out


def aligned_copy(array: np.ndarray[Any, Any], dtype: Any = None) -> np.ndarray[Any, Any]:
    """A C-contiguous, aligned copy of ``array`` (cast to ``dtype`` if given).

    Example:
        >>> copy = aligned_copy(np.arange(10, dtype="int8")[1:])
        >>> is_aligned(copy), copy.tolist()[:3]
        (True, [1, 2, 3])
    """
    out = aligned_empty(array.shape, array.dtype if dtype is None else dtype)
    out[...] = array
    return out


def is_aligned(array: np.ndarray[Any, Any]) -> bool:
    """Whether ``array`` is C-contiguous and starts on an :data:`ALIGNMENT` boundary."""
    return bool(array.flags.c_contiguous) and array.ctypes.data % ALIGNMENT == 0
