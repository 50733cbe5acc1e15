"""Tests of access.take, access.skip, access.shard and access.unbatch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, ConfigError, Pipeline
from rxpipe.flow import generate
from rxpipe.operators import access
from rxpipe.testing import collect, from_arrays, make_metadata


def ids(batches: list[Batch]) -> list[int]:
    """Every sample id, in order."""
    return [int(i) for b in batches for i in b.ids]


def counting_source(n: int, batch_size: int, pulled: list[int]) -> reactivex.Observable[Batch]:
    """A cold source that records every batch it produces."""
    features = np.zeros((n, 1), "float32")
    meta = make_metadata(features)

    def batches() -> Iterator[Batch]:
        for start in range(0, n, batch_size):
            pulled.append(start)
            part = slice(start, start + batch_size)
            yield Batch(features[part], None, np.arange(n)[part], meta)

    return generate(batches)


def test_take_completes_early_and_stops_reading() -> None:
    """take(n) emits the first n samples, then disposes its upstream."""
    pulled: list[int] = []
    out = collect(counting_source(1000, 10, pulled).pipe(access.take(25)))
    assert ids(out) == list(range(25))
    assert len(pulled) == 3


def test_take_and_skip_per_split() -> None:
    """per_split counts each split separately."""
    stream = from_arrays(np.zeros((400, 1)), batch_size=50).pipe(access.split(seed=0))
    taken = collect(stream.pipe(access.take(10, per_split=True)))
    sizes: dict[str, int] = {}
    for batch in taken:
        sizes[batch.split.value] = sizes.get(batch.split.value, 0) + batch.size
    assert sizes == {"train": 10, "validation": 10, "test": 10}
    rest = collect(stream.pipe(access.skip(10, per_split=True)))
    assert sum(b.size for b in rest) == 400 - 30


def test_skip_drops_the_first_samples() -> None:
    """skip(n) drops the first n samples overall."""
    out = collect(from_arrays(np.zeros((10, 1)), batch_size=3).pipe(access.skip(4)))
    assert ids(out) == [4, 5, 6, 7, 8, 9]


def test_shards_are_disjoint_and_cover_everything() -> None:
    """shard(i, k) for every i partitions the samples, whatever the batching."""
    source = from_arrays(np.zeros((300, 1)), batch_size=7)
    parts = [set(ids(collect(source.pipe(access.shard(i, 3, seed=2))))) for i in range(3)]
    assert set().union(*parts) == set(range(300))
    assert sum(len(p) for p in parts) == 300
    assert all(60 < len(p) < 140 for p in parts)


def test_unbatch_gives_one_sample_per_batch() -> None:
    """unbatch keeps order and splits every batch into batches of one."""
    out = collect(from_arrays(np.zeros((5, 2)), batch_size=2).pipe(access.unbatch()))
    assert [b.size for b in out] == [1] * 5
    assert ids(out) == [0, 1, 2, 3, 4]


def test_dropped_samples_are_accounted_in_a_run(tmp_path: object) -> None:
    """skip and shard report what they leave out, so the run's accounting balances."""
    pipeline = Pipeline(
        access.shard(0, 2, seed=0),
        access.skip(3),
        access.take(20),
        source=from_arrays(np.zeros((100, 1)), batch_size=10),
        runs_dir=str(tmp_path),
    )
    result = pipeline.run(progress=False)
    shard = result.counts["access.shard"]
    assert shard.samples_in == shard.samples_out + shard.samples_dropped
    assert result.counts["access.skip"].samples_dropped == 3


def test_bad_parameters() -> None:
    """Counts and shard indexes are checked at construction."""
    with pytest.raises(ConfigError, match=r"access\.take\.count: expected an int >= 1"):
        access.take(0)
    with pytest.raises(ConfigError, match=r"access\.shard\.index: expected an index below"):
        access.shard(3, 3)
    with pytest.raises(ConfigError, match=r"access\.skip\.count"):
        access.skip(-1)
