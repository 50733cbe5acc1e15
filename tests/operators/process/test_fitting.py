"""Tests of fitted processors (rxpipe/flow/fitting.py): fit once per run, on train only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, Pipeline, StageError
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus
from rxpipe.flow import generate
from rxpipe.operators import access, collect, process
from rxpipe.testing import collect as run
from rxpipe.testing import from_arrays, make_metadata


def counting(reads: list[int]) -> reactivex.Observable[Batch]:
    """Train and test batches of a numeric matrix; counts the passes."""
    x = np.arange(40, dtype="float32").reshape(20, 2)
    meta = make_metadata(x)

    def batches() -> Iterator[Batch]:
        reads.append(1)
        yield Batch(x[:15], None, np.arange(15), meta, "train")
        yield Batch(x[15:], None, np.arange(15, 20), meta, "test")

    return generate(batches)


def test_the_fit_happens_once_per_run() -> None:
    """The first pass of a run reads twice (fit, apply); later passes read once."""
    reads: list[int] = []
    stream = counting(reads).pipe(process.standardize())
    with running(RunContext("a", "p", None, EventBus("a"))):
        first = run(stream)
        second = run(stream)
    assert len(reads) == 3
    assert first[0].metadata is second[0].metadata
    with running(RunContext("b", "p", None, EventBus("b"))):
        run(stream)
    assert len(reads) == 5


def test_a_fit_needs_training_samples() -> None:
    """Only test samples: the error says to split first."""
    source = from_arrays(np.zeros((4, 2), "float32"), split="test")
    with pytest.raises(StageError, match=r"expected samples of the 'train' split to fit on"):
        run(source.pipe(process.standardize()))


def test_unsplit_data_is_fitted_whole() -> None:
    """A stream that was never split fits on every sample."""
    x = np.array([[0.0], [2.0]], "float32")
    [batch] = run(from_arrays(x).pipe(process.standardize()))
    assert batch.features.ravel().tolist() == [-1.0, 1.0]


def test_upstream_errors_during_the_fit_pass_through() -> None:
    """An error upstream reaches the subscriber unchanged, even in the fitting pass."""
    error = ValueError("disk on fire")
    source = reactivex.concat(from_arrays(np.zeros((2, 1)), split="train"), reactivex.throw(error))
    with pytest.raises(ValueError, match="disk on fire") as info:
        run(source.pipe(process.standardize()))
    assert info.value is error


def test_fitted_stages_keep_the_run_accounting_balanced(tmp_path: Path) -> None:
    """In a pipeline run, the fitting pass's samples are counted (as dropped), not lost."""
    pipeline = Pipeline(
        collect.wine(),
        access.split(stratify=True),
        process.standardize(),
        access.batch(32),
        runs_dir=str(tmp_path),
        name="fit",
    )
    result = pipeline.run(progress=False)
    counts = result.counts["process.standardize"]
    assert counts.samples_out == 178
    assert counts.samples_in == counts.samples_out + counts.samples_dropped
    assert all(c.balanced for c in result.counts.values())
