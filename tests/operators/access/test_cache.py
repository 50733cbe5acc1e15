"""Tests of access.cache: in memory per run, or in a folder across runs."""

from __future__ import annotations

import gc
import json
import threading
import tracemalloc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, CacheRebuilt, ConfigError, Pipeline, StageError, StageStarted
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus
from rxpipe.flow import generate, iterate
from rxpipe.lineage import lineage_of
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


# A folder cache streams: one batch in memory at a time, the folder only when complete.


def numbered(produced: list[int], n: int, width: int = 1, fail_at: int | None = None) -> Any:
    """A cold source of ``n`` one-sample batches of ``width`` floats, made on demand.

    Appends each batch's index to ``produced``; raises at batch ``fail_at``.
    """
    meta = make_metadata(np.zeros((1, width)))

    def batches() -> Iterator[Batch]:
        for i in range(n):
            if i == fail_at:
                raise OSError(f"disk gone at batch {i}")
            produced.append(i)
            yield Batch(np.full((1, width), float(i)), None, np.array([i]), meta)

    return generate(batches)


def drain(stream: reactivex.Observable[Batch]) -> int:
    """Run a pass keeping nothing (the generate source runs synchronously); the count."""
    count = [0]
    errors: list[Exception] = []
    done: list[bool] = []
    stream.subscribe(
        lambda _: count.__setitem__(0, count[0] + 1), errors.append, lambda: done.append(True)
    )
    if errors:
        raise errors[0]
    assert done == [True]
    return count[0]


def partial_files(tmp_path: Path) -> list[Path]:
    """The files of unfinished cache folders beside ``tmp_path / 'cache'``."""
    return sorted(tmp_path.glob(".cache.*.partial/**/*"))


def test_a_folder_cache_holds_about_one_batch_in_memory(tmp_path: Path) -> None:
    """Writing and replaying 32 MB in 1 MB batches peaks near two batches, like no cache."""
    batches, width = 32, 131_072  # 1 MiB of float64 per batch
    batch_bytes = width * 8
    stream = numbered([], batches, width).pipe(access.cache(str(tmp_path / "cache")))
    peaks = []
    for _ in ("write", "replay"):
        tracemalloc.start()
        try:
            assert drain(stream) == batches
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert (tmp_path / "cache" / "cache.json").is_file()
    assert max(peaks) < 4 * batch_bytes, [p / batch_bytes for p in peaks]  # data: 32 batches


def sample_stream() -> reactivex.Observable[Batch]:
    """Batches with mapped features, labels, two splits and two metadata objects."""
    meta_a = make_metadata(np.zeros((1, 3), "float32"), np.array([0, 1]), name="a")
    meta_b = make_metadata(np.zeros((1, 3), "float32"), np.array([0, 1]), name="b")
    rng = np.random.default_rng(3)

    def batches() -> Iterator[Batch]:
        for i in range(7):
            ids = np.arange(i * 3, i * 3 + 3)
            features = {
                "x": rng.random((3, 3)).astype("float32"),
                "word": np.array(["a", "bb", "ccc"], dtype=object),
            }
            labels = rng.integers(0, 2, 3)
            split = "train" if i % 2 else "test"
            yield Batch(features, labels, ids, meta_a if i < 4 else meta_b, split)

    batches_made = list(batches())  # fixed content, replayed by every subscription
    return generate(lambda: iter(batches_made))


def assert_same_batches(expected: list[Batch], received: list[Batch]) -> None:
    """Same features (and dtypes), labels, ids, splits and metadata, in the same order."""
    assert len(expected) == len(received)
    for a, b in zip(expected, received, strict=True):
        assert isinstance(a.features, dict)
        assert isinstance(b.features, dict)
        assert a.features.keys() == b.features.keys()
        for key in a.features:
            assert a.features[key].dtype == b.features[key].dtype
            np.testing.assert_array_equal(a.features[key], b.features[key])
        np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
        np.testing.assert_array_equal(a.ids, b.ids)
        assert (a.split, a.metadata) == (b.split, b.metadata)


