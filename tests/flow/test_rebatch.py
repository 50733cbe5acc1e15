"""Tests of the Rebatcher (access.batch, the trainer's batching): errors name shapes and samples."""

from __future__ import annotations

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, BatchError, DatasetMetadata, FeatureSpec, StageError
from rxpipe.context import RunContext, running
from rxpipe.events import BatchesDropped, EventBus
from rxpipe.flow import transform
from rxpipe.flow.rebatch import Rebatcher
from rxpipe.operators import access
from rxpipe.testing import EventRecorder, collect, make_metadata

META = make_metadata(np.zeros((1, 3), "float32"))


def batch(ids: list[str], shape: tuple[int, ...], split: str = "train") -> Batch:
    """A batch of zeros with the given ids and per-sample shape."""
    return Batch(np.zeros((len(ids), *shape), "float32"), None, np.array(ids), META, split)


def test_samples_of_another_shape_name_both_shapes_and_samples() -> None:
    """Joining (8, 8, 3) and (6, 9, 3) images fails naming shapes and the later samples."""
    source = reactivex.of(batch(["a/1", "a/2"], (8, 8, 3)), batch(["b/1", "b/2"], (6, 9, 3)))
    with pytest.raises(StageError) as info:
        collect(source.pipe(access.batch(3)))
    assert str(info.value).endswith(
        "BatchError: access.batch: expected samples of one shape to join into a batch, "
        "features float32 (8, 8, 3) per sample as in samples ['a/1', 'a/2']. "
        "Received: features float32 (6, 9, 3) in samples ['b/1', 'b/2']"
    )
    assert info.value.sample_ids == ("b/1", "b/2")


def test_named_columns_and_the_remainder_are_checked_too() -> None:
    """A column of another width is named; the final partial batch is joined the same way."""
    meta = DatasetMetadata(
        "t", {"x": FeatureSpec((2,), "float64"), "y": FeatureSpec((), "float64")}
    )

    def table(ids: list[int], width: int) -> Batch:
        n = len(ids)
        return Batch({"x": np.zeros((n, width)), "y": np.zeros(n)}, None, np.array(ids), meta)

    source = reactivex.of(table([0], 2), table([1], 4))
    with pytest.raises(
        StageError,
        match=r"features\['x'\] float64 \(2,\) per sample .* "
        r"Received: features\['x'\] float64 \(4,\) in samples \[1\]$",
    ):
        collect(source.pipe(transform("rebatch", lambda: Rebatcher(5, False, "rebatch"))))


def test_batches_of_one_shape_rebatch_as_before() -> None:
    """Exact sizes per split; the remainder comes last (or is dropped)."""
    source = reactivex.of(*(batch([f"{k}{i}" for i in range(3)], (3,)) for k in "abc"))
    assert [b.size for b in collect(source.pipe(access.batch(4)))] == [4, 4, 1]
    assert [b.size for b in collect(source.pipe(access.batch(4, drop_remainder=True)))] == [4, 4]
    assert issubclass(BatchError, ValueError)


def test_outside_a_pipeline_every_dropped_remainder_is_published() -> None:
    """The remainders dropped at the end of each split reach the run's events, all of them."""
    bus = EventBus("test")
    recorder = EventRecorder()
    bus.events.subscribe(recorder)
    source = reactivex.of(batch(["t1", "t2", "t3"], (3,)), batch(["v1"], (3,), "validation"))
    with running(RunContext("test", "test", None, bus)):
        rebatch = transform("rebatch", lambda: Rebatcher(2, True, "rebatch"))
        assert [b.ids.tolist() for b in collect(source.pipe(rebatch))] == [["t1", "t2"]]
    dropped = recorder.of_type(BatchesDropped)
    assert sum(e.samples for e in dropped) == 2  # t3 and v1
