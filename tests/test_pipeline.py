"""Tests for rxpipe.Pipeline: composition, run directory, events, failures, accounting."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops

from rxpipe import Batch, ConfigError, Pipeline, PipelineCancelled, RunFailed, Split, StageError
from rxpipe.flow import map_batches
from rxpipe.operators import access, collect, deploy, evaluate, models, process, train
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


@pytest.mark.parametrize(
    ("stages", "options", "message"),
    [
        ((), {}, "Pipeline: expected at least one stage. Received: none"),
        (
            (3,),
            {},
            "stages[0]: expected an operator (a callable from an Observable to an Observable, "
            "e.g. a plugin's stage). Received: 3 (int)",
        ),
        ((access.batch(2),), {"name": "a/b"}, "name: expected letters, digits, '_', '-' or '.'"),
        ((access.batch(2),), {"name": ".."}, "not only dots (it names the run directory). "),
        ((access.batch(2),), {"name": 3}, "Received: 3"),
        ((access.batch(2),), {"seed": -1}, "seed: expected an integer from 0 to 2**32 - 1."),
        ((access.batch(2),), {"seed": 2**32}, "Received: 4294967296"),
        ((access.batch(2),), {"seed": "x"}, "Received: 'x'"),
        ((access.batch(2),), {"seed": True}, "Received: True"),
        ((access.batch(2),), {"runs_dir": 3}, "runs_dir: expected a folder path. Received: 3"),
    ],
    ids=[
        "none",
        "not-callable",
        "slash",
        "dots",
        "name-int",
        "seed-neg",
        "seed-big",
        "seed-str",
        "seed-bool",
        "runs-dir-int",
    ],
)
def test_invalid_pipeline_arguments_are_config_errors(
    stages: tuple[object, ...], options: dict[str, object], message: str
) -> None:
    """No stages, a stage that is not callable, a bad name, seed or runs_dir: a ConfigError."""
    with pytest.raises(ConfigError) as info:
        Pipeline(*stages, **options)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_seeds_are_integers_of_32_bits() -> None:
    """The largest 32-bit seed and NumPy integers are accepted (as ints)."""
    assert Pipeline(access.batch(2), seed=2**32 - 1).seed == 2**32 - 1
    seed = Pipeline(access.batch(2), seed=np.int64(7)).seed  # type: ignore[arg-type]
    assert (seed, type(seed)) == (7, int)


ORDER = (
    "(plugin kinds go in the order collect/access/process → models → train → evaluate/deploy; "
    "custom stages anywhere)"
)


def _identity(source: reactivex.Observable[object]) -> reactivex.Observable[object]:
    return source


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            lambda: (collect.digits(), access.split(), train.fit()),
            f"stages[2]: expected a models.* stage before train.fit {ORDER}. "
            "Received: train.fit after access.split, which passes on data batches",
        ),
        (
            lambda: (collect.digits(), models.mlp(), access.batch()),
            "stages[2]: expected access.batch before the models.* stage, with the other data "
            f"stages {ORDER}. Received: access.batch after models.mlp, which passes on a "
            "model plan",
        ),
        (
            lambda: (collect.digits(), evaluate.classification()),
            f"stages[1]: expected a train.* stage before evaluate.classification {ORDER}. "
            "Received: evaluate.classification after collect.digits, which passes on data batches",
        ),
        (
            lambda: (collect.digits(), models.mlp(), deploy.export()),
            "stages[2]: expected a train.* stage before deploy.export",
        ),
        (
            lambda: (collect.digits(), models.mlp(), models.cnn()),
            "stages[2]: expected models.cnn (one models.* stage) after the data stages",
        ),
        (
            lambda: (train.fit(), evaluate.classification()),
            "stages[0]: expected a models.* stage before train.fit",
        ),
        (
            lambda: (collect.digits(), models.mlp(), _identity, access.batch(), train.fit()),
            "stages[4]: expected a models.* stage before train.fit",
        ),
    ],
    ids=[
        "train-no-model",
        "data-after-model",
        "evaluate",
        "deploy",
        "two-models",
        "first",
        "after-custom",
    ],
)
def test_plugin_kinds_out_of_order_are_config_errors(
    stages: Callable[[], tuple[object, ...]], message: str
) -> None:
    """A stage whose plugin kind cannot take what comes before it fails at construction."""
    with pytest.raises(ConfigError) as info:
        Pipeline(*stages())  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


def test_custom_stages_and_sources_lift_the_order_check_next_to_them() -> None:
    """The stage after a custom stage, or first after a source, is not checked; the rest is."""
    Pipeline(collect.digits(), models.mlp(), _identity, train.fit(), evaluate.classification())
    Pipeline(collect.digits(), _identity, evaluate.classification(), deploy.export())
    Pipeline(train.fit(), evaluate.classification(), source=reactivex.empty())
    with pytest.raises(ConfigError, match=r"^stages\[3\]: expected a train\.\* stage"):
        Pipeline(collect.digits(), _identity, models.mlp(), evaluate.classification())
    with pytest.raises(ConfigError, match=r"^stages\[1\]: expected a train\.\* stage"):
        Pipeline(models.mlp(), evaluate.classification(), source=reactivex.empty())


def test_a_pipeline_file_out_of_order_names_plugins_i(tmp_path: Path) -> None:
    """Built from a pipeline file, the order error names the stage as plugins[i]."""
    path = tmp_path / "order.toml"
    path.write_text(
        '[[plugins]]\nuse = "collect.digits"\n[[plugins]]\nuse = "models.mlp"\n'
        '[[plugins]]\nuse = "access.batch"\n'
    )
    with pytest.raises(ConfigError, match=r"^plugins\[2\]: expected access\.batch before"):
        Pipeline.from_file(path)


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_a_runs_dir_that_cannot_be_a_folder_is_a_config_error(tmp_path: Path, where: str) -> None:
    """runs_dir naming a file (or a path under one): a ConfigError before anything runs."""
    blocker = tmp_path / "runs.txt"
    blocker.write_text("keep me")
    runs_dir = blocker if where == "file" else blocker / "a" / "b"
    pipeline = Pipeline(collect.digits(), name="data", runs_dir=runs_dir)
    with pytest.raises(ConfigError) as info:
        pipeline.run(progress=False)
    assert str(info.value) == (
        "runs_dir: expected a folder to create run directories in (or a path where one can be "
        f"made). Received: {str(runs_dir)!r}, where {str(blocker)!r} is a file, not a folder"
    )
    assert blocker.read_text() == "keep me"
    config = Pipeline.from_file  # from a pipeline file, the field is pipeline.runs_dir
    path = tmp_path / "p.toml"
    path.write_text(f'[pipeline]\nruns_dir = "{runs_dir}"\n[[plugins]]\nuse = "collect.iris"\n')
    with pytest.raises(ConfigError, match=r"^pipeline\.runs_dir: expected a folder"):
        config(path).run(progress=False)


def test_a_resume_does_not_check_the_runs_dir_it_will_not_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run recorded with a relative runs_dir resumes from a folder where that path is a
    file: a resumed run stays in its own directory."""
    run = Pipeline(collect.iris(), access.batch(50), name="iris", runs_dir="runs")
    monkeypatch.chdir(tmp_path)
    run_dir = run.run(progress=False).run_dir.resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "runs").write_text("a file, not a folder")
    monkeypatch.chdir(elsewhere)
    assert Pipeline.check_resume(run_dir).runs_dir == "runs"
    assert Pipeline.resume(run_dir, progress=False).run_dir == run_dir


