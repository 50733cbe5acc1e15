"""Tests for throughput measurement: stage timing, snapshots, Pipeline.bench and rxpipe bench."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops
from rich.console import Console

from rxpipe import Batch, Pipeline, Stage, ThroughputSnapshot
from rxpipe.bench import StageBench, _verdict, bottleneck_hint
from rxpipe.cli import main
from rxpipe.events import EventBus, StageCompleted, StageRate
from rxpipe.operators import access, process
from rxpipe.subscribers import ProgressBar
from rxpipe.testing import EventRecorder, from_arrays

SAMPLES, BATCH = 240, 8  # 30 batches


def sleepy(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    """A deliberately slow stage: 10 ms per batch."""

    def work(batch: Batch) -> Batch:
        time.sleep(0.01)
        return batch

    return source.pipe(ops.map(work))


def _source() -> reactivex.Observable[Batch]:
    features = np.arange(SAMPLES * 4, dtype=np.float32).reshape(SAMPLES, 4)
    return from_arrays(features, np.zeros(SAMPLES, dtype=np.int64), batch_size=BATCH)


def _slow_pipeline(runs_dir: Path) -> Pipeline:
    return Pipeline(
        process.normalize(scale=0.5),
        access.prefetch(2),
        sleepy,
        name="slow",
        runs_dir=runs_dir,
        source=_source(),
    )


@pytest.mark.usefixtures("no_thread_leak")
def test_bench_names_the_slow_stage_as_the_bottleneck(runs_dir: Path) -> None:
    """A stage sleeping per batch is reported as the bottleneck, with a hint."""
    report = _slow_pipeline(runs_dir).bench(snapshot_interval=0.05)
    assert [s.stage for s in report.stages] == [
        "process.normalize",
        "access.prefetch",
        "custom.sleepy",
    ]
    assert report.bottleneck == "custom.sleepy"
    assert report.hint.startswith("custom.sleepy is the bottleneck (busy ")
    slow = report.stages[-1]
    assert slow.busy_share > max(s.busy_share for s in report.stages[:-1])
    assert report.stages[1].buffer_full > 0  # the prefetch waited for the slow stage


def _sleep(seconds: float) -> Any:
    def work(batch: Batch) -> Batch:
        time.sleep(seconds)
        return batch

    return work


@pytest.mark.usefixtures("no_thread_leak")
def test_busy_time_of_a_stage_with_workers_is_its_workers_time(runs_dir: Path) -> None:
    """A stage working on 2 threads is as busy as its workers, not as long as it waits.

    Decoding takes 20 ms per batch on 2 workers (10 ms of wall time per batch); the next
    stage takes 30 ms per batch, so decode's workers are busy about a third of the time,
    though its input waits for a free worker nearly all the time. Alone, it is the
    bottleneck.
    """
    from rxpipe.flow import map_batches

    decode = Stage("custom.decode", map_batches("custom.decode", _sleep(0.02), workers=2))
    after = Stage("custom.after", map_batches("custom.after", _sleep(0.03)))

    def bench(*stages: Any) -> Any:
        return Pipeline(*stages, name="workers", runs_dir=runs_dir, source=_source()).bench(
            snapshot_interval=0.05
        )

    slow_downstream = bench(decode, access.prefetch(2), after)
    busy = {s.stage: s.busy_share for s in slow_downstream.stages}
    assert slow_downstream.bottleneck == "custom.after"
    assert busy["custom.decode"] < 0.5 < busy["custom.after"]
    alone = bench(process.normalize(scale=0.5), decode)
    assert alone.bottleneck == "custom.decode"
    assert alone.stages[-1].busy_share > 0.8


@pytest.mark.usefixtures("no_thread_leak")
def test_bench_counts_match_the_runs_accounting(runs_dir: Path) -> None:
    """Every stage's batches and samples in the report are those of its StageCompleted event."""
    report = _slow_pipeline(runs_dir).bench(snapshot_interval=0)
    assert Path(report.run_dir).parent == runs_dir / f"{report.pipeline}-bench"  # not its runs
    lines = (Path(report.run_dir) / "events.jsonl").read_text().splitlines()
    completed = {e["stage"]: e for e in map(json.loads, lines) if e["event"] == "stage_completed"}
    for stage in report.stages:
        event = completed[stage.stage]
        assert (stage.batches, stage.samples) == (event["batches_out"], event["samples_out"])
        assert stage.samples == SAMPLES
        assert stage.buffer_full == event["buffer_full"]
        assert stage.busy_s == pytest.approx(event["busy_s"])


