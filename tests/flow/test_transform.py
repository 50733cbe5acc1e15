"""Tests for rxpipe.flow.transform and map_batches."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops

from rxpipe import Batch, ConfigError, Pipeline, StageError
from rxpipe.flow import map_batches, transform
from rxpipe.operators import access
from rxpipe.operators import collect as collect_plugins
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


def test_operators_carry_their_stage_name() -> None:
    """map_batches and transform set stage_name to the stage they name in errors."""
    assert map_batches("custom.double", lambda x: x).stage_name == "custom.double"
    assert map_batches("custom.skip", lambda x: x, on_error="skip").stage_name == "custom.skip"
    assert map_batches("custom.pool", lambda x: x, workers=2).stage_name == "custom.pool"
    assert transform("custom.pairs", Pairs).stage_name == "custom.pairs"
    assert repr(transform("custom.pairs", Pairs)) == "NamedOperator('custom.pairs')"


def test_a_pipeline_names_a_map_batches_stage_by_its_stage_name() -> None:
    """Used as a pipeline stage, map_batches("custom.double", fn) is custom.double."""
    double = map_batches("custom.double", lambda b: b.evolve(features=b.features * 2))
    pipeline = Pipeline(collect_plugins.iris(), access.batch(50), double)
    assert pipeline.stage_names == ("collect.iris", "access.batch", "custom.double")
    assert [spec.use for spec in pipeline.config.plugins][-1] == "custom.double"
    assert sum(b.size for b in pipeline.collect()) == 150


def test_a_function_that_is_not_callable_is_a_config_error() -> None:
    """map_batches and transform reject a non-callable when built, naming the parameter."""
    with pytest.raises(ConfigError, match=r"fn: expected a callable\. Received: 'scale'"):
        map_batches("m", "scale")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"make: expected a callable\. Received: None"):
        transform("t", None)  # type: ignore[arg-type]
