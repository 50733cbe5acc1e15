"""Stateful batch transformers as operators: the building block of most plugins."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import reactivex
from reactivex import abc
from reactivex.disposable import SingleAssignmentDisposable

from rxpipe.batch import Batch
from rxpipe.errors import ConfigError, StageError
from rxpipe.flow._skip import NOTHING, OnError, SkipGuard, apply, check_policy
from rxpipe.flow._tally import current_tally, tallying

if TYPE_CHECKING:
    from rxpipe.flow.parallel import Executor

A = TypeVar("A")
B = TypeVar("B")
A_contra = TypeVar("A_contra", contravariant=True)
B_co = TypeVar("B_co", covariant=True)


class BatchTransformer(Protocol[A_contra, B_co]):
    """Per-subscription state of a :func:`transform` operator."""

    def on_batch(self, item: A_contra) -> Iterable[B_co]:
        """Turn one input item into zero or more output items."""
        ...

    def on_end(self) -> Iterable[B_co]:
        """Emit what is still held (e.g. a partial batch) when the input completes."""
        ...


def as_stage_error(stage: str, error: Exception, item: object = None) -> StageError:
    """Wrap ``error`` as a :class:`StageError` naming ``stage`` and the samples at fault.

    Those are the error's own ``sample_ids`` (a :class:`~rxpipe.errors.BatchError` may
    name them), else every sample of ``item``.
    """
    if isinstance(error, StageError):
        return error
    ids = item.ids.tolist() if isinstance(item, Batch) else ()
    named = getattr(error, "sample_ids", ())  # the stage knows which samples are at fault
    return StageError(stage, f"{type(error).__name__}: {error}", named or ids, cause=error)


class NamedOperator(Generic[A, B]):
    """An operator that carries the name of its stage as ``stage_name``.

    What :func:`transform` and :func:`map_batches` return: a :class:`~rxpipe.Pipeline`
    names a stage that is not a plugin's by its ``stage_name`` in its events, counts and
    pipeline.toml, as the operator's own errors do.

    Args:
        stage_name: the stage's name.
        operator: the operator itself.

    Example:
        >>> op = NamedOperator("custom.double", lambda source: source)
        >>> op.stage_name
        'custom.double'
        >>> op
        NamedOperator('custom.double')
    """

    __slots__ = ("_operator", "stage_name")

    def __init__(
        self,
        stage_name: str,
        operator: Callable[[reactivex.Observable[A]], reactivex.Observable[B]],
    ) -> None:
        self.stage_name = stage_name
        self._operator = operator

    def __call__(self, source: reactivex.Observable[A]) -> reactivex.Observable[B]:
        """Apply the operator to ``source``."""
        return self._operator(source)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.stage_name!r})"


def transform(
    stage: str, make: Callable[[], BatchTransformer[A, B]]
) -> Callable[[reactivex.Observable[A]], reactivex.Observable[B]]:
    """Build an operator from a factory of :class:`BatchTransformer` states.

    ``make()`` is called once per subscription, so every pass over the data (every
    epoch) starts fresh, with the pass's :func:`~rxpipe.flow.current_tally` current (a
    state that drops samples counts them there). An exception in ``on_batch`` or
    ``on_end`` stops the upstream subscription and reaches downstream as a
    :class:`StageError` naming ``stage`` and the ids of the batch being processed.

    Args:
        stage: the stage name used in errors (and, as the operator's ``stage_name``, in a
            pipeline's events and accounting).
        make: returns a new transformer state.

    Returns:
        The operator, a :class:`NamedOperator`.

    Raises:
        ConfigError: if ``make`` is not callable.

    Example:
        >>> class Double:
        ...     def on_batch(self, x): return [x * 2]
        ...     def on_end(self): return []
        >>> from rxpipe.testing import collect
        >>> collect(reactivex.of(1, 2).pipe(transform("double", Double)))
        [2, 4]
    """
    if not callable(make):
        raise ConfigError(f"make: expected a callable. Received: {make!r}")

    def operator(source: reactivex.Observable[A]) -> reactivex.Observable[B]:
        def subscribe(
            observer: abc.ObserverBase[B], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            upstream = SingleAssignmentDisposable()
            state: BatchTransformer[A, B] | None = None
            stopped = False
            tally = current_tally(stage)

            def start() -> BatchTransformer[A, B]:
                with tallying(tally):
                    return make()

            def fail(error: Exception, item: object) -> None:
                nonlocal stopped
                stopped = True
                upstream.dispose()
                tally.flush()
                observer.on_error(as_stage_error(stage, error, item))

            def on_next(item: A) -> None:
                nonlocal state
                if stopped:
                    return
                try:
                    if state is None:
                        state = start()
                    out = list(state.on_batch(item))
                except Exception as error:
                    fail(error, item)
                    return
                for value in out:
                    observer.on_next(value)

            def on_error(error: Exception) -> None:
                nonlocal stopped
                if not stopped:
                    stopped = True
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal stopped, state
                if stopped:
                    return
                try:
                    if state is None:
                        state = start()
                    out = list(state.on_end())
                except Exception as error:
                    fail(error, None)
                    return
                for value in out:
                    observer.on_next(value)
                stopped = True
                tally.flush()  # drops not published yet (a detached tally has no stage to)
                observer.on_completed()

            upstream.disposable = source.subscribe(
                on_next, on_error, on_completed, scheduler=scheduler
            )
            return upstream

        return reactivex.create(subscribe)

    return NamedOperator(stage, operator)


class MapBatches:
    """A stateless :class:`BatchTransformer` applying ``fn`` to each item."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn

    def on_batch(self, item: Any) -> Iterable[Any]:
        return (self._fn(item),)

    def on_end(self) -> Iterable[Any]:
        return ()


class _SkippingMap:
    """A :class:`BatchTransformer` applying ``fn``, skipping the samples it fails on."""

    def __init__(self, stage: str, fn: Callable[[Any], Any], max_skipped: int | None) -> None:
        self._fn = fn
        tally = current_tally(stage)
        self._guard = SkipGuard(tally.stage, tally, max_skipped)

    def on_batch(self, item: Any) -> Iterable[Any]:
        outcome = apply(self._fn, item, skip=True)
        if outcome[1]:
            error = self._guard.record(outcome)
            if error is not None:
                raise error
        return () if outcome[0] is NOTHING else (outcome[0],)

    def on_end(self) -> Iterable[Any]:
        return ()


def map_batches(
    stage: str,
    fn: Callable[[A], B],
    *,
    on_error: OnError = "raise",
    max_skipped: int | None = None,
    workers: int = 1,
    executor: Executor = "thread",
    prefetch: int | None = None,
    ordered: bool = True,
) -> Callable[[reactivex.Observable[A]], reactivex.Observable[B]]:
    """An operator applying ``fn`` to every item; errors name ``stage`` and the sample ids.

    By default ``fn`` runs inline, on the thread that delivers the items. With
    ``workers`` > 1, ``executor="process"`` or a ``prefetch``, it runs on worker threads
    or processes through :func:`~rxpipe.flow.parallel_map` (see there).

    Args:
        stage: the stage name used in errors, events and accounting.
        fn: the function; for ``executor="process"``, a picklable (module-level) one.
        on_error: ``"raise"`` fails the stage on the first error; ``"skip"`` retries a
            failing batch one sample at a time and skips the samples that fail, counting
            them (with their ids and reasons) in the run's accounting and events.
        max_skipped: with ``"skip"``, fail with :class:`~rxpipe.errors.SkipLimitError`
            once a pass over the data skipped more samples than this (``None``: no limit).
        workers: how many items are processed at once.
        executor: ``"thread"`` (work that releases the GIL) or ``"process"``.
        prefetch: items taken ahead of the workers (default: ``workers``).
        ordered: keep the input order (with workers).

    Returns:
        The operator, a :class:`NamedOperator` (its ``stage_name`` is ``stage``).

    Raises:
        ConfigError: for an invalid parameter.

    Example:
        >>> from rxpipe.testing import collect
        >>> collect(reactivex.of(1, 2).pipe(map_batches("inc", lambda x: x + 1)))
        [2, 3]
    """
    check_policy(on_error, max_skipped)
    if not callable(fn):
        raise ConfigError(f"fn: expected a callable. Received: {fn!r}")
    if workers != 1 or executor != "thread" or prefetch is not None:
        from rxpipe.flow.parallel import parallel_map

        return parallel_map(  # a NamedOperator too
            stage,
            fn,
            workers,
            executor=executor,
            prefetch=prefetch,
            ordered=ordered,
            on_error=on_error,
            max_skipped=max_skipped,
        )
    if on_error == "skip":
        return transform(stage, lambda: _SkippingMap(stage, fn, max_skipped))
    mapper = MapBatches(fn)
    return transform(stage, lambda: mapper)
