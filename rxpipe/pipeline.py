"""Pipelines: a serial chain of stages, run with events, a run directory and accounting."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import os
import secrets
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import reactivex
import tomli_w

from rxpipe.config import (
    PipelineConfig,
    PluginSpec,
    apply_overrides,
    check_name,
    check_seed,
    load_config,
    naming_origin,
)
from rxpipe.context import RunContext, atomic_write, running
from rxpipe.errors import (
    ConfigError,
    PipelineCancelled,
    RxpipeError,
    UnknownPluginError,
    is_configuration_error,
)
from rxpipe.events import (
    Event,
    EventBus,
    EventSubject,
    RunCompleted,
    RunFailed,
    RunStarted,
    SubscriberError,
)
from rxpipe.flow import check_accounting, instrument
from rxpipe.imports import import_path_of
from rxpipe.interrupts import stopping_on_signals
from rxpipe.lineage import lineage
from rxpipe.registry import registry
from rxpipe.result import RunResult
from rxpipe.stage import Operator, Stage

if TYPE_CHECKING:
    from rxpipe.bench import BenchReport

__all__ = ["Pipeline"]

_POLL_S = 0.1


def _stage_name(op: Callable[..., Any], index: int) -> tuple[str, str]:
    if isinstance(op, Stage):
        return op.name, op.kind.value
    named = getattr(op, "stage_name", None)  # rxpipe.flow's factories name their stage
    if isinstance(named, str) and named:  # never a plugin's name: a file could not rebuild it
        return (named if named.startswith("custom.") else f"custom.{named}"), "custom"
    name = getattr(op, "__name__", "")
    if not name.isidentifier() or name.startswith("_"):  # lambdas, library internals
        name = f"stage{index}"
    return f"custom.{name}", "custom"


_DATA, _PLAN, _TRAINED = "data batches", "a model plan", "a trained model"
_FLOW = {  # plugin kind -> (what it takes, what it passes on)
    "collect": (_DATA, _DATA),
    "access": (_DATA, _DATA),
    "process": (_DATA, _DATA),
    "models": (_DATA, _PLAN),
    "train": (_PLAN, _TRAINED),
    "evaluate": (_TRAINED, _TRAINED),
    "deploy": (_TRAINED, _TRAINED),
}
_ORDER = "collect/access/process → models → train → evaluate/deploy"


def _check_order(
    names: Sequence[str], kinds: Sequence[str], where: str, *, starts_with_data: bool
) -> None:
    """Raise a :class:`ConfigError` for a stage whose plugin kind cannot take its input.

    Plugin kinds go in the order collect/access/process → models → train →
    evaluate/deploy. A custom stage may pass on anything, so the stage after it is not
    checked; nor is the first stage when the pipeline has its own source.
    """
    flowing: str | None = _DATA if starts_with_data else None
    previous = ""
    for index, (full_name, kind) in enumerate(zip(names, kinds, strict=True)):
        name = full_name.partition("#")[0]
        takes, gives = _FLOW.get(kind, (None, None))  # custom: anything
        if takes is not None and flowing is not None and takes != flowing:
            if kind in ("collect", "access", "process"):
                expected = f"{name} before the models.* stage, with the other data stages"
            elif kind == "models":
                expected = f"{name} (one models.* stage) after the data stages"
            elif kind == "train":
                expected = f"a models.* stage before {name}"
            else:
                expected = f"a train.* stage before {name}"
            received = (
                f"{name} after {previous}, which passes on {flowing}"
                if previous
                else f"{name} as the first stage (without a source, a pipeline starts with data)"
            )
            raise ConfigError(
                f"expected {expected} (plugin kinds go in the order {_ORDER}; custom stages "
                f"anywhere). Received: {received}",
                f"{where}[{index}]",
            )
        flowing, previous = gives, name


def _toml_ready(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_toml_ready(v) for v in value]
    path = import_path_of(value) if callable(value) else None
    if path is not None:  # a function or class of an importable module
        return path
    if "keras" in sys.modules:  # an optimizer, loss or metric: its Keras config, which
        import keras  # train.fit takes back (Keras's own classes, or registered ones)

        keras_types = keras.optimizers.Optimizer | keras.losses.Loss | keras.metrics.Metric
        kind = type(value)
        if isinstance(value, keras_types) and (
            kind.__module__.startswith("keras.")
            or keras.saving.get_registered_object(keras.saving.get_registered_name(kind)) is kind
        ):
            return _toml_ready(keras.saving.serialize_keras_object(value))
    return repr(value)


class Pipeline:
    """A serial chain of stages, Pipcook's plugin chain as RxPY operators.

    Each stage is an operator (``Observable[A] -> Observable[B]``); the pipeline pipes them
    in order. ``run()`` executes it with a run directory, events and accounting; the
    pipeline is also an operator itself, for use in a plain ``source.pipe(...)`` chain.

    Args:
        *stages: the operators, in order (usually :class:`~rxpipe.Stage` objects made
            by plugin factories, e.g. ``rxpipe.operators.collect.digits()``).
        name: the pipeline's name; runs go to ``runs_dir/name/<timestamp>-<id>/``.
        seed: base random seed for every stage.
        runs_dir: where run directories are created.
        source: what the first stage receives (default: an empty stream, so the first
            stage is a ``collect`` plugin).
        config: the pipeline file the stages were built from (see :meth:`from_config`).

    Raises:
        ConfigError: for no stages, a stage that is not callable, a name that is not a
            folder name, a seed outside 0 to 2**32 - 1, or a plugin kind out of order
            (collect/access/process → models → train → evaluate/deploy; custom stages
            anywhere), naming ``stages[i]`` (``plugins[i]`` when built from a file).

    Example:
        >>> from rxpipe.operators import access, collect
        >>> p = Pipeline(collect.digits(), access.batch(500), name="peek")
        >>> [b.size for b in p.collect()]
        [500, 500, 500, 297]
    """

    def __init__(
        self,
        *stages: Operator[Any, Any],
        name: str = "pipeline",
        seed: int = 0,
        runs_dir: str | Path = "runs",
        source: reactivex.Observable[Any] | None = None,
        config: PipelineConfig | None = None,
    ) -> None:
        where = "plugins" if config is not None else "stages"  # plugins[i] in a file
        field = "pipeline." if config is not None else ""
        if not stages:
            raise ConfigError("Pipeline: expected at least one stage. Received: none")
        for index, op in enumerate(stages):
            if not callable(op):
                raise ConfigError(
                    "expected an operator (a callable from an Observable to an Observable, "
                    f"e.g. a plugin's stage). Received: {op!r} ({type(op).__name__})",
                    f"{where}[{index}]",
                )
            factory_of = getattr(op, "plugin_name", None) if inspect.isfunction(op) else None
            if isinstance(factory_of, str):
                raise ConfigError(
                    "expected a plugin's stage, made by calling its factory: "
                    f"{factory_of}(...). Received: the factory {factory_of} itself",
                    f"{where}[{index}]",
                )
        check_name(name, f"{field}name")
        self.seed = check_seed(seed, f"{field}seed")
        if not isinstance(runs_dir, str | os.PathLike):
            raise ConfigError(
                f"expected a folder path. Received: {runs_dir!r} ({type(runs_dir).__name__})",
                f"{field}runs_dir",
            )
        self.stages = tuple(stages)
        self.name = name
        self.runs_dir = Path(runs_dir)
        self.source = source if source is not None else reactivex.empty()
        self._default_source = source is None
        self._config = config
        self._bench_mode = False  # bench: keep no outputs; a last snapshot at the end
        self._events = EventSubject()
        names: list[tuple[str, str]] = []
        for index, op in enumerate(stages):
            base, kind = _stage_name(op, index)
            taken = sum(1 for n, _ in names if n == base or n.startswith(base + "#"))
            names.append((f"{base}#{taken + 1}" if taken else base, kind))
        self.stage_names = tuple(n for n, _ in names)
        self._kinds = tuple(k for _, k in names)
        _check_order(self.stage_names, self._kinds, where, starts_with_data=source is None)

    @classmethod
    def from_config(cls, config: PipelineConfig) -> Pipeline:
        """Build a pipeline from a validated configuration.

        Raises:
            ConfigError: for an unknown plugin or invalid parameters, naming the field.
        """
        stages = [
            registry.create(spec.use, spec.params, f"plugins[{i}]")
            for i, spec in enumerate(config.plugins)
        ]
        return cls(
            *stages, name=config.name, seed=config.seed, runs_dir=config.runs_dir, config=config
        )

    @classmethod
    def from_file(cls, path: str | Path, overrides: Sequence[str] = ()) -> Pipeline:
        """Load a pipeline file (TOML or JSON), apply ``--set`` style overrides, build it.

        Raises:
            ConfigError: naming the file, or the override, and the field.
        """
        config = apply_overrides(load_config(path), overrides)
        with naming_origin(config, path, overrides):
            return cls.from_config(config)

    @staticmethod
    def check_config(config: PipelineConfig) -> None:
        """Check what can be checked of ``config`` without building a stage.

        Each plugin's name, parameter names and types, the order of the plugin kinds, a
        collect.* stage first (a file has no source) and the runs directory; no plugin is
        built and TensorFlow is not imported, so the command line reports a mistake at
        once.

        Raises:
            ConfigError: naming the field, e.g. ``plugins[2].epochs``.

        Example:
            >>> from rxpipe.config import parse_config
            >>> config = parse_config({"plugins": [{"use": "access.batch", "size": 8}]})
            >>> Pipeline.check_config(config)
            Traceback (most recent call last):
            ...
            rxpipe.errors.ConfigError: plugins[0]: expected a collect.* stage first, ...
        """
        Pipeline._check_plugins(config)
        _check_runs_dir(Path(config.runs_dir), config.name, "pipeline.runs_dir")

    @staticmethod
    def _check_plugins(config: PipelineConfig) -> None:
        names = [spec.use for spec in config.plugins]
        for index, spec in enumerate(config.plugins):
            registry.check(spec.use, spec.params, f"plugins[{index}]")
        kinds = [registry.get(name).kind.value for name in names]
        _check_order(names, kinds, "plugins", starts_with_data=True)
        _check_first_stage(names, kinds, "plugins")

    @classmethod
    def check_resume(
        cls, run_dir: str | Path, overrides: Sequence[str] = (), field: str = "run_dir"
    ) -> PipelineConfig:
        """The configuration :meth:`resume` would rebuild from ``run_dir``, checked.

        Raises:
            ConfigError: if ``run_dir`` is not an earlier run's directory (named as
                ``field``), or its pipeline.toml with ``overrides`` is not valid or
                changes ``pipeline.name`` or ``pipeline.seed``.
        """
        path = Path(run_dir)
        _check_run_dir(path, field, ("run.json", "pipeline.toml"))
        try:
            config = apply_overrides(load_config(path / "pipeline.toml"), overrides)
            with naming_origin(config, path / "pipeline.toml", overrides):
                cls._check_plugins(config)  # not runs_dir: a resumed run stays where it is
            _check_same_run(path, config.name, config.seed, "pipeline.")
        except UnknownPluginError as error:
            if not error.name.startswith("custom."):
                raise
            raise ConfigError(
                f"expected a run of a pipeline made of registered plugins. Received: a run "
                f"with the custom stage {error.name!r}, which only Python code can rebuild: "
                "build the same Pipeline again and call its run(resume_from=...)",
                field,
            ) from error
        return config

    @classmethod
    def resume(
        cls, run_dir: str | Path, overrides: Sequence[str] = (), **run_options: Any
    ) -> RunResult:
        """Continue a run that stopped (killed, crashed, interrupted) in its own directory.

        Rebuilds the pipeline from the run's ``pipeline.toml`` (plus ``overrides``, e.g.
        ``["train.fit.epochs=20"]``), restores the last checkpoint saved after a completed
        epoch, and trains the remaining epochs. Events are appended to its events.jsonl.

        Raises:
            ConfigError: if ``run_dir`` is not an earlier run's directory (see
                :meth:`check_resume`).
        """
        config = cls.check_resume(run_dir, overrides)
        with naming_origin(config, Path(run_dir) / "pipeline.toml", overrides):
            pipeline = cls.from_config(config)
        return pipeline.run(resume_from=Path(run_dir), **run_options)

    @property
    def events(self) -> reactivex.Observable[Event]:
        """Hot observable of the events of every run of this pipeline."""
        return self._events

    @property
    def config(self) -> PipelineConfig:
        """The pipeline as a configuration (what the run directory's pipeline.toml holds)."""
        if self._config is not None:
            return self._config
        plugins = tuple(
            PluginSpec(name.split("#")[0], _toml_ready(getattr(op, "params", {})))
            for name, op in zip(self.stage_names, self.stages, strict=True)
        )
        return PipelineConfig(self.name, plugins, self.seed, str(self.runs_dir))

    def __call__(self, source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
        """Apply the stages to ``source`` as a plain operator chain (no run machinery)."""
        return source.pipe(*self.stages)

    def _instrumented(self, stall_warning: float | None = None) -> reactivex.Observable[Any]:
        ops = [
            instrument(
                name,
                kind,
                op,
                lineage(self.stages[:i], self.seed, self._default_source),
                stall_warning_s=stall_warning,
            )
            for i, (name, kind, op) in enumerate(
                zip(self.stage_names, self._kinds, self.stages, strict=True)
            )
        ]
        return self.source.pipe(*ops)

    def _check_source(self) -> None:
        """Raise a :class:`ConfigError` for a run that has no data to start from."""
        if self._default_source:
            where = "plugins" if self._config is not None else "stages"
            _check_first_stage(self.stage_names, self._kinds, where)

    def collect(self) -> list[Any]:
        """Run the stages without a run directory and return every item the last emits.

        As in :meth:`run`, each stage is named in its errors and sees its input's lineage
        (so a folder cache is checked), but no files, events or accounting are kept.
        """
        from rxpipe.testing import collect

        self._check_source()

        context = RunContext("collect", self.name, None, EventBus("collect"), self.seed)
        with running(context):
            return collect(self._instrumented())

    def bench(
        self, train_steps: int | None = None, *, snapshot_interval: float = 1.0
    ) -> BenchReport:
        """Measure the throughput of each data stage (and, optionally, of training).

        Runs the stages before the ``models.*`` stage for one pass over the data (with
        ``train_steps``, the pipeline up to ``train.*`` for that many training steps) and
        reports per stage batches/s, samples/s, busy share and buffer counts, and names
        the bottleneck stage with a hint. See :func:`rxpipe.bench.bench`.

        Example:
            >>> import tempfile
            >>> from rxpipe.operators import access, collect
            >>> p = Pipeline(collect.digits(), access.batch(500), runs_dir=tempfile.mkdtemp())
            >>> report = p.bench()
            >>> report.stages[-1].samples
            1797
        """
        from rxpipe.bench import bench

        return bench(self, train_steps, snapshot_interval=snapshot_interval)

    def _new_run_dir(self) -> tuple[str, Path]:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        run_id = f"{stamp}-{secrets.token_hex(3)}"
        run_dir = self.runs_dir / self.name / run_id
        try:
            run_dir.mkdir(parents=True)
        except OSError as error:
            field = "pipeline.runs_dir" if self._config is not None else "runs_dir"
            raise ConfigError(
                "expected a folder to create run directories in (or a path where one can be "
                f"made). Received: {str(self.runs_dir)!r}, {_why_not_a_folder(run_dir, error)}",
                field,
            ) from None
        return run_id, run_dir

    def run(
        self,
        *,
        progress: bool | None = None,
        log_format: str | None = None,
        subscribers: Sequence[Callable[[Event], None]] = (),
        tensorboard: bool = False,
        resume_from: str | Path | None = None,
        snapshot_interval: float | None = None,
        stall_warning: float | None = None,
    ) -> RunResult:
        """Run the pipeline to completion.

        Creates the run directory, publishes events on :attr:`events` (and to
        ``events.jsonl``), and blocks until the last stage completes. Ctrl-C (or any
        error) disposes every stage and stops the producer threads; during training,
        Ctrl-C takes effect at the next train step, never inside Keras or TensorFlow code
        (see :mod:`rxpipe.interrupts`).

        Args:
            progress: show a progress bar; ``None`` shows it when stderr is a terminal.
            log_format: also log events with structlog, as ``"console"`` or ``"json"`` (all but
                train_progress, stage_started and stage_completed; see
                :class:`~rxpipe.subscribers.EventLogger`).
            subscribers: extra callables called with every event of this run.
            tensorboard: write losses, metrics and throughput for TensorBoard under
                ``<run dir>/tensorboard``.
            resume_from: an earlier run directory of this pipeline to continue in: training
                restarts after its last checkpointed epoch, and event ``seq`` numbers go on
                from the last one in its events.jsonl (see :meth:`resume`).
            snapshot_interval: seconds between :class:`~rxpipe.events.ThroughputSnapshot`
                events (default 5; 0: none).
            stall_warning: seconds a stage may stay silent after its input ended before a
                :class:`~rxpipe.events.StageStalled` warning names it (default 30, then again
                each time the silence doubles; 0: never warn).

        Returns:
            The run's result.

        Raises:
            ConfigError: if an option is invalid, or ``resume_from`` is not the directory
                of an earlier run of this pipeline (same name and seed; training also
                checks the model and optimizer against its checkpoint).
            StageError: when a stage fails (naming the stage and the sample ids).
            PipelineCancelled: when interrupted.

            An error of a run that started carries its run directory as ``run_dir``.
        """
        from rxpipe.snapshots import DEFAULT_INTERVAL_S, snapshot_timer
        from rxpipe.subscribers import attach_subscribers

        interval = DEFAULT_INTERVAL_S if snapshot_interval is None else snapshot_interval
        _check_run_options(progress, log_format, subscribers, tensorboard, interval)
        if stall_warning is not None:
            _check_seconds(stall_warning, "stall_warning")
        self._check_source()

        if resume_from is None:
            run_id, run_dir = self._new_run_dir()
            first_seq = 0
        else:
            run_dir = Path(resume_from)
            _check_run_dir(run_dir)
            field = "pipeline." if self._config is not None else ""
            _check_same_run(run_dir, self.name, self.seed, field)
            run_id = run_dir.name
            first_seq = _next_seq(run_dir / "events.jsonl")
        with _exclusive(run_dir):
            bus = EventBus(run_id, first_seq)
            context = RunContext(
                run_id, self.name, run_dir, bus, self.seed, resume=bool(resume_from)
            )
            started = time.perf_counter()
            # a resume its checkpoint turns down (another model, optimizer...) leaves these as
            # they were, so that the run can still be resumed with its own options
            kept = {name: _read_text(run_dir / name) for name in _RUN_FILES} if resume_from else {}
            self._write_run_state(run_dir, run_id, "running")
            with atomic_write(run_dir / "pipeline.toml") as tmp:
                tmp.write_text(tomli_w.dumps(_toml_ready(self.config.to_dict())))
            self._events.errors = []  # the user's subscribers' errors of this run only

            def close_subscribers() -> None:
                errors = [*bus.subscriber_errors, *self._events.errors]
                _close_subscribers(detach, forward, errors)

            try:
                detach = attach_subscribers(
                    bus,
                    run_dir,
                    progress=progress,
                    log_format=log_format,
                    tensorboard=tensorboard,
                    extra=subscribers,
                )
            except BaseException as error:
                self._write_run_state(run_dir, run_id, "failed", error=str(error))
                raise
            # after the run's own subscribers: pipeline.events sees an event once it is in
            # events.jsonl
            forward = bus.events.subscribe(self._events.on_next)
            outputs: list[Any] = []
            try:
                with stopping_on_signals(signal.SIGINT), running(context):
                    bus.publish(RunStarted, pipeline=self.name, run_dir=str(run_dir))
                    with snapshot_timer(context, self.stage_names, interval, self._bench_mode):
                        self._execute(outputs, stall_warning)
                    check_accounting(context.counts)
            except BaseException as error:
                failure = _as_run_error(error)
                # run.json first: a subscriber of RunFailed finds the run's state written
                self._write_run_state(run_dir, run_id, "failed", error=str(failure))
                if kept and is_configuration_error(failure):
                    _restore_texts(run_dir, kept)
                bus.publish(
                    RunFailed,
                    error_type=type(failure).__name__,
                    message=str(failure),
                    stage=getattr(failure, "stage", None),
                    sample_ids=tuple(getattr(failure, "sample_ids", ())),
                )
                close_subscribers()
                if isinstance(failure, RxpipeError):
                    failure.run_dir = run_dir
                if failure is error:
                    raise
                raise failure from error
            duration = time.perf_counter() - started
            self._write_run_state(run_dir, run_id, "completed")
            bus.publish(RunCompleted, duration_s=duration, metrics=context.metrics)
            close_subscribers()
            return RunResult(
                run_id=run_id,
                run_dir=run_dir,
                metrics=dict(context.metrics),
                artifacts=dict(context.artifacts),
                counts=dict(context.counts),
                history=list(context.history),
                outputs=outputs,
                duration_s=duration,
            )

    def _execute(self, outputs: list[Any], stall_warning: float | None) -> None:
        done = threading.Event()
        errors: list[BaseException] = []

        def on_error(error: Exception) -> None:
            errors.append(error)
            done.set()

        keep = outputs.append if not self._bench_mode else lambda _: None
        subscription = self._instrumented(stall_warning).subscribe(keep, on_error, done.set)
        try:
            while not done.wait(_POLL_S):
                pass
        finally:
            subscription.dispose()
        if errors:
            raise errors[0]

    @staticmethod
    def _write_run_state(run_dir: Path, run_id: str, status: str, error: str = "") -> None:
        state = {
            "run_id": run_id,
            "status": status,
            "updated": dt.datetime.now(dt.UTC).isoformat(),
            **({"error": error} if error else {}),
        }
        with atomic_write(run_dir / "run.json") as tmp:
            tmp.write_text(json.dumps(state, indent=2))


_RUN_FILES = ("run.json", "pipeline.toml")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _restore_texts(run_dir: Path, texts: Mapping[str, str | None]) -> None:
    """Write back files of ``run_dir`` as they were (those that were there)."""
    for name, text in texts.items():
        if text is not None:
            with atomic_write(run_dir / name) as tmp:
                tmp.write_text(text)


LOCK_FILE = ".lock"
"""A run directory's lock file: held (``flock``) by the process whose run is going on."""


@contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while its run goes on, so that no second process resumes it
    at the same time (both would write its checkpoints, model and events).

    Raises:
        ConfigError: if another process holds it (naming ``resume_from``).
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock
        yield
        return
    with open(run_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                "expected a run directory no other process is running in. Received: "
                f"{str(run_dir)!r}, whose run is going on in another process (let it end, "
                "or stop it, then resume)",
                "resume_from",
            ) from None
        yield  # closing the file releases the lock, also when the process dies


def _check_run_dir(
    run_dir: Path, field: str = "resume_from", needs: Sequence[str] = ("run.json",)
) -> None:
    """Raise a :class:`ConfigError` unless ``run_dir`` is the directory of an earlier run."""
    if not run_dir.exists():
        found = "which does not exist"
    elif not run_dir.is_dir():
        found = "which is not a directory"
    else:
        absent = [name for name in needs if not (run_dir / name).is_file()]
        if not absent:
            return
        found = f"which holds no {' and no '.join(absent)}"
    raise ConfigError(
        f"expected the directory of an earlier run (holding {' and '.join(needs)}, and "
        f"checkpoints/ once an epoch completed). Received: {str(run_dir)!r}, {found}",
        field,
    )


def _check_same_run(run_dir: Path, name: str, seed: int, field: str) -> None:
    """Raise a :class:`ConfigError` if ``run_dir`` is a run of another pipeline (``name``)
    or of another ``seed`` (which splits and orders the data differently), as its
    pipeline.toml records them. ``field`` prefixes the option named (``"pipeline."`` for a
    pipeline built from a file)."""
    import tomllib

    try:
        saved = tomllib.loads((run_dir / "pipeline.toml").read_text()).get("pipeline", {})
    except (OSError, ValueError):  # none (a run that failed at once) or torn: not checked
        return
    saved_name = saved.get("name")
    if saved_name is not None and saved_name != name:
        raise ConfigError(
            f"expected a run of this pipeline, {name!r}, to resume. Received: "
            f"{str(run_dir)!r}, a run of the pipeline {saved_name!r}",
            "pipeline.name" if field else "resume_from",
        )
    saved_seed = saved.get("seed")
    if saved_seed is not None and saved_seed != seed:
        raise ConfigError(
            f"expected the seed the run in {str(run_dir)!r} started with, {saved_seed} (its "
            f"data split and order depend on it). Received: {seed}",
            f"{field}seed",
        )


def _check_first_stage(names: Sequence[str], kinds: Sequence[str], where: str) -> None:
    """Raise a :class:`ConfigError` unless a pipeline without a source starts with data."""
    if kinds and kinds[0] not in ("collect", "custom"):
        raise ConfigError(
            "expected a collect.* stage first, or a pipeline made with a source "
            "(Pipeline(..., source=...)) to run without one. Received: "
            f"{names[0]} first and no source (it would run on nothing)",
            f"{where}[0]",
        )


def _check_runs_dir(runs_dir: Path, name: str, field: str) -> None:
    """Raise a :class:`ConfigError` if a file stands where the run directories would go."""
    for parent in (runs_dir / name, *(runs_dir / name).parents):
        if parent.exists():
            if parent.is_dir():
                return
            raise ConfigError(
                "expected a folder to create run directories in (or a path where one can "
                f"be made). Received: {str(runs_dir)!r}, where {str(parent)!r} is a file, "
                "not a folder",
                field,
            )


def _next_seq(events: Path) -> int:
    """The ``seq`` after the last event recorded in ``events`` (0 if there is none).

    A run killed while writing an event may leave a last line without its newline: if it
    is a whole event the newline is added, else the torn line is cut off, so the events
    appended next start on a line of their own.
    """
    if not events.is_file():
        return 0
    data = events.read_bytes()
    end = data.rfind(b"\n") + 1
    if data[end:].strip():
        try:
            json.loads(data[end:])
        except ValueError:
            os.truncate(events, end)
        else:
            with events.open("ab") as file:
                file.write(b"\n")
            end = len(data)
    for line in reversed(data[:end].splitlines()):
        try:
            seq = json.loads(line)["seq"]
        except (ValueError, LookupError, TypeError):
            continue
        if isinstance(seq, int):
            return seq + 1
    return 0


def _check_seconds(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"expected a number of seconds >= 0. Received: {value!r}", field)


def _check_run_options(
    progress: object, log_format: object, subscribers: object, tensorboard: object, interval: float
) -> None:
    """Raise a :class:`ConfigError` naming the first option of ``run()`` that is invalid."""
    from rxpipe.subscribers.logs import LOG_FORMATS
    from rxpipe.subscribers.tensorboard import check_available

    formats = (None, *LOG_FORMATS)
    if progress not in (None, True, False):
        raise ConfigError(f"expected True, False or None. Received: {progress!r}", "progress")
    if log_format not in formats:
        raise ConfigError(f"expected one of {formats}. Received: {log_format!r}", "log_format")
    if tensorboard not in (True, False):
        raise ConfigError(f"expected True or False. Received: {tensorboard!r}", "tensorboard")
    if tensorboard:
        check_available("tensorboard")
    _check_seconds(interval, "snapshot_interval")
    if callable(subscribers) or not isinstance(subscribers, Sequence | set | frozenset):
        raise ConfigError(
            "expected a list of callables, each called with every event. Received: "
            f"{subscribers!r} (for one subscriber, pass [it])",
            "subscribers",
        )
    for index, subscriber in enumerate(subscribers):
        if not callable(subscriber):
            raise ConfigError(
                f"expected a callable, called with every event. Received: {subscriber!r} "
                f"({type(subscriber).__name__})",
                f"subscribers[{index}]",
            )


def _close_subscribers(
    detach: Callable[[], None], forward: Any, errors: Sequence[SubscriberError]
) -> None:
    """Detach the run's subscribers; warn about any that raised while handling events."""
    detach()
    forward.dispose()
    if errors:
        shown = "; ".join(map(str, errors[:3]))
        warnings.warn(
            f"{len(errors)} event subscriber error(s) were ignored (each subscriber still "
            f"got every event): {shown}",
            RuntimeWarning,
            stacklevel=3,
        )


def _why_not_a_folder(path: Path, error: OSError) -> str:
    """Why ``path`` could not be made: the file in its way, or the system's reason."""
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                return f"where {str(parent)!r} is a file, not a folder"
            break
    return f"which cannot be made: {error.strerror or error}"


def _as_run_error(error: BaseException) -> BaseException:
    """The error a run fails with: an interrupt becomes :class:`PipelineCancelled`.

    A ``KeyboardInterrupt`` whose argument is a signal's name (the command line raises
    ``KeyboardInterrupt("SIGTERM")`` on SIGTERM) names it; a bare one is Ctrl-C.
    """
    if isinstance(error, KeyboardInterrupt):
        how = error.args[0] if error.args and isinstance(error.args[0], str) else "Ctrl-C"
        return PipelineCancelled(f"the run was interrupted ({how}); every stage was stopped")
    return error
