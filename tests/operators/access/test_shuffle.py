"""Tests of access.shuffle: order, reproducibility, locality, memory bound and bad input."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, DatasetMetadata, FeatureSpec, StageError
from rxpipe.context import in_epoch
from rxpipe.operators import access
from rxpipe.testing import collect, from_arrays


def ids(batches: list[Batch]) -> list[int]:
    """Every sample id, in order."""
    return [int(i) for b in batches for i in b.ids]


def shuffled(
    n: int, buffer_size: int, seed: int = 0, epoch: int = 0, batch: int = 8
) -> list[Batch]:
    features = np.arange(n, dtype="float32")[:, None] * np.ones((1, 3), "float32")
    source = from_arrays(features, np.arange(n) % 3, batch_size=batch, split="train")
    with in_epoch(epoch):
        return collect(source.pipe(access.shuffle(buffer_size=buffer_size, seed=seed)))


def test_every_sample_once_with_its_own_features_and_label() -> None:
    """Rows move together: features, label and id of a sample stay one sample."""
    out = shuffled(100, buffer_size=30)
    assert sorted(ids(out)) == list(range(100))
    assert ids(out) != list(range(100))
    for batch in out:
        assert batch.split.value == "train"
        np.testing.assert_array_equal(batch.features[:, 0], batch.ids.astype("float32"))
        np.testing.assert_array_equal(batch.labels, batch.ids % 3)


def test_order_is_reproducible_per_seed_and_new_per_epoch() -> None:
    """(seed, epoch) fixes the order; another epoch or seed gives another one."""
    first = ids(shuffled(64, buffer_size=16, seed=1, epoch=1))
    assert ids(shuffled(64, buffer_size=16, seed=1, epoch=1)) == first
    assert ids(shuffled(64, buffer_size=16, seed=1, epoch=2)) != first
    assert ids(shuffled(64, buffer_size=16, seed=2, epoch=1)) != first


def test_buffer_of_one_keeps_the_order() -> None:
    """A one-sample buffer can only swap a sample for the next: the input order survives."""
    assert ids(shuffled(20, buffer_size=1, batch=1)) == list(range(20))


def test_small_buffer_is_local_and_bounds_what_is_held() -> None:
    """The buffer fills with whole batches (10 samples round up to 3 batches of 4), so a
    sample leaves at most 12 positions early and every output batch has 4 samples."""
    out = shuffled(200, buffer_size=10, batch=4)
    order = ids(out)
    assert sorted(order) == list(range(200))
    assert all(position >= sample - 12 for position, sample in enumerate(order))
    assert any(position < sample - 4 for position, sample in enumerate(order))
    assert [b.size for b in out] == [4] * 50


def test_a_batch_larger_than_the_buffer_leaves_in_pieces() -> None:
    """As documented: with buffer_size=5, batches of 7 then 11 leave as 7, 4 (the 11, cut
    to the buffer's fill of 7), then 7 (the buffer emptied at the end)."""
    meta = DatasetMetadata("t", FeatureSpec((3,), "float32"))
    batches = [
        Batch(np.zeros((size, 3), "float32"), None, np.arange(start, start + size), meta, "train")
        for start, size in ((0, 7), (7, 11))
    ]
    stage = access.shuffle(buffer_size=5, seed=0)
    out = collect(reactivex.from_iterable(batches).pipe(stage))
    assert [b.size for b in out] == [7, 4, 7]
    assert sorted(ids(out)) == list(range(18))


def test_large_buffer_shuffles_uniformly() -> None:
    """With the whole data set in the buffer, every sample is equally likely first."""
    first = Counter(
        ids(shuffled(10, buffer_size=100, seed=seed, batch=3))[0] for seed in range(400)
    )
    assert sorted(first) == list(range(10))
    assert all(20 <= count <= 65 for count in first.values()), first


def test_named_features_and_string_ids_of_varying_length() -> None:
    """Mappings of features shuffle together; longer string ids widen the buffer."""
    meta = DatasetMetadata("named", {"a": FeatureSpec((2,), "int64"), "b": FeatureSpec((), "<U5")})
    batches = [
        Batch(
            {"a": np.full((2, 2), i), "b": np.array([f"t{i}", f"t{i}"])},
            None,
            np.array([f"f{i}-{j}" + "x" * i for j in range(2)]),
            meta,
        )
        for i in range(6)
    ]
    out = collect(reactivex.from_iterable(batches).pipe(access.shuffle(buffer_size=3, seed=0)))
    seen = sorted(str(i) for b in out for i in b.ids)
    assert seen == sorted(f"f{i}-{j}" + "x" * i for i in range(6) for j in range(2))
    for batch in out:
        for row, sample_id in enumerate(batch.ids):
            i = int(str(sample_id)[1])
            assert batch.features["a"][row].tolist() == [i, i]
            assert batch.features["b"][row] == f"t{i}"


def test_a_batch_unlike_the_first_fails_naming_field_and_samples() -> None:
    """A later batch whose dtype cannot be held without loss is a clear error."""
    meta = DatasetMetadata("m", FeatureSpec((2,), "float32"))
    data = reactivex.of(
        Batch(np.zeros((3, 2), "float32"), None, [0, 1, 2], meta),
        Batch(np.zeros((3, 2), "float64"), None, [3, 4, 5], meta),
    )
    with pytest.raises(StageError) as info:
        collect(data.pipe(access.shuffle(buffer_size=2, seed=0)))
    assert info.value.stage == "access.shuffle"
    assert info.value.sample_ids == (3, 4, 5)
    assert "features: expected" in str(info.value)
    assert "float32 (2,)" in str(info.value)
    assert "float64 (2,)" in str(info.value)