def test_a_folder_cache_replays_exactly_the_uncached_stream(tmp_path: Path) -> None:
    """The writing pass, a replay in the same run and one in a new run equal the source."""
    expected = collect(sample_stream())
    stream = sample_stream().pipe(access.cache(str(tmp_path / "cache")))
    with running(new_run()):
        passes = [collect(stream), collect(stream)]
    with running(new_run()):
        passes.append(collect(stream))
    for received in passes:
        assert_same_batches(expected, received)
    replayed = passes[2]
    assert replayed[0].metadata is replayed[3].metadata
    assert replayed[4].metadata is replayed[6].metadata
    assert replayed[3].metadata is not replayed[4].metadata
    manifest = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert (manifest["batches"], manifest["samples"]) == (7, 21)


def test_each_batch_is_on_disk_before_it_is_passed_on(tmp_path: Path) -> None:
    """Mid-pass, the batches seen so far are files in a hidden folder; the cache is absent."""
    folder = tmp_path / "cache"
    seen: list[tuple[int, bool]] = []

    def look(batch: Batch) -> Batch:
        seen.append(
            (len(list(tmp_path.glob(".cache.*.partial/cache/batch-*.pkl"))), folder.exists())
        )
        return batch

    collect(numbered([], 5).pipe(access.cache(str(folder)), reactivex.operators.map(look)))
    assert seen == [(1, False), (2, False), (3, False), (4, False), (5, False)]
    assert sorted(p.name for p in folder.iterdir())[-3:] == [
        "batch-000004.pkl",
        "cache.json",
        "metadata.pkl",
    ]
    assert partial_files(tmp_path) == []


def test_an_error_mid_pass_leaves_no_cache(tmp_path: Path) -> None:
    """The upstream error passes unchanged, what was written is deleted, the next pass rebuilds."""
    produced: list[int] = []
    stage = access.cache(str(tmp_path / "cache"))
    with pytest.raises(OSError, match="disk gone at batch 3"):
        drain(numbered(produced, 6, fail_at=3).pipe(stage))
    assert produced == [0, 1, 2]
    assert not (tmp_path / "cache").exists()
    assert partial_files(tmp_path) == []
    assert drain(numbered(produced, 6).pipe(stage)) == 6
    assert produced[3:] == [0, 1, 2, 3, 4, 5]  # read anew, not replayed from a partial cache
    assert json.loads((tmp_path / "cache" / "cache.json").read_text())["batches"] == 6


def test_a_disposed_pass_leaves_no_cache_and_stops_reading(tmp_path: Path) -> None:
    """access.take downstream: the source stops early, nothing of the pass is kept."""
    produced: list[int] = []
    stage = access.cache(str(tmp_path / "cache"))
    assert len(collect(numbered(produced, 50).pipe(stage, access.take(3)))) == 3
    assert len(produced) < 10
    assert not (tmp_path / "cache").exists()
    assert partial_files(tmp_path) == []


def test_a_failed_write_stops_the_pass_naming_the_batch(tmp_path: Path) -> None:
    """A batch that cannot be pickled fails the pass with its file and ids; nothing is kept."""
    produced: list[int] = []
    meta = make_metadata(np.zeros((1, 1)))

    def batches() -> Iterator[Batch]:
        for i in range(20):
            produced.append(i)
            features = np.empty((1, 1), dtype=object)
            features[0, 0] = threading.Lock() if i == 2 else float(i)  # a lock: unpicklable
            yield Batch(features, None, np.array([100 + i]), meta)

    with pytest.raises(StageError, match=r"batch-000002\.pkl'.*expected to write") as caught:
        collect(generate(batches).pipe(access.cache(str(tmp_path / "cache"))))
    assert caught.value.sample_ids == (102,)
    assert produced == [0, 1, 2]  # the upstream was disposed at the failure
    assert not (tmp_path / "cache").exists()
    assert partial_files(tmp_path) == []


