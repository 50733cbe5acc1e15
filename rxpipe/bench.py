"""``Pipeline.bench`` / ``rxpipe bench``: each stage's throughput and the bottleneck.

Runs the data part of a pipeline (the stages before its ``models.*`` stage) for one
pass over the data through :meth:`Pipeline.run <rxpipe.Pipeline.run>`, so every stage
is instrumented as in a real run, after an untimed warm-up run up to the first batch
(what a process pays once, e.g. imports or a table loaded once and kept, is not taken
for a stage's throughput), and turns the run's accounting
(:class:`~rxpipe.context.StageCounts`) into a :class:`BenchReport`: per stage batches/s,
samples/s, the share of the wall time it was busy with its own work, how often its
bounded buffers were found empty or full, and which stage is the bottleneck, with a
hint. Throughput snapshots taken during the run give each stage's rate over time
(for ``--plot``).

Example:
    >>> import tempfile
    >>> from rxpipe import Pipeline
    >>> from rxpipe.operators import access, collect
    >>> runs = tempfile.mkdtemp()
    >>> report = Pipeline(collect.digits(), access.batch(500), runs_dir=runs).bench()
    >>> [s.stage for s in report.stages]
    ['collect.digits', 'access.batch']
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from rxpipe.context import in_epoch
from rxpipe.events import Event, ThroughputSnapshot

if TYPE_CHECKING:
    from rxpipe.pipeline import Pipeline

__all__ = [
    "BOTTLENECK_BUSY",
    "BenchReport",
    "StageBench",
    "TrainingBench",
    "bench",
    "bottleneck_hint",
    "check_plot_path",
    "no_bottleneck_hint",
    "plot_report",
]

_DATA_KINDS = frozenset({"collect", "access", "process", "custom"})


@attrs.frozen
class StageBench:
    """One stage's throughput in a :class:`BenchReport`.

    Attributes:
        stage: the stage's name in the pipeline.
        kind: its plugin kind (``"custom"`` for plain operators).
        batches: batches it emitted.
        samples: samples it emitted.
        batches_per_s: batches emitted per second of the run's wall time.
        samples_per_s: samples emitted per second of the run's wall time.
        busy_s: time spent in its own work (see :class:`~rxpipe.context.StageCounts`).
        busy_share: ``busy_s`` as a share of the run's wall time.
        buffer_empty: times its bounded buffer was found empty (it waited for upstream).
        buffer_full: times its bounded buffer was found full (upstream waited for it).
        samples_in: samples it took in.
        samples_dropped: samples it dropped.
        samples_failed: samples that failed in it.
    """

    stage: str
    kind: str
    batches: int
    samples: int
    batches_per_s: float
    samples_per_s: float
    busy_s: float
    busy_share: float
    buffer_empty: int = 0
    buffer_full: int = 0
    samples_in: int = 0
    samples_dropped: int = 0
    samples_failed: int = 0


@attrs.frozen
class TrainingBench:
    """End-to-end training throughput in a :class:`BenchReport`.

    Both runs train ``epochs`` timed epochs of ``steps_per_epoch`` steps each, after a
    first epoch that is not timed (it traces the train step).

    Attributes:
        steps: training steps timed in each run (``epochs * steps_per_epoch``: at least
            the steps asked for, rounded up to whole epochs).
        samples_per_s: training samples per second fed by the pipeline.
        compute_bound_samples_per_s: the same steps on one cached batch repeated (the
            model's compute-only bound: no data work at all).
        ratio: ``samples_per_s / compute_bound_samples_per_s`` (1: the data keeps up).
        data_wait_share: share of the step time the trainer waited for data.
        epochs: timed epochs.
        steps_per_epoch: steps in each epoch: a pass over the training data, or the
            steps asked for if a pass is longer.
    """

    steps: int
    samples_per_s: float
    compute_bound_samples_per_s: float
    ratio: float
    data_wait_share: float
    epochs: int = 1
    steps_per_epoch: int = 0


@attrs.frozen
class BenchReport:
    """What :meth:`Pipeline.bench <rxpipe.Pipeline.bench>` measured.

    Attributes:
        pipeline: the pipeline's name.
        run_dir: the bench run's directory (events.jsonl holds the snapshots).
        wall_s: wall time of the measured pass.
        stages: per-stage throughput, in pipeline order.
        bottleneck: the stage busy the largest share of the wall time, if that share is
            at least :data:`BOTTLENECK_BUSY` (``None``: no stage holds the pass back).
        hint: what to try about it, e.g. ``"process.decode_image is the bottleneck (busy 71%);
            try workers=2"``, or that no stage is the bottleneck.
        snapshots: the run's throughput snapshots (each stage's rate over time).
        training: with ``train_steps``, the training throughput against its bound.
    """

    pipeline: str
    run_dir: str
    wall_s: float
    stages: tuple[StageBench, ...]
    bottleneck: str | None
    hint: str
    snapshots: tuple[ThroughputSnapshot, ...] = ()
    training: TrainingBench | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field; snapshots as ``{elapsed_s, stages: {name: rate}}``."""
        return {
            "pipeline": self.pipeline,
            "run_dir": self.run_dir,
            "wall_s": self.wall_s,
            "bottleneck": self.bottleneck,
            "hint": self.hint,
            "stages": [attrs.asdict(s) for s in self.stages],
            "training": None if self.training is None else attrs.asdict(self.training),
            "snapshots": [
                {
                    "elapsed_s": snap.elapsed_s,
                    "stages": {
                        r.stage: {
                            "samples_per_s": r.samples_per_s,
                            "batches_per_s": r.batches_per_s,
                            "busy_share": r.busy_share,
                            "buffer_fill": r.buffer_fill,
                        }
                        for r in snap.stages
                    },
                }
                for snap in self.snapshots
            ],
        }

    def table(self) -> Any:
        """A rich table of the stages, captioned with the bottleneck hint."""
        from rich.table import Table

        table = Table(title=f"rxpipe bench: {self.pipeline} ({self.wall_s:.2f} s)")
        table.add_column("stage", no_wrap=True)
        for column in ("batches/s", "samples/s", "busy", "buffer empty", "buffer full"):
            table.add_column(column, justify="right")
        for s in self.stages:
            table.add_row(
                s.stage + (" *" if s.stage == self.bottleneck else ""),
                f"{s.batches_per_s:,.1f}",
                f"{s.samples_per_s:,.0f}",
                f"{s.busy_share:.0%}",
                str(s.buffer_empty),
                str(s.buffer_full),
            )
        caption = self.hint
        if self.training is not None:
            t = self.training
            caption += (
                f"\ntraining ({t.steps} steps: {t.epochs} x {t.steps_per_epoch}, after an "
                f"untimed epoch): {t.samples_per_s:,.0f} samples/s, "
                f"{t.ratio:.0%} of the compute-only bound "
                f"({t.compute_bound_samples_per_s:,.0f} samples/s); "
                f"waited for data {t.data_wait_share:.0%} of the step time"
            )
        table.caption = caption
        return table