@pytest.mark.usefixtures("no_thread_leak")
def test_run_publishes_snapshots_and_stage_timing(runs_dir: Path) -> None:
    """A run longer than the snapshot interval publishes ThroughputSnapshot events, then stops."""
    recorder = EventRecorder()
    result = _slow_pipeline(runs_dir).run(
        progress=False, subscribers=[recorder], snapshot_interval=0.05
    )
    snapshots = [e for e in recorder.events if isinstance(e, ThroughputSnapshot)]
    assert snapshots
    assert {r.stage for r in snapshots[-1].stages} <= set(result.counts)
    assert all(r.samples <= SAMPLES for s in snapshots for r in s.stages)
    counts = result.counts["custom.sleepy"]
    assert counts.busy_s > 0
    assert counts.samples_per_s > 0
    assert counts.batches_per_s > 0
    assert 0 < counts.busy_share <= 1
    completed = [e for e in recorder.events if isinstance(e, StageCompleted)]
    assert all(e.samples_per_s > 0 for e in completed)
    assert not [t for t in threading.enumerate() if t.name.startswith("rxpipe-snapshots")]


def gather(source: reactivex.Observable[Batch]) -> reactivex.Observable[Any]:
    """A stage emitting one list of every batch at the end (no batches)."""
    return source.pipe(ops.to_list())


def last(source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
    """A stage whose only input, a list, comes at the end of the run (like a trainer's)."""
    return source.pipe(ops.map(len))


@pytest.mark.usefixtures("no_thread_leak")
def test_a_stage_waiting_for_its_first_input_is_not_busy(runs_dir: Path) -> None:
    """Until its input begins, a stage taking no batches shows as idle, not 100% busy."""
    recorder = EventRecorder()
    pipeline = Pipeline(sleepy, gather, last, name="waiting", runs_dir=runs_dir, source=_source())
    pipeline.run(progress=False, subscribers=[recorder], snapshot_interval=0.05)
    rates = [
        {r.stage: r for r in e.stages} for e in recorder.events if isinstance(e, ThroughputSnapshot)
    ]
    waiting = [r["custom.last"].busy_share for r in rates if "custom.last" in r]
    assert len(waiting) >= 3  # the 30 sleepy batches take 0.3 s
    assert max(waiting) < 0.5
    assert max(r["custom.sleepy"].busy_share for r in rates) > 0.5


def test_no_snapshots_when_the_interval_is_zero(runs_dir: Path) -> None:
    """snapshot_interval=0 turns the snapshot timer off."""
    recorder = EventRecorder()
    _slow_pipeline(runs_dir).run(progress=False, subscribers=[recorder], snapshot_interval=0)
    assert not [e for e in recorder.events if isinstance(e, ThroughputSnapshot)]


def test_hint_suggests_more_workers_for_stages_that_take_workers() -> None:
    """A bottleneck plugin with a workers parameter gets 'try workers=N+1'."""
    stage = StageBench("process.normalize", "process", 10, 80, 5.0, 40.0, 1.5, 0.71)
    assert bottleneck_hint(stage, {"workers": 1}) == (
        "process.normalize is the bottleneck (busy 71%); try workers=2"
    )
    shuffle = StageBench("access.shuffle", "access", 10, 80, 5.0, 40.0, 1.5, 0.5)
    assert "add access.prefetch" in bottleneck_hint(shuffle)


def test_no_stage_busy_for_half_the_pass_is_named_the_bottleneck() -> None:
    """A stage busy 8% of the pass holds nothing back: no bottleneck, and no advice to add
    a buffer or a cache (the digits example got 'add access.prefetch' at 8%)."""
    split = StageBench("access.split", "access", 29, 1797, 2980.9, 243486.0, 0.0006, 0.08)
    assert _verdict([split], [{}]) == (
        None,
        "no stage is the bottleneck: the busiest, access.split, was busy 8% of the pass; "
        "--train-steps N (train_steps=N) shows whether training waits for the data",
    )
    decode = StageBench("process.decode_image", "process", 9, 99, 1.0, 11.0, 0.5, 0.5)
    assert _verdict([split, decode], [{}, {"workers": 2}]) == (
        "process.decode_image",
        "process.decode_image is the bottleneck (busy 50%); try workers=3",
    )


def test_progress_bar_shows_a_stage_summary() -> None:
    """The progress bar shows a throughput snapshot as one line naming each stage."""
    output = io.StringIO()
    bar = ProgressBar(Console(file=output, force_terminal=True, color_system=None, width=200))
    bus = EventBus("r")
    bus.events.subscribe(bar)
    rate = StageRate("process.resize", 40, 320, 20.0, 160.0, 0.71, 0.5)
    bus.publish(ThroughputSnapshot, elapsed_s=5.0, interval_s=5.0, stages=(rate,))
    bar.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.getvalue())
    assert "process.resize 160/s (busy 71%, buffer 50%)" in text


