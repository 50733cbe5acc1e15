"""Tests for rxpipe.Pipeline: composition, run directory, events, failures, accounting."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops

from rxpipe import Batch, Pipeline, PipelineCancelled, RunFailed, Split, StageError
from rxpipe.flow import map_batches
from rxpipe.operators import access, collect, process
from rxpipe.testing import EventRecorder, fail_on, from_arrays
from rxpipe.testing import collect as collect_items


def data_pipeline(runs_dir: Path, *extra: object) -> Pipeline:
    """Digits through split, batch and normalize: no model, no TensorFlow."""
    return Pipeline(
        collect.digits(),
        access.split(),
        access.batch(100),
        process.normalize(),
        *extra,  # type: ignore[arg-type]
        name="data",
        runs_dir=runs_dir,
    )


def test_pipeline_is_an_operator_for_plain_pipe_chains() -> None:
    """A pipeline applies its stages when used in source.pipe(...)."""
    pipeline = Pipeline(access.batch(4), process.normalize(scale=0.5))
    source = from_arrays(np.ones((10, 2), "float32"), batch_size=3)
    batches = collect_items(source.pipe(pipeline))
    assert [b.size for b in batches] == [4, 4, 2]
    assert float(batches[0].features.max()) == 0.5  # type: ignore[union-attr]


def test_repeated_plugins_get_unique_stage_names() -> None:
    """The second use of a plugin is named kind.name#2."""
    pipeline = Pipeline(access.batch(4), access.batch(8), ops.map(lambda b: b))
    assert pipeline.stage_names == ("access.batch", "access.batch#2", "custom.stage2")