def _accepts_workers(stage_name: str) -> bool:
    from rxpipe.errors import UnknownPluginError
    from rxpipe.registry import registry

    try:
        info = registry.get(stage_name.partition("#")[0])
    except UnknownPluginError:
        return False
    return any(p.name == "workers" for p in info.params)


BOTTLENECK_BUSY = 0.5
"""The busy share of the pass from which the busiest stage is named the bottleneck. A
stage busy for less holds nothing back: most of the pass is spent elsewhere (handing
batches between stages, starting and ending the pass), and no stage's hint would help."""


def no_bottleneck_hint(busiest: StageBench) -> str:
    """What bench says when no stage is busy for :data:`BOTTLENECK_BUSY` of the pass.

    Example:
        >>> s = StageBench("access.split", "access", 29, 1797, 2980.9, 243486.0, 0.0006, 0.08)
        >>> no_bottleneck_hint(s)
        'no stage is the bottleneck: the busiest, access.split, was busy 8% of the pass; --train-steps N (train_steps=N) shows whether training waits for the data'
    """  # noqa: E501
    return (
        f"no stage is the bottleneck: the busiest, {busiest.stage}, was busy "
        f"{busiest.busy_share:.0%} of the pass; --train-steps N (train_steps=N) shows "
        "whether training waits for the data"
    )


def _verdict(
    rows: Sequence[StageBench], params: Sequence[dict[str, Any]]
) -> tuple[str | None, str]:
    """The bottleneck stage of ``rows`` (``None`` if none) and the hint about it.

    Example:
        >>> rows = [StageBench("collect.x", "collect", 1, 8, 1.0, 8.0, 0.1, 0.1),
        ...         StageBench("custom.slow", "custom", 1, 8, 1.0, 8.0, 0.8, 0.8)]
        >>> _verdict(rows, [{}, {}])[0], _verdict(rows[:1], [{}])
        ('custom.slow', (None, 'no stage is the bottleneck: the busiest, collect.x, ...'))
    """
    worst = max(rows, key=lambda r: r.busy_share)
    if worst.busy_share < BOTTLENECK_BUSY:
        return None, no_bottleneck_hint(worst)
    return worst.stage, bottleneck_hint(worst, params[rows.index(worst)])