def _write_pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "peek.toml"
    path.write_text(
        '[pipeline]\nname = "peek"\n\n[[plugins]]\nuse = "collect.digits"\n\n'
        '[[plugins]]\nuse = "access.batch"\nsize = 64\n\n'
        '[[plugins]]\nuse = "process.normalize"\n\n'
        '[[plugins]]\nuse = "models.cnn"\n\n[[plugins]]\nuse = "train.fit"\n'
    )
    return path


@pytest.mark.usefixtures("no_thread_leak")
def test_cli_bench_json_is_one_complete_object(
    tmp_path: Path, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rxpipe bench --json --plot` prints one valid JSON object and writes the chart."""
    plot = tmp_path / "out.png"
    argv = [str(_write_pipeline(tmp_path)), "--json", "--plot", str(plot)]
    code = main(["bench", *argv, "--runs-dir", str(runs_dir), "--interval", "0.05"])
    assert code == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert set(report) == {"pipeline", "run_dir", "wall_s", "bottleneck", "hint", "stages",
                           "snapshots", "training"}  # fmt: skip
    assert [s["stage"] for s in report["stages"]] == [
        "collect.digits",
        "access.batch",
        "process.normalize",
    ]
    assert all(s["samples"] == 1797 for s in report["stages"])
    busiest = max(report["stages"], key=lambda s: s["busy_share"])
    if report["bottleneck"] is None:  # a light pipeline: no stage busy half the pass
        assert busiest["busy_share"] < 0.5
        assert report["hint"].startswith(
            f"no stage is the bottleneck: the busiest, {busiest['stage']}"
        )
    else:
        assert report["bottleneck"] == busiest["stage"]
    assert report["snapshots"]  # bench publishes a last snapshot at the end
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_cli_bench_table_and_unsupported_train_steps(
    tmp_path: Path, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json bench prints a table naming the bottleneck; --train-steps 0 is refused."""
    path = str(_write_pipeline(tmp_path))
    assert main(["bench", path, "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "is the bottleneck" in out  # "… is the bottleneck" or "no stage is the bottleneck"
    assert "process.normalize" in out
    assert main(["bench", path, "--runs-dir", str(runs_dir), "--train-steps", "0"]) == 2


@pytest.mark.slow
@pytest.mark.usefixtures("no_thread_leak")
def test_bench_with_training_steps_reports_the_compute_bound(
    tmp_path: Path, runs_dir: Path
) -> None:
    """With train_steps, bench reports training samples/s, its compute-only bound and data wait."""
    path = _write_pipeline(tmp_path)
    text = path.read_text().replace('use = "models.cnn"', 'use = "models.cnn"\nfilters = [4]')
    path.write_text(text.replace('[[plugins]]\nuse = "models.cnn"', SPLIT + 'use = "models.cnn"'))
    pipeline = Pipeline.from_file(path, [f"pipeline.runs_dir={json.dumps(str(runs_dir))}"])
    report = pipeline.bench(train_steps=4, snapshot_interval=0)
    training = report.training
    assert training is not None
    assert training.steps == 4
    assert training.samples_per_s > 0
    assert training.compute_bound_samples_per_s > 0
    assert training.ratio == pytest.approx(
        training.samples_per_s / training.compute_bound_samples_per_s
    )
    assert 0 <= training.data_wait_share < 1
    assert report.to_dict()["training"]["steps"] == 4


SPLIT = (
    '[[plugins]]\nuse = "access.split"\ntrain = 0.8\nvalidation = 0.1\ntest = 0.1\n\n[[plugins]]\n'
)


def _epochs_by_run(runs: Path) -> list[list[dict[str, Any]]]:
    """The EpochEnded events of each run under ``runs``, runs in the order they started."""
    found = []
    for path in runs.glob("*/*/events.jsonl"):
        events = [json.loads(line) for line in path.read_text().splitlines()]
        found.append((events[0]["time"], [e for e in events if e["event"] == "epoch_ended"]))
    return [ended for _, ended in sorted(found, key=lambda pair: pair[0])]


@pytest.mark.slow
@pytest.mark.usefixtures("no_thread_leak")
def test_bench_trains_whole_epochs_until_the_steps_asked_for(
    tmp_path: Path, runs_dir: Path
) -> None:
    """When a pass over the data is shorter than train_steps, both runs loop over epochs.

    The digits come in 29 batches, so 50 steps take 2 epochs, after an untimed first epoch
    (which traces the step); the rate is that of the timed epochs.
    """
    path = _write_pipeline(tmp_path)
    text = path.read_text().replace('use = "models.cnn"', 'use = "models.cnn"\nfilters = [4]')
    path.write_text(text.replace('[[plugins]]\nuse = "models.cnn"', SPLIT + 'use = "models.cnn"'))
    pipeline = Pipeline.from_file(path, [f"pipeline.runs_dir={json.dumps(str(runs_dir))}"])
    report = pipeline.bench(train_steps=50, snapshot_interval=0)
    training = report.training
    assert training is not None
    assert (training.steps_per_epoch, training.epochs) == (29, 2)
    assert training.steps == training.epochs * training.steps_per_epoch >= 50
    data, warm_up, fed, bound = _epochs_by_run(runs_dir)
    assert (data, len(warm_up)) == ([], 1)
    assert len(fed) == len(bound) == 1 + training.epochs
    timed = [1 / e["samples_per_s"] for e in fed[1:]]
    assert training.samples_per_s == pytest.approx(len(timed) / sum(timed))
    assert training.samples_per_s > fed[0]["samples_per_s"]  # the first epoch traced the step
    table = io.StringIO()
    Console(file=table, width=300).print(report.table())
    steps = f"{training.steps} steps: {training.epochs} x {training.steps_per_epoch}"
    assert f"training ({steps}, after an untimed epoch)" in table.getvalue()


def test_training_rate_weighs_epochs_by_their_samples() -> None:
    """Epochs of 1,000 samples at 1,000/s and 3,000 at 3,000/s: 4,000 samples in 2 s."""
    from rxpipe.bench import _timed_epochs
    from rxpipe.events import EpochEnded

    def ended(samples: int, rate: float, wait: float) -> EpochEnded:
        return EpochEnded(
            run_id="r", seq=0, time=0.0, epoch=1, epochs=2, logs={}, duration_s=1.0,
            samples_per_s=rate, data_wait_share=wait, steps=1, samples=samples,
        )  # fmt: skip

    rate, wait = _timed_epochs([ended(1000, 1000.0, 0.5), ended(3000, 3000.0, 0.0)])
    assert (rate, wait) == (2000.0, 0.25)


@pytest.mark.usefixtures("no_thread_leak")
def test_a_one_time_cost_is_not_taken_for_the_bottleneck(runs_dir: Path) -> None:
    """A stage paying 0.4 s once per process (as a data set loaded once and kept) is not the
    bottleneck of a pass in which another stage works 5 ms a batch; the untimed warm-up
    leaves no run directory behind."""
    from rxpipe.flow import map_batches
    from rxpipe.operators import collect

    loaded: list[bool] = []

    def load_once(batch: Batch) -> Batch:
        if not loaded:
            time.sleep(0.4)
            loaded.append(True)
        return batch

    pipeline = Pipeline(
        collect.digits(),
        access.batch(64),  # 29 batches: 145 ms in custom.steady
        Stage("custom.load_once", map_batches("custom.load_once", load_once)),
        Stage("custom.steady", map_batches("custom.steady", _sleep(0.005))),
        name="once",
        runs_dir=runs_dir,
    )
    report = pipeline.bench(snapshot_interval=0)
    assert report.bottleneck == "custom.steady"
    assert report.stages[-1].samples == 1797
    assert [p.name for p in (runs_dir / "once-bench").iterdir()] == [Path(report.run_dir).name]


def test_a_pipeline_on_a_source_of_its_own_is_measured_whole(runs_dir: Path) -> None:
    """A source that cannot replay (a generator) is not warmed up: every sample is measured."""
    batches = iter(_source().pipe(ops.to_list()).run())
    pipeline = Pipeline(
        process.normalize(scale=0.5),
        name="once-only",
        runs_dir=runs_dir,
        source=reactivex.from_iterable(batches),
    )
    report = pipeline.bench(snapshot_interval=0)
    assert report.stages[0].samples == SAMPLES


@pytest.mark.usefixtures("no_thread_leak")
def test_bench_reads_the_data_as_a_training_epoch_does(runs_dir: Path) -> None:
    """The measured pass (and the warm-up) run in epoch 1, as train.fit reads its first
    epoch: process.augment works there (it passes batches as they are outside training),
    so its cost is measured."""
    from rxpipe.context import current_epoch

    epochs: set[int] = set()
    changed: set[bool] = set()

    def record(batch: Batch) -> Batch:
        epochs.add(current_epoch())
        changed.add(bool(np.asarray(batch.features).any()))  # brightened from all zeros
        return batch

    images = np.zeros((SAMPLES, 32, 32, 3), np.uint8)
    pipeline = Pipeline(
        access.batch(BATCH),
        process.augment(brightness=0.5, seed=0),
        lambda source: source.pipe(ops.map(record)),
        name="augmented",
        runs_dir=runs_dir,
        source=from_arrays(images, np.zeros(SAMPLES, np.int64), batch_size=SAMPLES, split="train"),
    )
    pipeline.bench()
    assert epochs == {1}
    assert True in changed