def test_run_writes_the_run_directory(runs_dir: Path) -> None:
    """A run leaves run.json, pipeline.toml and events.jsonl in runs/<name>/<id>/."""
    result = data_pipeline(runs_dir).run(progress=False)
    assert result.run_dir is not None
    assert result.run_dir.parent == runs_dir / "data"
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == "completed"
    resolved = tomllib.loads((result.run_dir / "pipeline.toml").read_text())
    assert [p["use"] for p in resolved["plugins"]] == [
        "collect.digits",
        "access.split",
        "access.batch",
        "process.normalize",
    ]
    lines = [json.loads(x) for x in (result.run_dir / "events.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "run_started"
    assert lines[-1]["event"] == "run_completed"
    assert [x["seq"] for x in lines] == list(range(len(lines)))


def test_counts_follow_every_stage(runs_dir: Path) -> None:
    """Per-stage counts show samples in and out of each stage."""
    result = data_pipeline(runs_dir).run(progress=False)
    assert result.counts["collect.digits"].samples_out == 1797
    assert result.counts["access.split"].samples_in == 1797
    assert result.counts["access.batch"].samples_out == 1797
    assert (
        result.counts["process.normalize"].batches_out == result.counts["access.batch"].batches_out
    )
    splits = {b.split for b in result.outputs}
    assert splits == {Split.TRAIN, Split.VALIDATION, Split.TEST}


def test_events_are_published_to_subscribers_in_order(runs_dir: Path) -> None:
    """pipeline.events delivers run and stage events with increasing seq."""
    pipeline = data_pipeline(runs_dir)
    recorder = EventRecorder()
    pipeline.events.subscribe(recorder)
    pipeline.run(progress=False)
    kinds = recorder.kinds()
    assert kinds[0] == "run_started"
    assert kinds[-1] == "run_completed"
    assert kinds.count("stage_started") == kinds.count("stage_completed") == 4
    assert [e.seq for e in recorder.events] == list(range(len(kinds)))


@pytest.mark.usefixtures("no_thread_leak")
def test_a_failing_stage_fails_the_run_cleanly(runs_dir: Path) -> None:
    """The error names the stage and sample; run-failed is published; run.json says failed."""
    pipeline = data_pipeline(runs_dir, fail_on(sample_id=42, message="corrupt pixel"))
    recorder = EventRecorder()
    pipeline.events.subscribe(recorder)
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False)
    assert info.value.stage == "custom.fail_on"
    assert 42 in info.value.sample_ids
    assert "corrupt pixel" in str(info.value)
    [failed] = recorder.of_type(RunFailed)
    assert failed.stage == "custom.fail_on"
    assert 42 in failed.sample_ids
    [run_dir] = (runs_dir / "data").iterdir()
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "failed"
    assert "corrupt pixel" in state["error"]


def test_an_error_stops_the_source_promptly(runs_dir: Path) -> None:
    """After a stage fails, the source reads no further batches."""
    read: list[int] = []

    def record(batch: Batch) -> Batch:
        read.append(batch.size)
        return batch

    pipeline = Pipeline(
        collect.digits(chunk_size=10),
        map_batches("custom.record", record),
        fail_on(sample_id=25),
        name="stop",
        runs_dir=runs_dir,
    )
    with pytest.raises(StageError):
        pipeline.run(progress=False)
    assert sum(read) == 30  # batches 0-9, 10-19, 20-29: nothing after the failing one


def test_ctrl_c_cancels_the_run(runs_dir: Path) -> None:
    """A KeyboardInterrupt inside a stage becomes PipelineCancelled and a failed run."""

    def interrupt(batch: Batch) -> Batch:
        raise KeyboardInterrupt

    pipeline = Pipeline(collect.digits(), ops.map(interrupt), name="cancel", runs_dir=runs_dir)
    with pytest.raises(PipelineCancelled):
        pipeline.run(progress=False)
    [run_dir] = (runs_dir / "cancel").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_custom_source_feeds_the_first_stage(runs_dir: Path) -> None:
    """A pipeline can start from any observable instead of a collect plugin."""
    source = from_arrays(np.zeros((7, 2), "float32"), batch_size=7)
    pipeline = Pipeline(access.batch(3), source=source, name="src", runs_dir=runs_dir)
    assert [b.size for b in pipeline.run(progress=False).outputs] == [3, 3, 1]


def test_invalid_pipeline_arguments_are_rejected() -> None:
    """A pipeline needs stages and a file-system-safe name."""
    with pytest.raises(ValueError, match="at least one stage"):
        Pipeline()
    with pytest.raises(ValueError, match="name: expected letters"):
        Pipeline(access.batch(2), name="a/b")


def test_events_from_a_hot_observable_do_not_block(runs_dir: Path) -> None:
    """Subscribing an extra callable receives this run's events."""
    seen: list[str] = []
    Pipeline(access.batch(2), source=reactivex.empty(), name="x", runs_dir=runs_dir).run(
        progress=False, subscribers=[lambda e: seen.append(e.kind)]
    )
    assert seen[0] == "run_started"
    assert seen[-1] == "run_completed"


def test_concurrency_knobs_from_a_pipeline_file(tmp_path: Path) -> None:
    """workers, buffer and prefetch set in a pipeline file run and keep the accounting whole."""
    path = tmp_path / "knobs.toml"
    path.write_text(
        '[pipeline]\nname = "knobs"\n'
        f'runs_dir = "{tmp_path / "runs"}"\n'
        '[[plugins]]\nuse = "collect.digits"\nchunk_size = 100\n'
        '[[plugins]]\nuse = "access.prefetch"\ncount = 2\n'
        '[[plugins]]\nuse = "process.normalize"\nworkers = 2\n'
        '[[plugins]]\nuse = "access.buffer"\ncapacity = 3\noverflow = "block"\n'
    )
    result = Pipeline.from_file(path).run(progress=False)
    ids = [int(i) for b in result.outputs for i in b.ids]
    assert ids == list(range(1797))  # ordered, nothing lost
    for stage in ("access.prefetch", "process.normalize", "access.buffer"):
        counts = result.counts[stage]
        assert (counts.samples_in, counts.samples_out, counts.samples_unaccounted) == (
            1797,
            1797,
            0,
        )


def test_chained_collect_stages_add_their_samples(runs_dir: Path) -> None:
    """Two collect plugins in a row emit both data sets; the run's accounting holds."""
    pipeline = Pipeline(collect.digits(), collect.digits(limit=10), name="two", runs_dir=runs_dir)
    result = pipeline.run(progress=False)
    assert sum(b.size for b in result.outputs) == 1807
    assert result.counts["collect.digits#2"].samples_out == 1807


def test_overflow_policy_is_validated_with_the_field_path(tmp_path: Path) -> None:
    """An unknown overflow policy is a config error naming plugins[i].overflow."""
    from rxpipe import ConfigError
    from rxpipe.config import parse_config

    config = parse_config(
        {"plugins": [{"use": "collect.digits"}, {"use": "access.buffer", "overflow": "spill"}]}
    )
    with pytest.raises(ConfigError, match=r"plugins\[1\]\.overflow: expected"):
        Pipeline.from_config(config)


def test_collect_runs_the_stages_as_run_does(tmp_path: Path) -> None:
    """collect(): errors name their stage, and a folder cache is checked against its input."""

    def fail(batch: Batch) -> Batch:
        raise ValueError("bad batch")

    def boom(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
        return source.pipe(ops.map(fail))

    with pytest.raises(StageError) as info:
        Pipeline(collect.iris(), boom).collect()
    assert info.value.stage == "custom.boom"
    assert "bad batch" in str(info.value)

    folder = str(tmp_path / "cache")
    for scale in (0.5, 0.25):
        batches = Pipeline(
            collect.iris(), process.normalize(scale=scale), access.cache(folder)
        ).collect()
    raw = collect_items(collect.iris()(reactivex.empty()))
    np.testing.assert_allclose(batches[0].features, raw[0].features * 0.25)  # rebuilt
