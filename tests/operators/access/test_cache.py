"""Tests of access.cache: in memory per run, or in a folder across runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, ConfigError, StageError
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus
from rxpipe.flow import generate
from rxpipe.operators import access, process
from rxpipe.testing import collect, make_metadata


def source(reads: list[int], n: int = 10) -> reactivex.Observable[Batch]:
    """A cold source of n samples in batches of 4 that counts its passes."""
    features = np.arange(n, dtype="float32")[:, None]
    meta = make_metadata(features)

    def batches() -> Iterator[Batch]:
        reads.append(1)
        for start in range(0, n, 4):
            part = slice(start, start + 4)
            yield Batch(features[part], None, np.arange(n)[part], meta)

    return generate(batches)


def new_run(seed: int = 0) -> RunContext:
    """A fresh run context (the memory cache is kept per run)."""
    return RunContext("r", "p", None, EventBus("r"), seed=seed)


def test_memory_cache_replays_later_passes_of_a_run() -> None:
    """The upstream is read once per run; every pass sees the same batches."""
    reads: list[int] = []
    stream = source(reads).pipe(process.normalize(scale=2.0), access.cache())
    with running(new_run()):
        first = collect(stream)
        second = collect(stream)
    assert len(reads) == 1
    assert [b.ids.tolist() for b in first] == [b.ids.tolist() for b in second]
    assert second[0].features is first[0].features
    with running(new_run()):
        collect(stream)
    assert len(reads) == 2


def test_a_pass_cut_short_is_not_kept() -> None:
    """A pass disposed early (take) does not fill the cache."""
    reads: list[int] = []
    stream = source(reads).pipe(access.cache())
    with running(new_run()):
        collect(stream.pipe(access.take(2)))
        full = collect(stream)
        collect(stream)
    assert len(reads) == 2
    assert sum(b.size for b in full) == 10


def test_folder_cache_is_written_once_and_replayed_across_runs(tmp_path: Path) -> None:
    """The folder appears after a complete pass; later runs read it instead of the source."""
    reads: list[int] = []
    folder = tmp_path / "cache"
    stream = source(reads).pipe(process.normalize(scale=0.5), access.cache(str(folder)))
    with running(new_run()):
        first = collect(stream)
    assert (folder / "cache.json").is_file()
    with running(new_run()):
        again = collect(stream)
    assert len(reads) == 1
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.features, b.features)
        assert a.metadata == b.metadata
    assert again[0].metadata is again[1].metadata


def test_a_damaged_cache_folder_names_the_file(tmp_path: Path) -> None:
    """A truncated batch file fails naming it and how to recover."""
    folder = tmp_path / "cache"
    collect(source([]).pipe(access.cache(str(folder))))
    (folder / "batch-000001.pkl").write_bytes(b"\x80")
    with pytest.raises(StageError, match=r"batch-000001\.pkl'.*delete the cache folder"):
        collect(source([]).pipe(access.cache(str(folder))))


def test_cache_path_must_not_be_a_file(tmp_path: Path) -> None:
    """A path that is a file is rejected at construction."""
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"access\.cache\.path: expected a folder"):
        access.cache(str(tmp_path / "f"))