def test_a_bad_parameter_names_its_file_or_the_override_that_set_it(tmp_path: Path) -> None:
    """Checked when read or when built, a plugin's bad parameter names the pipeline file it
    came from, or the --set override that gave it."""
    path = tmp_path / "iris.toml"
    path.write_text(
        '[[plugins]]\nuse = "collect.iris"\n[[plugins]]\nuse = "access.batch"\nsize = 0\n'
    )
    with pytest.raises(ConfigError) as info:
        Pipeline.from_file(path)
    assert str(info.value) == (
        f"plugins[1].size: expected an int >= 1. Received: 0 in pipeline file {str(path)!r}"
    )
    overrides = ["access.batch.size=50", f"pipeline.runs_dir={str(tmp_path)!r}"]
    run_dir = Pipeline.from_file(path, overrides).run(progress=False).run_dir
    with pytest.raises(ConfigError) as info:
        Pipeline.resume(run_dir, ["access.batch.size=0"], progress=False)
    assert str(info.value).endswith("Received: 0 (set by --set 'access.batch.size=0')")
    with pytest.raises(ConfigError) as info:
        Pipeline.check_resume(run_dir, ['access.batch.size="50"'])
    assert str(info.value) == (
        "plugins[1].size: expected int. Received: '50' (str) "
        """(set by --set 'access.batch.size="50"')"""
    )


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


