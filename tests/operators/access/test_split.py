"""Tests of access.split: hashed ratios, the stratified option and a split column."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st

from rxpipe import Batch, BatchError, ConfigError, DatasetMetadata, FeatureSpec, Split, StageError
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus
from rxpipe.operators import access
from rxpipe.testing import collect, from_arrays


def counts(batches: list[Batch]) -> dict[tuple[str, int], int]:
    """Samples per (split, class)."""
    found: Counter[tuple[str, int]] = Counter()
    for batch in batches:
        for label in batch.labels.tolist():
            found[(batch.split.value, int(label))] += 1
    return dict(found)


def test_hashed_split_is_deterministic_and_order_free() -> None:
    """The same ids land in the same splits whatever the batching and order."""
    labels = np.arange(500) % 5
    a = collect(from_arrays(np.zeros((500, 1)), labels, batch_size=64).pipe(access.split(seed=3)))
    reverse = np.arange(500)[::-1]
    meta = a[0].metadata
    flipped = reactivex.of(Batch(np.zeros((500, 1)), labels[reverse], reverse, meta))
    b = collect(flipped.pipe(access.split(seed=3)))

    def assignment(batches: list[Batch]) -> dict[int, str]:
        return {int(i): x.split.value for x in batches for i in x.ids}

    assert assignment(a) == assignment(b)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=2, max_size=5),
    batch_size=st.integers(1, 50),
    seed=st.integers(0, 1000),
)
def test_stratified_split_keeps_every_class_share(
    sizes: list[int], batch_size: int, seed: int
) -> None:
    """Each class's train/validation/test sizes follow the ratios to within one sample."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    source = from_arrays(np.zeros((len(labels), 1)), labels, batch_size=batch_size)
    context = RunContext("r", "p", None, EventBus("r"), seed=seed)
    with running(context):
        out = collect(source.pipe(access.split(0.6, 0.2, 0.2, stratify=True)))
    found = counts(out)
    assert sum(found.values()) == len(labels)
    for label, size in enumerate(sizes):
        train = found.get(("train", label), 0)
        validation = found.get(("validation", label), 0)
        assert abs(train - 0.6 * size) <= 1
        assert abs(validation - 0.2 * size) <= 1


def test_stratified_split_is_the_same_on_every_pass() -> None:
    """A second subscription in the same run reuses the assignment (order kept per split)."""
    labels = np.arange(200) % 4
    stage = access.split(stratify=True, seed=1)
    stream = from_arrays(np.zeros((200, 1)), labels, batch_size=32).pipe(stage)
    first, second = collect(stream), collect(stream)
    assert [(b.split, b.ids.tolist()) for b in first] == [(b.split, b.ids.tolist()) for b in second]


def test_stratify_needs_class_labels() -> None:
    """Float labels (regression) cannot be stratified."""
    source = from_arrays(np.zeros((4, 1)), np.array([0.5, 1.5, 2.5, 3.5]))
    with pytest.raises(StageError, match="stratify expected one class label per sample"):
        collect(source.pipe(access.split(stratify=True)))


def test_split_column_assigns_and_removes_the_column() -> None:
    """A column of split names decides each sample's split and is dropped from the features."""
    meta = DatasetMetadata(
        "t", {"x": FeatureSpec((), "float32"), "fold": FeatureSpec((), "object")}
    )
    fold = np.array(["train", "Test", "valid", "train"], dtype=object)
    batch = Batch(
        {"x": np.arange(4, dtype="float32"), "fold": fold}, np.arange(4), np.arange(4), meta
    )
    out = collect(reactivex.of(batch).pipe(access.split(column="fold")))
    assert {b.split: b.ids.tolist() for b in out} == {
        Split.TRAIN: [0, 3],
        Split.VALIDATION: [2],
        Split.TEST: [1],
    }
    assert out[0].features.tolist() == [0.0, 3.0]  # one column left: a plain array
    assert out[0].metadata.features == FeatureSpec((), "float32")
    assert all(b.metadata is out[0].metadata for b in out)


def test_split_column_takes_utf8_bytes() -> None:
    """Split names as bytes (e.g. read from TFRecord) are decoded; bad ones name the sample."""
    meta = DatasetMetadata("t", {"x": FeatureSpec((), "int64"), "fold": FeatureSpec((), "object")})
    fold = np.array([b"train", b"TEST", b"validation", b"\xfftrain"], dtype=object)
    batch = Batch({"x": np.arange(3), "fold": fold[:3]}, None, np.arange(3), meta)
    out = collect(reactivex.of(batch).pipe(access.split(column="fold")))
    assert {b.split: b.ids.tolist() for b in out} == {
        Split.TRAIN: [0],
        Split.VALIDATION: [2],
        Split.TEST: [1],
    }
    bad = Batch({"x": np.arange(2), "fold": fold[2:]}, None, np.array([5, 6]), meta)
    with pytest.raises(StageError, match=r"sample 6: expected one of .* Received: b'\\xfftrain'"):
        collect(reactivex.of(bad).pipe(access.split(column="fold")))


def test_split_column_errors_name_the_sample_or_the_columns() -> None:
    """An unknown split name names the sample; a missing column lists the columns."""
    meta = DatasetMetadata("t", {"fold": FeatureSpec((), "object")})
    batch = Batch({"fold": np.array(["train", "holdout"], dtype=object)}, None, [7, 8], meta)
    with pytest.raises(StageError, match=r"column 'fold' of sample 8: expected one of"):
        collect(reactivex.of(batch).pipe(access.split(column="fold")))
    with pytest.raises(StageError, match=r"expected a feature column 'split'.*\['fold'\]"):
        collect(reactivex.of(batch).pipe(access.split(column="split")))


def test_bad_ratios_are_config_errors() -> None:
    """Ratios outside [0, 1], not summing to 1, or both stratify and a column, are rejected."""
    with pytest.raises(ConfigError, match=r"access\.split\.train: expected a ratio"):
        access.split(train=1.5)
    with pytest.raises(ConfigError, match="expected a sum of 1"):
        access.split(0.5, 0.5, 0.5)
    with pytest.raises(ConfigError, match="either stratify or a split column"):
        access.split(stratify=True, column="fold")
    assert issubclass(BatchError, ValueError)
