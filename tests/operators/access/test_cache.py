"""Tests of access.cache: in memory per run, or in a folder across runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, CacheRebuilt, ConfigError, Pipeline, StageError, StageStarted
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus
from rxpipe.flow import generate
from rxpipe.operators import access, process
from rxpipe.operators import collect as collectors
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


def test_a_folder_of_other_files_is_never_deleted(tmp_path: Path) -> None:
    """A folder that is no cache is an error at construction, and if one appears later,
    at the write; its files stay."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    with pytest.raises(ConfigError, match=r"access\.cache\.path: .*holds thesis\.txt"):
        access.cache(str(mine))
    later = tmp_path / "later"
    stage = access.cache(str(later))
    later.mkdir()
    (later / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError, match=r"holds thesis\.txt; rxpipe does not delete"):
        collect(source([]).pipe(stage))
    assert (later / "thesis.txt").read_text() == "precious"
    assert [p.name for p in later.iterdir()] == ["thesis.txt"]
    assert not list(tmp_path.glob(".later.*"))  # no partial folder left beside it


def cached_run(
    tmp_path: Path, csv: Path, scale: float = 0.5, seed: int = 0
) -> tuple[list[Any], list[Any]]:
    """Run collect.csv → normalize → folder cache; the run's events and its output batches."""
    events: list[Any] = []
    pipeline = Pipeline(
        collectors.csv(str(csv), label="y"),
        process.normalize(scale=scale),
        access.cache(str(tmp_path / "cache")),
        name="cached",
        seed=seed,
        runs_dir=tmp_path / "runs",
    )
    result = pipeline.run(progress=False, subscribers=[events.append])
    return events, result.outputs


def read_stages(events: list[Any]) -> list[str]:
    """The stages that read data in a run (a replayed cache reads nothing upstream)."""
    return [e.stage for e in events if isinstance(e, StageStarted)]


def rebuilt(events: list[Any]) -> list[CacheRebuilt]:
    return [e for e in events if isinstance(e, CacheRebuilt)]


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "table.csv"
    path.write_text("x,y\n1,0\n2,1\n3,0\n")
    return path


def test_an_unchanged_pipeline_replays_the_folder(tmp_path: Path, table: Path) -> None:
    """Same plugins, parameters, seed and file: the second run reads only the cache."""
    first_events, first = cached_run(tmp_path, table)
    manifest = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert [s["plugin"] for s in manifest["lineage"]["stages"]] == [
        "collect.csv",
        "process.normalize",
    ]
    events, again = cached_run(tmp_path, table)
    assert "collect.csv" in read_stages(first_events)
    assert read_stages(events) == ["access.cache"]
    assert rebuilt(events) == []
    np.testing.assert_array_equal(first[0].features, again[0].features)


def test_a_changed_parameter_rebuilds_the_folder(tmp_path: Path, table: Path) -> None:
    """A new normalize scale is seen, named in CacheRebuilt, and the new values are kept."""
    cached_run(tmp_path, table, scale=0.5)
    events, outputs = cached_run(tmp_path, table, scale=0.25)
    (event,) = rebuilt(events)
    assert event.stage == "access.cache"
    assert event.path == str(tmp_path / "cache")
    assert event.reason == "process.normalize.scale: 0.5 → 0.25"
    assert "collect.csv" in read_stages(events)
    np.testing.assert_allclose(outputs[0].features.ravel(), [0.25, 0.5, 0.75])
    events, _ = cached_run(tmp_path, table, scale=0.25)
    assert read_stages(events) == ["access.cache"]  # the rebuilt folder matches again


def test_a_changed_file_rebuilds_the_folder(tmp_path: Path, table: Path) -> None:
    """A data file named by an upstream parameter that changed is seen, and read anew."""
    cached_run(tmp_path, table)
    table.write_text("x,y\n1,0\n2,1\n3,0\n4,1\n")
    events, outputs = cached_run(tmp_path, table)
    (event,) = rebuilt(events)
    assert event.reason.startswith(f"collect.csv.path: {str(table)!r} changed (")
    assert sum(b.size for b in outputs) == 4


def test_a_changed_seed_rebuilds_the_folder(tmp_path: Path, table: Path) -> None:
    """Stages before the cache may draw from the run's seed."""
    cached_run(tmp_path, table, seed=0)
    events, _ = cached_run(tmp_path, table, seed=1)
    assert [e.reason for e in rebuilt(events)] == ["seed: 0 → 1"]


def test_an_unknown_lineage_replays_without_checking(tmp_path: Path) -> None:
    """With a Python source, nothing can be compared: the folder is replayed as written."""
    folder = tmp_path / "cache"
    for scale in (0.5, 0.25):
        events: list[Any] = []
        pipeline = Pipeline(
            process.normalize(scale=scale),
            access.cache(str(folder)),
            source=source([]),
            runs_dir=tmp_path / "runs",
        )
        outputs = pipeline.run(progress=False, subscribers=[events.append]).outputs
    assert json.loads((folder / "cache.json").read_text())["lineage"] is None
    assert rebuilt(events) == []
    assert outputs[0].features[1, 0] == 0.5  # written with scale 0.5, not rebuilt