def _events(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_a_resumed_run_continues_the_event_sequence(runs_dir: Path) -> None:
    """Resuming in a run directory numbers its events after the last recorded seq."""
    pipeline = data_pipeline(runs_dir)
    first = pipeline.run(progress=False)
    recorded = len(_events(first.run_dir))
    recorder = EventRecorder()
    pipeline.run(progress=False, resume_from=first.run_dir, subscribers=[recorder])
    assert recorder.events[0].seq == recorded
    seqs = [e["seq"] for e in _events(first.run_dir)]
    assert seqs == list(range(len(seqs)))
    assert len(seqs) > recorded


def test_resuming_after_a_torn_last_event_line(runs_dir: Path) -> None:
    """A half-written last line (SIGKILL mid-write) is cut; seq goes on after the last whole one."""
    pipeline = data_pipeline(runs_dir)
    first = pipeline.run(progress=False)
    events = first.run_dir / "events.jsonl"
    recorded = len(_events(first.run_dir))
    with events.open("a") as file:
        file.write('{"event": "stage_started", "run_id": "x", "seq": ')
    pipeline.run(progress=False, resume_from=first.run_dir)
    lines = _events(first.run_dir)  # every line parses again
    assert [e["seq"] for e in lines] == list(range(len(lines)))
    assert lines[recorded]["event"] == "run_started"


def test_resuming_after_a_last_event_without_its_newline(runs_dir: Path) -> None:
    """A whole last event that lost only its newline is kept, and the next event follows it."""
    pipeline = data_pipeline(runs_dir)
    first = pipeline.run(progress=False)
    events = first.run_dir / "events.jsonl"
    events.write_text(events.read_text().removesuffix("\n"))
    recorded = len(_events(first.run_dir))
    pipeline.run(progress=False, resume_from=first.run_dir)
    seqs = [e["seq"] for e in _events(first.run_dir)]
    assert seqs == list(range(len(seqs)))
    assert len(seqs) > recorded


def test_resume_from_a_run_of_another_pipeline_or_seed_is_refused(runs_dir: Path) -> None:
    """Another pipeline's run (name) or another seed (another split): a ConfigError naming
    the field, before the run directory is touched."""
    first = data_pipeline(runs_dir).run(progress=False)
    recorded = {p.name: p.read_bytes() for p in first.run_dir.iterdir() if p.is_file()}
    other = Pipeline(collect.digits(), access.split(), name="other", runs_dir=runs_dir)
    with pytest.raises(ConfigError) as info:
        other.run(progress=False, resume_from=first.run_dir)
    assert str(info.value).startswith(
        "resume_from: expected a run of this pipeline, 'other', to resume. Received: "
    )
    assert str(info.value).endswith("a run of the pipeline 'data'")
    reseeded = Pipeline(*data_pipeline(runs_dir).stages, name="data", seed=7, runs_dir=runs_dir)
    with pytest.raises(ConfigError) as info:
        reseeded.run(progress=False, resume_from=first.run_dir)
    assert str(info.value).startswith("seed: expected the seed the run in ")
    assert str(info.value).endswith(
        "started with, 0 (its data split and order depend on it). Received: 7"
    )
    with pytest.raises(ConfigError, match=r"^pipeline\.seed: expected the seed the run in "):
        Pipeline.resume(first.run_dir, ["pipeline.seed=7"], progress=False)
    with pytest.raises(ConfigError, match=r"^pipeline\.name: expected a run of this pipeline"):
        Pipeline.resume(first.run_dir, ['pipeline.name="renamed"'], progress=False)
    assert {p.name: p.read_bytes() for p in first.run_dir.iterdir() if p.is_file()} == recorded


@pytest.mark.parametrize("what", ["missing", "empty", "file"])
def test_resume_from_something_that_is_no_run_directory(tmp_path: Path, what: str) -> None:
    """resume_from must be an earlier run's directory; nothing is created or trained instead."""
    from rxpipe import ConfigError

    target = tmp_path / "not-a-run"
    if what == "empty":
        target.mkdir()
    elif what == "file":
        target.write_text("")
    runs_dir = tmp_path / "runs"
    with pytest.raises(ConfigError, match="resume_from: expected the directory of an earlier run"):
        data_pipeline(runs_dir).run(progress=False, resume_from=target)
    assert (target.exists(), target.is_dir()) == (what != "missing", what == "empty")
    assert not runs_dir.exists()
    if what == "empty":
        assert list(target.iterdir()) == []


def test_a_raising_subscriber_cuts_off_no_other(runs_dir: Path) -> None:
    """The user's subscriber raises on every event: events.jsonl still gets every one of
    them, and the warning at the end names the subscriber and the event."""
    pipeline = data_pipeline(runs_dir)
    seen: list[str] = []

    def report(event: object) -> None:
        raise KeyError("val_accuracy")

    pipeline.events.subscribe(report)
    pipeline.events.subscribe(lambda event: seen.append(event.kind))
    with pytest.warns(RuntimeWarning, match=r"report on run_started: KeyError: 'val_accuracy'"):
        result = pipeline.run(progress=False)
    assert result.run_dir is not None
    lines = (result.run_dir / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == seen
    assert seen[0] == "run_started"
    assert seen[-1] == "run_completed"


@pytest.mark.parametrize(
    ("options", "field", "received"),
    [
        ({"log_format": "text"}, "log_format", "'text'"),
        ({"subscribers": print}, "subscribers", "<built-in function print>"),
        ({"subscribers": [3]}, r"subscribers\[0\]", r"3 \(int\)"),
        ({"progress": "yes"}, "progress", "'yes'"),
        ({"snapshot_interval": -1}, "snapshot_interval", "-1"),
        ({"stall_warning": "30"}, "stall_warning", "'30'"),
        ({"tensorboard": 1.5}, "tensorboard", "1.5"),
    ],
)
def test_run_options_are_checked_before_anything_is_made(
    runs_dir: Path, options: dict[str, object], field: str, received: str
) -> None:
    """A bad run() option is a ConfigError naming it; no run directory is left behind."""
    with pytest.raises(ConfigError, match=rf"^{field}: expected .*Received: {received}"):
        data_pipeline(runs_dir).run(**options)  # type: ignore[arg-type]
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_pipeline_without_data_to_start_from_is_rejected(runs_dir: Path) -> None:
    """No source and no collect stage first: running it would run on nothing."""
    pipeline = Pipeline(access.batch(4), name="nothing", runs_dir=runs_dir)
    with pytest.raises(ConfigError, match=r"^stages\[0\]: expected a collect\.\* stage first"):
        pipeline.run(progress=False)
    with pytest.raises(ConfigError, match="Received: access.batch first and no source"):
        pipeline.collect()
    source = from_arrays(np.ones((10, 2), "float32"), batch_size=3)
    given = Pipeline(access.batch(4), name="given", runs_dir=runs_dir, source=source)
    assert [b.size for b in given.run(progress=False).outputs] == [4, 4, 2]


def test_a_failed_run_names_its_run_directory(runs_dir: Path) -> None:
    """The error out of run() carries the run directory (to read, or to resume from)."""
    pipeline = data_pipeline(runs_dir, fail_on(0))
    with pytest.raises(StageError) as caught:
        pipeline.run(progress=False)
    run_dir = caught.value.run_dir
    assert run_dir is not None
    assert run_dir.parent == runs_dir / "data"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_a_flow_operator_is_named_by_its_stage_name() -> None:
    """An operator carrying stage_name (rxpipe.flow's factories set it) is named by it."""

    def double(source: reactivex.Observable[int]) -> reactivex.Observable[int]:
        return source.pipe(ops.map(lambda x: 2 * x))

    double.stage_name = "custom.double"  # type: ignore[attr-defined]
    assert Pipeline(double, double).stage_names == ("custom.double", "custom.double#2")


def test_a_plugin_factory_not_called_is_named() -> None:
    """Pipeline(..., access.batch) (the factory, not a stage) says how to call it."""
    with pytest.raises(
        ConfigError, match=r"^stages\[1\]: expected .*access\.batch\(\.\.\.\)\. Received: the"
    ):
        Pipeline(collect.digits(), access.batch)


def test_resuming_a_run_with_a_custom_stage_says_how(runs_dir: Path) -> None:
    """Only Python can rebuild a custom stage: Pipeline.resume says to use run(resume_from=)."""
    result = data_pipeline(runs_dir, ops.map(lambda batch: batch)).run(progress=False)
    with pytest.raises(ConfigError, match=r"custom stage 'custom\.stage4'.*run\(resume_from"):
        Pipeline.resume(result.run_dir)  # type: ignore[arg-type]


def test_a_flow_operator_named_like_a_plugin_stays_custom() -> None:
    """A stage_name such as "access.batch" is not a plugin: pipeline.toml could not rebuild
    it, so it is named as a custom stage."""

    def batch_like(source: reactivex.Observable[int]) -> reactivex.Observable[int]:
        return source

    batch_like.stage_name = "access.batch"  # type: ignore[attr-defined]
    pipeline = Pipeline(batch_like, source=reactivex.empty())
    assert pipeline.stage_names == ("custom.access.batch",)
    assert [p.use for p in pipeline.config.plugins] == ["custom.access.batch"]


def test_making_a_pipeline_of_custom_stages_loads_no_plugin() -> None:
    """Pipeline(...) does not load the plugin library (nor third-party entry points)."""
    import subprocess
    import sys

    script = (
        "import sys, reactivex, rxpipe\n"
        "rxpipe.Pipeline(lambda s: s, source=reactivex.empty())\n"
        "print('rxpipe.operators' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_subscribers_see_the_run_state_and_events_file_already_written(runs_dir: Path) -> None:
    """A RunCompleted subscriber reads run.json as completed; every event a pipeline.events
    subscriber gets is in events.jsonl already."""
    from rxpipe import Event, RunCompleted

    pipeline = Pipeline(collect.iris(), access.batch(50), name="iris", runs_dir=runs_dir)
    seen: list[tuple[int, bool, str | None]] = []

    def check(event: Event) -> None:
        run_dir = runs_dir / "iris"
        [folder] = run_dir.iterdir()
        written = (folder / "events.jsonl").read_text().splitlines()
        in_file = any(json.loads(line)["seq"] == event.seq for line in written)
        state = None
        if isinstance(event, RunCompleted):
            state = json.loads((folder / "run.json").read_text())["status"]
        seen.append((event.seq, in_file, state))

    pipeline.events.subscribe(check)
    pipeline.run(progress=False)
    assert seen
    assert all(in_file for _, in_file, _ in seen)
    assert seen[-1][2] == "completed"