def bottleneck_hint(stage: StageBench, params: dict[str, Any] | None = None) -> str:
    """A concrete suggestion for the bottleneck ``stage`` (built with ``params``).

    Example:
        >>> s = StageBench("custom.slow", "custom", 4, 128, 2.0, 64.0, 1.8, 0.9)
        >>> bottleneck_hint(s)
        'custom.slow is the bottleneck (busy 90%); make it faster or run it on worker threads with rxpipe.flow.parallel_map(..., workers=2)'
    """  # noqa: E501
    head = f"{stage.stage} is the bottleneck (busy {stage.busy_share:.0%}); "
    if _accepts_workers(stage.stage):
        workers = int((params or {}).get("workers", 1) or 1)
        return head + f"try workers={workers + 1}"
    if stage.kind == "collect":
        return head + (
            "add access.cache after it (later epochs read the cache) and access.prefetch "
            "(read ahead while the later stages work)"
        )
    if stage.kind == "custom":
        return head + (
            "make it faster or run it on worker threads with "
            "rxpipe.flow.parallel_map(..., workers=2)"
        )
    return head + "add access.prefetch after it, or access.cache if its output is the same"


def _data_stages(pipeline: Pipeline) -> int:
    """How many leading stages are the data part (before the first models.* stage)."""
    for index, kind in enumerate(pipeline._kinds):
        if kind not in _DATA_KINDS:
            return index
    return len(pipeline.stages)


def bench(
    pipeline: Pipeline,
    train_steps: int | None = None,
    *,
    snapshot_interval: float = 1.0,
) -> BenchReport:
    """Run ``pipeline``'s data stages for one pass and report each stage's throughput.

    The measured pass follows an untimed warm-up: the data stages run until their first
    batch (see :func:`_warm_up`), so that one-time costs (imports, a data set loaded once
    per process, functions traced on first use) do not make a stage look like the
    bottleneck of every epoch.

    With ``train_steps``, also trains: the pipeline up to its ``train.*`` stage, fed by
    its data, then the same on one cached batch repeated (the model's compute-only
    bound). An epoch is a pass over the training data, cut to ``train_steps`` steps if
    it is longer; a first, untimed run of one epoch pays TensorFlow's one-time start-up
    and finds the epoch's length. Each measured run then trains one untimed epoch (which
    traces the train step) and as many timed epochs as reach ``train_steps`` steps;
    both runs time the same number of steps (:attr:`TrainingBench.steps`).

    Args:
        pipeline: the pipeline to measure.
        train_steps: also measure this many training steps.
        snapshot_interval: seconds between throughput snapshots.

    Returns:
        The report.

    Raises:
        ConfigError: if the pipeline has no data stages, or for ``train_steps``.
    """
    from rxpipe.errors import ConfigError

    if train_steps is not None and (
        isinstance(train_steps, bool) or not isinstance(train_steps, int) or train_steps < 1
    ):
        raise ConfigError(f"train_steps: expected an int >= 1. Received: {train_steps!r}")
    count = _data_stages(pipeline)
    if count == 0:
        raise ConfigError(
            "bench: expected data stages (collect, access, process) before the model. "
            f"Received: {', '.join(pipeline.stage_names)}"
        )
    stages = pipeline.stages[:count]
    _warm_up(pipeline, stages)
    data = _sub_pipeline(pipeline, stages)
    data._bench_mode = True
    snapshots: list[ThroughputSnapshot] = []

    def keep(event: Event) -> None:
        if isinstance(event, ThroughputSnapshot):
            snapshots.append(event)

    with in_epoch(1):  # a training epoch's data: process.augment works, shuffles draw
        result = data.run(progress=False, subscribers=[keep], snapshot_interval=snapshot_interval)
    wall = max(result.duration_s, 1e-9)
    rows = []
    for name, kind in zip(data.stage_names, data._kinds, strict=True):
        c = result.counts[name]
        rows.append(
            StageBench(
                stage=name,
                kind=kind,
                batches=c.batches_out,
                samples=c.samples_out,
                batches_per_s=c.batches_out / wall,
                samples_per_s=c.samples_out / wall,
                busy_s=c.busy_s,
                busy_share=min(1.0, c.busy_s / wall),
                buffer_empty=c.buffer_empty,
                buffer_full=c.buffer_full,
                samples_in=c.samples_in,
                samples_dropped=c.samples_dropped,
                samples_failed=c.samples_failed,
            )
        )
    params = [dict(getattr(stage, "params", {}) or {}) for stage in stages]
    bottleneck, hint = _verdict(rows, params)
    training = None
    if train_steps is not None:
        training = _bench_training(pipeline, train_steps)
    return BenchReport(
        pipeline=pipeline.name,
        run_dir=str(result.run_dir),
        wall_s=result.duration_s,
        stages=tuple(rows),
        bottleneck=bottleneck,
        hint=hint,
        snapshots=tuple(snapshots),
        training=training,
    )


