"""Tests of rxpipe.memory: aligned arrays for zero-copy tensors."""

from __future__ import annotations

import numpy as np
import pytest

from rxpipe.memory import ALIGNMENT, aligned_copy, aligned_empty, is_aligned
from rxpipe.preprocessing import Rescale


@pytest.mark.parametrize("dtype", ["uint8", "int64", "float16", "float32", "bool"])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (128, 28, 28, 1)])
def test_aligned_empty_is_aligned_for_every_shape_and_dtype(
    shape: tuple[int, ...], dtype: str
) -> None:
    """Whatever NumPy's allocator returns, the data starts on the boundary."""
    arrays = [aligned_empty(shape, dtype) for _ in range(20)]
    assert all(is_aligned(a) for a in arrays)
    assert all(a.shape == shape and a.dtype == np.dtype(dtype) for a in arrays)


def test_aligned_copy_is_aligned_contiguous_and_equal() -> None:
    """The copy starts on the alignment boundary whatever the source."""
    source = np.arange(30, dtype="int16").reshape(5, 6).T
    copy = aligned_copy(source)
    assert copy.ctypes.data % ALIGNMENT == 0
    assert copy.flags.c_contiguous
    np.testing.assert_array_equal(copy, source)


def test_is_aligned_rejects_strided_and_offset_views() -> None:
    """A strided view, or one starting mid-line, is not shareable."""
    base = aligned_empty((8, 16), "float32")
    assert is_aligned(base)
    assert not is_aligned(base[:, ::2])
    assert not is_aligned(base[:, 1:])


def test_rescale_output_is_aligned_and_exact() -> None:
    """process.normalize's arithmetic is unchanged and its output is shareable."""
    raw = np.arange(256, dtype="uint8").reshape(16, 16)
    out = Rescale(scale=1 / 255, offset=-0.5).apply(raw)
    assert is_aligned(out)
    expected = raw.astype("float32") * np.float32(1 / 255) + np.float32(-0.5)
    np.testing.assert_array_equal(out, expected)
