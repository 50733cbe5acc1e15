"""Tests for bad records: on_error="skip" and max_skipped in map_batches and plugins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, ConfigError, DatasetMetadata, FeatureSpec, Pipeline, Stage, StageError
from rxpipe.context import SkippedSample
from rxpipe.errors import SkipLimitError
from rxpipe.events import SamplesSkipped, StageCompleted
from rxpipe.flow import map_batches
from rxpipe.registry import registry
from rxpipe.testing import EventRecorder, collect, from_arrays

pytestmark = pytest.mark.usefixtures("no_leaks")


def picky(batch: Batch) -> Batch:
    """Negate features; sample 5 has a NaN, sample 9 is out of range."""
    if 5 in batch.ids:
        raise ValueError("NaN in features")
    if 9 in batch.ids:
        raise OverflowError("out of range")
    return batch.evolve(features=-batch.features)


def ten(batch_size: int = 4) -> reactivex.Observable[Batch]:
    """A source of ten one-feature samples (ids 0-9)."""
    return from_arrays(np.arange(10.0)[:, None], batch_size=batch_size)


def test_skip_keeps_the_good_samples_of_a_failing_batch() -> None:
    """Only the samples that fail alone are skipped; the rest of their batch goes on."""
    out = collect(ten().pipe(map_batches("neg", picky, on_error="skip")))
    assert [b.ids.tolist() for b in out] == [[0, 1, 2, 3], [4, 6, 7], [8]]
    assert out[1].features[:, 0].tolist() == [-4.0, -6.0, -7.0]


def test_raise_is_the_default() -> None:
    """Without on_error, the first failing batch fails the stage."""
    with pytest.raises(StageError, match="ValueError: NaN in features"):
        collect(ten().pipe(map_batches("neg", picky)))


def test_max_skipped_fails_the_pass_once_exceeded() -> None:
    """One skip under a limit of one passes; the second fails with every skipped id."""
    stage = map_batches("neg", picky, on_error="skip", max_skipped=1)
    with pytest.raises(SkipLimitError) as info:
        collect(ten().pipe(stage))
    assert info.value.stage == "neg"
    assert info.value.sample_ids == (5, 9)
    assert "expected at most 1 skipped samples (max_skipped). Received: 2" in str(info.value)
    assert "OverflowError: out of range" in str(info.value)
    limit_two = map_batches("neg", picky, on_error="skip", max_skipped=2)
    assert sum(b.size for b in collect(ten().pipe(limit_two))) == 8


def test_skipped_samples_are_in_the_run_result_and_events(runs_dir: Path) -> None:
    """A run lists each skipped sample with its stage and reason, in the result and events."""
    pipeline = Pipeline(
        Stage("process.picky", map_batches("process.picky", picky, on_error="skip")),
        source=ten(batch_size=3),  # the last batch holds only sample 9
        name="skips",
        runs_dir=runs_dir,
    )
    recorder = EventRecorder()
    pipeline.events.subscribe(recorder)
    result = pipeline.run(progress=False)
    assert result.skipped == [
        SkippedSample("process.picky", 5, "ValueError: NaN in features"),
        SkippedSample("process.picky", 9, "OverflowError: out of range"),
    ]
    counts = result.counts["process.picky"]
    assert (counts.samples_in, counts.samples_out, counts.samples_failed) == (10, 8, 2)
    assert (counts.batches_out, counts.batches_failed) == (3, 1)
    events = recorder.of_type(SamplesSkipped)
    assert [(e.sample_ids, e.total) for e in events] == [((5,), 1), ((9,), 2)]
    [completed] = recorder.of_type(StageCompleted)
    assert completed.samples_failed == 2


def test_normalize_takes_on_error_from_a_pipeline_file() -> None:
    """process.normalize accepts on_error/max_skipped as plugin parameters, checked."""
    stage = registry.create("process.normalize", {"on_error": "skip", "max_skipped": 2})
    assert stage.params["on_error"] == "skip"
    with pytest.raises(ConfigError, match=r"plugins\[4\]\.on_error: expected"):
        registry.create("process.normalize", {"on_error": "ignore"}, "plugins[4]")


def test_normalize_skips_what_it_cannot_normalize_up_to_the_limit() -> None:
    """Batches normalize cannot handle (no value range) are skipped, then fail past the limit."""
    meta = DatasetMetadata("raw", FeatureSpec((1,), "float64"))  # no value range
    source = from_arrays(np.arange(6.0)[:, None], batch_size=2, metadata=meta)
    normalize = registry.create("process.normalize", {"on_error": "skip", "max_skipped": 3})
    with pytest.raises(SkipLimitError) as info:
        collect(source.pipe(normalize))
    assert info.value.stage == "process.normalize"
    assert info.value.sample_ids == (0, 1, 2, 3)
    assert "expected the data set 'raw' to declare a value range" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_error": "ignore"}, r"on_error: expected 'raise' or 'skip'\. Received: 'ignore'"),
        ({"on_error": "skip", "max_skipped": -1}, r"max_skipped: expected an int >= 0 or None"),
        ({"max_skipped": 2}, r"max_skipped: expected only with on_error='skip'"),
    ],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, object], message: str) -> None:
    """Bad on_error or max_skipped values raise ConfigError when the operator is built."""
    with pytest.raises(ConfigError, match=message):
        map_batches("x", picky, **kwargs)