BENCH_SUFFIX = "-bench"
"""Bench runs go to ``<runs_dir>/<name>-bench/``, apart from the pipeline's own runs."""


def _sub_pipeline(pipeline: Pipeline, stages: Sequence[Any]) -> Pipeline:
    """A pipeline of ``stages`` with ``pipeline``'s seed, runs directory and source, named
    ``<name>-bench`` so that its runs are not taken for the pipeline's."""
    from rxpipe.pipeline import Pipeline as _Pipeline

    return _Pipeline(
        *stages,
        name=f"{pipeline.name}{BENCH_SUFFIX}",
        seed=pipeline.seed,
        runs_dir=pipeline.runs_dir,
        source=pipeline.source,
    )


def _warm_up(pipeline: Pipeline, stages: Sequence[Any]) -> None:
    """Run ``stages`` until their first batch, untimed, and remove that run's directory.

    A pipeline fed by a ``source`` of its own is not warmed up: that source may not
    replay (a generator), and the measured pass would miss what the warm-up took.
    """
    if not pipeline._default_source:
        return
    from reactivex import operators as ops

    def first_batch(source: Any) -> Any:
        return source.pipe(ops.take(1))

    warm = _sub_pipeline(pipeline, [*stages, first_batch])
    with in_epoch(1):
        result = warm.run(progress=False, snapshot_interval=0)
    if result.run_dir is not None:
        shutil.rmtree(result.run_dir, ignore_errors=True)


