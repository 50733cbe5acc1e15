"""Tests for rxpipe.flow.transform and map_batches."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops

from rxpipe import Batch, StageError
from rxpipe.flow import map_batches, transform
from rxpipe.testing import collect, from_arrays


class Pairs:
    """Emit items two at a time; flush a single leftover at the end."""

    def __init__(self) -> None:
        self.held: list[int] = []

    def on_batch(self, item: int) -> Iterable[list[int]]:
        self.held.append(item)
        if len(self.held) == 2:
            out, self.held = self.held, []
            return [out]
        return []

    def on_end(self) -> Iterable[list[int]]:
        return [self.held] if self.held else []


def test_state_is_fresh_for_every_subscription() -> None:
    """Each subscription gets its own transformer state."""
    stream = reactivex.of(1, 2, 3).pipe(transform("pairs", Pairs))
    assert collect(stream) == [[1, 2], [3]]
    assert collect(stream) == [[1, 2], [3]]


def test_user_errors_become_stage_errors_with_sample_ids() -> None:
    """An exception in the user function reaches on_error naming stage and samples."""
    source = from_arrays(np.zeros((6, 1)), batch_size=2)

    def explode(batch: Batch) -> Batch:
        if 3 in batch.ids:
            raise ValueError("bad sample")
        return batch

    with pytest.raises(StageError) as info:
        collect(source.pipe(map_batches("process.explode", explode)))
    assert info.value.stage == "process.explode"
    assert info.value.sample_ids == (2, 3)
    assert isinstance(info.value.cause, ValueError)


def test_an_error_stops_the_upstream_source() -> None:
    """After a failure the source is disposed: it produces nothing more."""
    produced: list[int] = []
    source = reactivex.from_iterable(range(1000)).pipe(ops.do_action(produced.append))

    def fail_at_five(x: int) -> int:
        if x == 5:
            raise ValueError("five")
        return x

    with pytest.raises(StageError):
        collect(source.pipe(map_batches("s", fail_at_five)))
    assert produced == list(range(6))


def test_upstream_errors_pass_through_unchanged() -> None:
    """An error from upstream is forwarded as is, not wrapped again."""
    error = StageError("collect.x", "disk gone")
    with pytest.raises(StageError) as info:
        collect(reactivex.throw(error).pipe(map_batches("s", lambda x: x)))
    assert info.value is error


def test_errors_in_on_end_are_stage_errors() -> None:
    """A failure while flushing at the end is reported for the stage too."""

    class FailsAtEnd(Pairs):
        def on_end(self) -> Iterable[list[int]]:
            raise RuntimeError("flush failed")

    with pytest.raises(StageError, match="flush failed"):
        collect(reactivex.of(1).pipe(transform("s", FailsAtEnd)))