def test_a_folder_that_appears_during_the_pass_is_kept(tmp_path: Path) -> None:
    """Someone's folder created mid-pass is neither replaced nor deleted."""
    folder = tmp_path / "cache"

    def intrude(batch: Batch) -> Batch:
        if int(batch.ids[0]) == 1:
            folder.mkdir()
            (folder / "thesis.txt").write_text("precious")
        return batch

    stream = numbered([], 3).pipe(reactivex.operators.map(intrude), access.cache(str(folder)))
    with pytest.raises(FileExistsError, match=r"holds thesis\.txt; rxpipe does not delete"):
        collect(stream)
    assert [p.name for p in folder.iterdir()] == ["thesis.txt"]
    assert partial_files(tmp_path) == []


def test_a_failed_rebuild_keeps_the_old_folder_until_a_pass_completes(tmp_path: Path) -> None:
    """A stale folder stays whole while a rebuild fails; the next complete pass replaces it."""
    folder = tmp_path / "cache"
    stage = access.cache(str(folder))

    def described(scale: float) -> Any:
        return lineage_of(lambda: {"seed": 0, "stages": [{"plugin": "p", "params": {"s": scale}}]})

    run = new_run()
    events: list[Any] = []
    run.bus.events.subscribe(events.append)
    with running(run):
        with described(1.0):
            drain(numbered([], 4).pipe(stage))
        with described(2.0), pytest.raises(OSError, match="disk gone"):
            drain(numbered([], 6, fail_at=5).pipe(stage))
        assert json.loads((folder / "cache.json").read_text())["batches"] == 4
        produced: list[int] = []
        with described(2.0):
            assert drain(numbered(produced, 6).pipe(stage)) == 6
            assert drain(numbered(produced, 6).pipe(stage)) == 6
    assert produced == [0, 1, 2, 3, 4, 5]  # rebuilt once, then replayed
    assert [e.reason for e in rebuilt(events)] == ["p.s: 1.0 → 2.0"] * 2
    assert json.loads((folder / "cache.json").read_text())["batches"] == 6
    assert partial_files(tmp_path) == []


def test_overlapping_passes_keep_the_first_to_complete_in_memory() -> None:
    """A pass that starts while another is still open (validation while steps_per_epoch
    keeps the training pass open) completes first and is kept; the open pass stops
    holding its batches, and later passes replay the kept one."""
    produced: list[int] = []
    stream = numbered(produced, 6).pipe(access.cache())
    with running(new_run()):
        training = iterate(stream, capacity=1)
        assert next(training).ids.tolist() == [0]
        validation = collect(stream)  # the whole pass, while training is open
        assert next(training).ids.tolist() == [1]  # read ahead before validation ended
        batch = next(training)
        let_go = weakref.ref(batch)
        del batch
        assert next(training).ids.tolist() == [3]  # the iterator lets go of batch 2
        gc.collect()
        assert let_go() is None  # not held for a pass that will not be kept
        assert [b.ids[0] for b in training] == [4, 5]
        replayed = collect(stream)
    assert sorted(produced) == sorted([0, 1, 2, 3, 4, 5] * 2)  # the third pass replays
    assert all(a is b for a, b in zip(replayed, validation, strict=True))


def test_overlapping_passes_write_the_folder_once(tmp_path: Path) -> None:
    """Of two overlapping passes, the first to complete writes the folder; the open one
    stops writing (what it wrote is deleted) and never replaces the folder under a replay."""
    folder = tmp_path / "cache"
    stream = numbered([], 6).pipe(access.cache(str(folder)))
    with running(new_run()):
        training = iterate(stream, capacity=1)
        next(training)
        assert partial_files(tmp_path)  # the training pass is writing
        assert drain(stream) == 6
        written = (folder / "cache.json").stat()
        assert [b.ids[0] for b in training] == [1, 2, 3, 4, 5]
        replayed = iterate(stream, capacity=1)
        assert next(replayed).ids.tolist() == [0]
        replayed.close()
    assert (folder / "cache.json").stat().st_ino == written.st_ino  # not written again
    assert partial_files(tmp_path) == []