def _cached_batch(steps: int, batch_size: int | None) -> Any:
    """A stage replacing the data by its first training batch, repeated: enough for
    ``steps`` training steps of ``batch_size`` samples (``None``: the batch's size)."""
    import reactivex
    from reactivex import operators as ops

    from rxpipe.batch import Batch, Split

    def repeated(batch: Batch) -> reactivex.Observable[Batch]:
        per_step = 1 if batch_size is None else -(-batch_size // max(1, len(batch)))
        return reactivex.repeat_value(batch, steps * per_step)

    def cached_batch(source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
        first = source.pipe(
            ops.filter(lambda b: isinstance(b, Batch) and b.split is Split.TRAIN), ops.take(1)
        )
        return first.pipe(ops.flat_map(repeated))

    return cached_batch


def _timed_epochs(ended: Sequence[Any]) -> tuple[float, float]:
    """Samples/s and data-wait share over the epochs ``ended`` (``EpochEnded`` events).

    Each epoch's training time is its ``samples / samples_per_s``: the rate over all of
    them is their samples over their summed time, the wait share the time-weighted mean.
    """
    times = [e.samples / e.samples_per_s for e in ended if e.samples_per_s > 0]
    if len(times) < len(ended) or not sum(times):
        return 0.0, 0.0
    waits = [e.data_wait_share * t for e, t in zip(ended, times, strict=True)]
    return sum(e.samples for e in ended) / sum(times), sum(waits) / sum(times)


def _bench_training(pipeline: Pipeline, steps: int) -> TrainingBench:
    from rxpipe.errors import ConfigError
    from rxpipe.events import EpochEnded
    from rxpipe.registry import registry

    kinds = pipeline._kinds
    if "models" not in kinds or "train" not in kinds[kinds.index("models") :]:
        raise ConfigError(
            "--train-steps: expected a models.* stage followed by a train.* stage. "
            f"Received: {', '.join(pipeline.stage_names)}"
        )
    model_at = kinds.index("models")
    train_at = kinds.index("train", model_at)
    op = pipeline.stages[train_at]
    params = dict(getattr(op, "params", {}) or {})
    params.update(validate=False, checkpoint=False, patience=None)
    name = pipeline.stage_names[train_at].partition("#")[0]

    def train(epochs: int, steps_per_epoch: int) -> Any:
        fit = dict(params, epochs=epochs, steps_per_epoch=steps_per_epoch)
        return registry.create(name, fit, f"plugins[{train_at}]")

    def epochs_of(stages: Sequence[Any]) -> tuple[list[EpochEnded], int]:
        """The run's EpochEnded events, and the steps of its last epoch."""
        ended: list[EpochEnded] = []
        keep = lambda e: ended.append(e) if isinstance(e, EpochEnded) else None  # noqa: E731
        result = _sub_pipeline(pipeline, stages).run(
            progress=False, subscribers=[keep], snapshot_interval=0
        )
        trained = result.trained
        done = trained.stats.get("steps_per_epoch") if trained is not None else None
        return ended, int(done or 0)

    head = list(pipeline.stages[:model_at])
    model = list(pipeline.stages[model_at:train_at])
    # TensorFlow's one-time start-up, untimed; and how long an epoch is (at most `steps`).
    _, per_epoch = epochs_of([*head, *model, train(1, steps)])
    per_epoch = max(1, per_epoch)
    timed = -(-steps // per_epoch)  # epochs
    fed, _ = epochs_of([*head, *model, train(1 + timed, per_epoch)])
    batch_size = params.get("batch_size")
    cached = _cached_batch(per_epoch, batch_size if isinstance(batch_size, int) else None)
    bound, _ = epochs_of([*head, cached, *model, train(1 + timed, per_epoch)])
    rate, wait = _timed_epochs(fed[1:])
    best, _ = _timed_epochs(bound[1:])
    return TrainingBench(
        steps=timed * per_epoch,
        samples_per_s=rate,
        compute_bound_samples_per_s=best,
        ratio=rate / best if best > 0 else 0.0,
        data_wait_share=wait,
        epochs=timed,
        steps_per_epoch=per_epoch,
    )


_NEEDS_MATPLOTLIB = "--plot: expected matplotlib (pip install 'rxpipe[plot]'). Received: {}"


def check_plot_path(path: str | Path) -> Path:
    """Check a ``--plot`` path before the bench runs (rather than at the end, when saving).

    The check: matplotlib is installed, and can write the file type the path's suffix
    names (``.png``, ``.svg``, ``.pdf``...: what its canvas reports as supported, less
    ``.pgf`` when the TeX program it needs is not installed; it imports matplotlib's
    canvas base, not pyplot).

    Args:
        path: where the chart is to be written.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: when matplotlib is not installed, for a suffix it cannot write
            (naming ``--plot``, the suffixes it can write and ``path``), or when ``path``
            is a directory.

    Example:
        >>> check_plot_path("stages.svg").name
        'stages.svg'
        >>> check_plot_path("stages.txt")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: --plot: expected a file name ending in one of .avif, ...
    """
    from rxpipe.errors import ConfigError

    try:
        import matplotlib
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError as error:
        raise ConfigError(_NEEDS_MATPLOTLIB.format(error)) from error
    out = Path(path)
    supported = sorted(FigureCanvasBase.get_supported_filetypes())
    if shutil.which(str(matplotlib.rcParams["pgf.texsystem"])) is None:
        supported = [s for s in supported if s != "pgf"]  # listed, but writing it runs TeX
    suffix = out.suffix.lower().removeprefix(".")
    if suffix not in supported:
        raise ConfigError(
            "--plot: expected a file name ending in one of "
            f"{', '.join('.' + s for s in supported)}. Received: {str(path)!r}"
            + ("" if out.suffix else " (no suffix)")
        )
    if out.is_dir():
        raise ConfigError(
            f"--plot: expected a file name for the chart. Received: {str(path)!r}, a directory"
        )
    return out


def plot_report(report: BenchReport, path: str | Path) -> Path:
    """Draw each stage's samples/s over time (from the snapshots) into a chart at ``path``.

    A pass shorter than the snapshot interval has one snapshot (a point per stage): the
    chart's title says so, and that a shorter interval draws a curve.

    The file type is the suffix's (``.png``, ``.svg``, ``.pdf``...: see
    :func:`check_plot_path`, which the CLI calls before the bench runs). Needs matplotlib
    (``pip install rxpipe[plot]``).

    Raises:
        ConfigError: when matplotlib is not installed, or for a path
            :func:`check_plot_path` refuses.
    """
    out = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: Sequence[str] = [s.stage for s in report.stages]
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name in names:
        xs = [snap.elapsed_s for snap in report.snapshots]
        ys = [
            next((r.samples_per_s for r in snap.stages if r.stage == name), 0.0)
            for snap in report.snapshots
        ]
        axes.plot(xs, ys, marker="o", label=name)
    axes.set_xlabel("seconds since the start")
    axes.set_ylabel("samples/s")
    title = f"{report.pipeline}: throughput per stage"
    if len(report.snapshots) < 2:  # a point per stage, or nothing: say why
        title += (
            f"\n{len(report.snapshots) or 'no'} snapshot{'s' * (len(report.snapshots) != 1)}: "
            f"the pass took {report.wall_s:.2g} s; a shorter --interval draws a curve"
        )
    axes.set_title(title)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
