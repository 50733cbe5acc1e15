"""parallel_map: apply a function with k worker threads or processes, in order, bounded.

::

    upstream:    a--b--c--d--e--|
    workers=2:   [a  ][b    ][c ][d][e  ]        (two at a time)
    downstream:  ----A------B--C--D---E-|        (input order; ordered=False: as done)

At most ``workers + prefetch`` items are in flight (taken from upstream and not yet
emitted downstream): the upstream chain runs on a producer thread that waits for a free
slot, so a cold source is read no faster than the workers and the consumer go, and a
slow consumer (e.g. the trainer) makes the workers wait too.

Threads suit work that releases the GIL (numpy, TensorFlow ops, I/O); processes suit
pure-Python work, at the price of pickling each item and its result, and of starting
the processes (once per subscription, in parallel; about 0.3 s each with ``"spawn"``,
which imports rxpipe in the child). As with any spawned process, the function must be
importable (defined at module level) and a script that runs a pipeline must guard it
with ``if __name__ == "__main__":``.

A worker's error reaches downstream as a :class:`~rxpipe.errors.StageError` naming the
stage and the failing item's sample ids; in ordered mode after the items before it,
exactly as a serial map would fail. With ``on_error="skip"`` the failing samples are
skipped instead (see :func:`~rxpipe.flow.map_batches`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Literal, TypeAlias, TypeVar, cast, get_args

import reactivex
from reactivex import abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from rxpipe.errors import ConfigError
from rxpipe.flow._procpool import WorkerProcess, WorkerStopped, check_picklable
from rxpipe.flow._skip import NOTHING, OnError, SkipGuard, apply, check_policy
from rxpipe.flow._tally import current_tally
from rxpipe.flow._threads import JOIN_TIMEOUT_S, join_all, start_thread
from rxpipe.flow.buffer import subscribe_on_trampoline
from rxpipe.flow.transform import NamedOperator, as_stage_error

__all__ = ["Executor", "parallel_map"]

A = TypeVar("A")
B = TypeVar("B")

Executor: TypeAlias = Literal["thread", "process"]
"""Where parallel work runs: worker threads (GIL-releasing work) or worker processes."""

_START_METHODS = ("spawn", "forkserver", "fork")


def _check(
    workers: int, executor: str, prefetch: int | None, mp_context: str, fn: Callable[..., Any]
) -> None:
    if not callable(fn):
        raise ConfigError(f"fn: expected a callable. Received: {fn!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: expected an int >= 1. Received: {workers!r}")
    if executor not in get_args(Executor):
        raise ConfigError(f"executor: expected 'thread' or 'process'. Received: {executor!r}")
    if prefetch is not None and (
        isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0
    ):
        raise ConfigError(f"prefetch: expected an int >= 0 or None. Received: {prefetch!r}")
    if mp_context not in _START_METHODS:
        raise ConfigError(
            f"mp_context: expected one of {', '.join(_START_METHODS)}. Received: {mp_context!r}"
        )
    if executor == "process":
        why = check_picklable(fn)
        if why is not None:
            raise ConfigError(
                "fn: expected a picklable function (defined at module level) for "
                f"executor='process'. Received: {fn!r} ({why})"
            )


class _MapRun:
    """One subscription of a parallel map."""

    def __init__(
        self,
        stage: str,
        fn: Callable[[Any], Any],
        workers: int,
        window: int,
        ordered: bool,
        skip: bool,
        max_skipped: int | None,
        processes: str | None,
        observer: abc.ObserverBase[Any],
    ) -> None:
        tally = current_tally(stage)
        tally.workers += workers
        self.tally = tally
        self.stage = tally.stage  # the pipeline's name for the stage, inside one
        self.fn = fn
        self.workers = workers
        self.window = window
        self.ordered = ordered
        self.skip = skip
        self.processes = processes
        self.observer = observer
        self.guard = SkipGuard(self.stage, tally, max_skipped) if skip else None
        self.lock = threading.Lock()
        self.slot_free = threading.Condition(self.lock)
        self.task_ready = threading.Condition(self.lock)
        self.tasks: deque[tuple[int, Any]] = deque()
        self.results: dict[int, tuple[bool, Any]] = {}
        self.submitted = 0
        self.next_out = 0
        self.in_flight = 0
        self.waiting_producer = False
        self.idle_workers = 0
        self.upstream_end: tuple[BaseException | None] | None = None
        self.emitting = False
        self.stopped = False
        self.done = False
        self.upstream = SingleAssignmentDisposable()
        self.threads: list[threading.Thread] = []
        self.children: dict[threading.Thread, WorkerProcess] = {}
        self.failed = False
        self.source: reactivex.Observable[Any] = reactivex.empty()

    def is_stopped(self) -> bool:
        return self.stopped

    # -- producer: take items from upstream while there is a free slot ---------------

    def on_next(self, item: Any) -> None:
        with self.lock:
            while self.in_flight >= self.window and not self.stopped:
                self.waiting_producer = True
                self.slot_free.wait()
            self.waiting_producer = False
            if self.stopped:
                return
            self.tasks.append((self.submitted, item))
            self.submitted += 1
            self.in_flight += 1
            if self.idle_workers:
                self.task_ready.notify()

    def on_error(self, error: BaseException) -> None:
        with self.lock:
            if self.upstream_end is None:
                self.upstream_end = (error,)
        self.emit()

    def on_completed(self) -> None:
        with self.lock:
            if self.upstream_end is None:
                self.upstream_end = (None,)
        self.emit()

    def produce(self) -> None:
        try:
            subscribe_on_trampoline(
                self.source, self.upstream, self.on_next, self.on_error, self.on_completed
            )
        except BaseException as error:  # a source that raises instead of calling on_error
            self.on_error(error)

    # -- workers ---------------------------------------------------------------------

    def work(self, index: int) -> None:
        process: WorkerProcess | None = None
        if self.processes is not None:
            try:
                process = WorkerProcess(
                    self.fn, self.skip, self.processes, f"rxpipe-{self.stage}-process-{index}"
                )
            except Exception as error:
                self.fail(as_stage_error(self.stage, error))
                return
            with self.lock:
                self.children[threading.current_thread()] = process
        try:
            self._work_loop(process)
        finally:
            if process is not None:
                self._close_child(threading.current_thread())

    def _close_child(self, owner: threading.Thread) -> None:
        with self.lock:
            process = self.children.pop(owner, None)
        if process is not None:
            if self.done and not self.failed:
                process.close(JOIN_TIMEOUT_S / 2)
            else:
                process.kill()

    def _work_loop(self, process: WorkerProcess | None) -> None:
        lock, tasks = self.lock, self.tasks
        while True:
            with lock:
                while not tasks and not self.stopped:
                    self.idle_workers += 1
                    self.task_ready.wait()
                    self.idle_workers -= 1
                if self.stopped:
                    return
                seq, item = tasks.popleft()
            started = time.perf_counter()
            try:
                if process is None:
                    result: tuple[bool, Any] = (True, apply(self.fn, item, self.skip))
                else:
                    result = (True, process.call(item, self.is_stopped))
            except WorkerStopped:
                return
            except Exception as error:
                result = (False, as_stage_error(self.stage, error, item))
            except BaseException as error:  # SystemExit...: passed on as a serial map would
                result = (False, error)
            self.tally.add_work(time.perf_counter() - started)
            del item  # hold no batch while idle: memory stays within the window
            with lock:
                self.results[seq] = result
                del result
                if self.emitting:
                    continue
            self.emit()

    # -- emission: whoever finds the next result ready emits, one thread at a time ----

    def _next_result(self) -> tuple[bool, Any] | None:
        results = self.results
        if self.ordered:
            result = results.pop(self.next_out, None)
            if result is not None:
                self.next_out += 1
            return result
        if results:
            return results.pop(next(iter(results)))
        return None

    def emit(self) -> None:
        with self.lock:
            if self.emitting or self.done or self.stopped:
                return
            self.emitting = True
        observer = self.observer
        while True:
            with self.lock:
                if self.is_stopped():  # (set by other threads meanwhile)
                    self.emitting = False
                    return
                result = self._next_result()
                if result is None:
                    end = self.upstream_end
                    if end is None or self.in_flight:
                        self.emitting = False
                        return
                    self.done = True
            if result is None:
                self.end(end[0])  # type: ignore[index]
                return
            ok, value = result
            if not ok:
                self.fail(value)
                return
            if self.guard is not None and value[1]:
                error = self.guard.record(value)
                if error is not None:
                    self.fail(error)
                    return
            output = value[0]
            if output is not NOTHING:
                try:
                    observer.on_next(output)
                except BaseException as error:  # downstream raised: end the stream with it
                    self.fail(error)
                    return
            with self.lock:
                self.in_flight -= 1
                if self.waiting_producer:
                    self.slot_free.notify()

    # -- lifecycle -------------------------------------------------------------------

    def start(self, source: reactivex.Observable[Any]) -> abc.DisposableBase:
        self.source = source
        name = f"rxpipe-{self.stage}"
        for index in range(self.workers):
            self.threads.append(start_thread(partial(self.work, index), f"{name}-worker-{index}"))
        self.threads.append(
            start_thread(self.produce, f"{name}-producer", subscribes_upstream=True)
        )
        return Disposable(self.dispose)

    def stop(self) -> bool:
        with self.lock:
            if self.stopped:
                return False
            self.stopped = True
            self.slot_free.notify_all()
            self.task_ready.notify_all()
        self.upstream.dispose()
        return True

    def end(self, error: BaseException | None) -> None:
        """Deliver the end of the stream, after stopping every other thread and process."""
        self.failed = error is not None
        self.stop()
        self._reap()
        if error is None:
            self.observer.on_completed()
        else:
            self.observer.on_error(cast(Exception, error))  # SystemExit... passes on as is

    def fail(self, error: BaseException) -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
        self.end(error)

    def _reap(self) -> None:
        join_all(self.threads)
        me = threading.current_thread()
        for owner in list(self.children):
            if owner is me or not owner.is_alive():
                self._close_child(owner)

    def dispose(self) -> None:
        self.stop()
        self._reap()


def parallel_map(
    stage: str,
    fn: Callable[[A], B],
    workers: int = 2,
    *,
    executor: Executor = "thread",
    prefetch: int | None = None,
    ordered: bool = True,
    on_error: OnError = "raise",
    max_skipped: int | None = None,
    mp_context: str = "spawn",
) -> Callable[[reactivex.Observable[A]], reactivex.Observable[B]]:
    """Apply ``fn`` to every item on ``workers`` threads or processes, keeping order.

    Args:
        stage: the stage name used in errors, events, accounting and thread names.
        fn: the function. For processes it must be picklable (defined at module level),
            and so must the items and results.
        workers: items processed at once (at least 1; 1 still overlaps ``fn`` with the
            stages before and after it).
        executor: ``"thread"`` for work that releases the GIL, ``"process"`` for
            pure-Python work.
        prefetch: items taken from upstream ahead of the workers; at most
            ``workers + prefetch`` items are in flight. Default: ``workers``.
        ordered: emit in input order; ``False`` emits each result as soon as it is ready.
        on_error: ``"raise"`` or ``"skip"`` (bad records; see :func:`map_batches`).
        max_skipped: with ``"skip"``, the most samples a pass may skip.
        mp_context: how worker processes start: ``"spawn"`` (safe with threads and
            TensorFlow; the default), ``"forkserver"`` or ``"fork"``.

    Returns:
        The operator.

    Raises:
        ConfigError: for an invalid parameter, or a function that cannot be pickled
            for processes.

    Example:
        >>> from rxpipe.testing import collect
        >>> source = reactivex.from_iterable(range(6))
        >>> collect(source.pipe(parallel_map("square", lambda x: x * x, workers=3)))
        [0, 1, 4, 9, 16, 25]
    """
    check_policy(on_error, max_skipped)
    _check(workers, executor, prefetch, mp_context, fn)
    window = workers + (workers if prefetch is None else prefetch)
    processes = mp_context if executor == "process" else None
    skip = on_error == "skip"

    def operator(source: reactivex.Observable[A]) -> reactivex.Observable[B]:
        def subscribe(
            observer: abc.ObserverBase[B], _: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            run = _MapRun(
                stage, fn, workers, window, ordered, skip, max_skipped, processes, observer
            )
            return run.start(source)

        return reactivex.create(subscribe)

    return NamedOperator(stage, operator)
