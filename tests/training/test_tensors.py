"""Tests of rxpipe.training.tensors: zero-copy where safe, a correct copy everywhere else."""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from rxpipe.memory import ALIGNMENT, aligned_copy
from rxpipe.training.tensors import to_tensor


def at_offset(values: np.ndarray[Any, Any], offset: int) -> np.ndarray[Any, Any]:
    """``values`` copied to memory starting ``offset`` bytes after an aligned address."""
    raw = np.zeros(values.nbytes + 2 * ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT + offset
    out = raw[start : start + values.nbytes].view(values.dtype).reshape(values.shape)
    out[...] = values
    return out


def test_aligned_arrays_are_shared_not_copied() -> None:
    """An aligned, contiguous array reaches TensorFlow without a copy."""
    array = at_offset(np.arange(12, dtype="float32").reshape(3, 4), 0)
    tensor = to_tensor(array)
    array[0, 0] = 99.0  # only to observe the sharing: stages never do this
    assert float(tensor[0, 0]) == 99.0


@pytest.mark.parametrize("offset", [4, 8, 16, 32])
def test_unaligned_arrays_are_copied_and_usable_by_kernels(offset: int) -> None:
    """An unaligned buffer would abort TensorFlow's kernels: it is copied first."""
    values = np.arange(128 * 10, dtype="float32").reshape(128, 10)
    tensor = to_tensor(at_offset(values, offset))
    assert float(tf.reduce_sum(tensor)) == float(values.sum())
    assert float(tf.reduce_sum(tf.matmul(tensor, tf.transpose(tensor)))) > 0


@pytest.mark.parametrize(
    ("array", "dtype"),
    [
        (np.arange(20, dtype="float64").reshape(4, 5)[:, ::2], tf.float64),  # strided view
        (np.arange(6, dtype="uint8"), tf.uint8),
        (np.array([True, False]), tf.bool),
        (np.arange(4, dtype="float16"), tf.float16),
        (np.arange(6, dtype=">f4"), tf.float32),  # big-endian, as some file formats store it
        (np.arange(6, dtype=">i8").reshape(2, 3), tf.int64),
        (np.zeros((0, 3), "int64"), tf.int64),
        (np.array(["a", "bc"]), tf.string),
    ],
)
def test_values_and_dtypes_are_kept(array: np.ndarray[Any, Any], dtype: tf.DType) -> None:
    """Views, small integer types, booleans, big-endian data, empty batches and strings
    all convert."""
    tensor = to_tensor(array)
    assert tensor.dtype == dtype
    assert tensor.shape == array.shape
    if dtype != tf.string:
        assert tf.size(tf.reshape(tensor, [-1])) == array.size  # a kernel can read it
    expected = array.astype(object) if dtype == tf.string else array
    got = tensor.numpy().astype(str).astype(object) if dtype == tf.string else tensor.numpy()
    np.testing.assert_array_equal(got, expected)


def test_read_only_arrays_are_copied() -> None:
    """DLPack's legacy capsule cannot export read-only memory: such arrays are copied."""
    array = at_offset(np.arange(8, dtype="int32"), 0)
    array.flags.writeable = False
    np.testing.assert_array_equal(to_tensor(array).numpy(), np.arange(8))


def test_the_tensor_keeps_shared_memory_alive() -> None:
    """Dropping the array does not free memory the tensor still reads."""
    tensor = to_tensor(aligned_copy(np.full((64, 64), 3.0, "float32")))
    gc.collect()
    np.testing.assert_array_equal(np.zeros((64, 64), "float32") + tensor.numpy(), 3.0)
