"""Operators fitted on the training split (Pipcook's datasetProcess), and state kept per run.

A fitted operator (a vocabulary, a standardiser, a label map, a stratified split) must
see every training sample before it can transform the first one. It does not hold the
data to do so: on its first subscription in a run it reads its cold upstream once,
feeding only the training samples to a :class:`Fitter`, then subscribes again and
applies what it learned. Later passes of the same run (every epoch, validation,
evaluation) reuse the fitted state, so the extra read happens once per run::

    upstream  ──(pass 1: train split only)──► fitter ──► state
    upstream  ──(pass 2 and every later pass)──► apply(state) ──►

Samples of the ``unsplit`` split count as training samples (a stream that was never
split has no held-out data to leak into the fit). For the run's accounting, the samples
of the fitting pass are counted as dropped by the stage (reason ``"fitting pass"``): they
entered it and were learned from, not passed on.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import reactivex
from reactivex import operators as ops

from rxpipe.batch import Batch, Split
from rxpipe.context import RunContext, current_run
from rxpipe.errors import BatchError
from rxpipe.flow._tally import FITTING_PASS, Tally, current_tally, tallying
from rxpipe.flow.transform import map_batches, transform
from rxpipe.stage import Operator

__all__ = ["FIT_SPLITS", "Fitter", "PerRun", "fitted", "reporting_to"]

S = TypeVar("S")
T = TypeVar("T")
S_co = TypeVar("S_co", covariant=True)

FIT_SPLITS = frozenset({Split.TRAIN, Split.UNSPLIT})
"""The splits fitted operators learn from."""


class PerRun(Generic[T]):
    """One value per run (outside any run: one value for the process).

    Example:
        >>> cache: PerRun[int] = PerRun()
        >>> cache.get() is None, cache.setdefault(1), cache.setdefault(2)
        (True, 1, 1)
    """

    def __init__(self) -> None:
        self._values: weakref.WeakKeyDictionary[RunContext, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self) -> T | None:
        """The current run's value, or ``None``."""
        with self._lock:
            return self._values.get(current_run())

    def setdefault(self, value: T) -> T:
        """Store ``value`` for the current run unless one is stored; return the stored one."""
        with self._lock:
            return self._values.setdefault(current_run(), value)

    def clear(self) -> None:
        """Forget the current run's value."""
        with self._lock:
            self._values.pop(current_run(), None)


class Fitter(Protocol[S_co]):
    """Learns a state from training batches, one batch at a time."""

    def update(self, batch: Batch) -> None:
        """Learn from one batch of training samples."""
        ...

    def result(self) -> S_co:
        """The fitted state (called once, after the last batch)."""
        ...


class _FitPass(Generic[S]):
    def __init__(self, stage: str, fitter: Fitter[S]) -> None:
        self._stage = stage
        self._fitter = fitter
        self._seen = 0
        self._tally = current_tally(stage)

    def on_batch(self, batch: Batch) -> Iterable[S]:
        if batch.split in FIT_SPLITS:
            self._fitter.update(batch)
            self._seen += batch.size
        self._tally.drop(batch, FITTING_PASS)
        return ()

    def on_end(self) -> Iterable[S]:
        if not self._seen:
            raise BatchError(
                f"{self._stage}: expected samples of the 'train' split to fit on. Received: "
                "none (put access.split before this stage, or check the source)"
            )
        return (self._fitter.result(),)


Applied = Batch | Sequence[Batch] | None
"""What a fitted operator's per-batch function returns: a batch, several, or none."""


class _Apply:
    def __init__(self, apply: Callable[[Batch], Applied]) -> None:
        self._apply = apply

    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        out = self._apply(batch)
        if out is None:
            return ()
        if isinstance(out, Batch):
            return () if out.size == 0 else (out,)
        return [b for b in out if b.size]

    def on_end(self) -> Iterable[Batch]:
        return ()


def fitted(
    stage: str,
    make_fitter: Callable[[], Fitter[S]],
    make_apply: Callable[[S], Callable[[Batch], Applied]],
    *,
    on_error: str = "raise",
    max_skipped: int | None = None,
) -> Operator[Batch, Batch]:
    """An operator that fits a state on the training split, then applies it to every split.

    Args:
        stage: the stage name used in errors.
        make_fitter: a new, empty fitter.
        make_apply: turns the fitted state into the per-batch function, which returns a
            batch, several (e.g. one per split), or ``None`` (every sample skipped).
        on_error: ``"skip"``: when the per-batch function fails, retry it sample by
            sample and skip (and report) the samples it fails on; the function must then
            return one batch.
        max_skipped: with ``"skip"``, fail after this many skipped samples in a pass.

    Returns:
        The operator. Its fitted state is kept per run, so every pass of a run agrees.

    Example:
        >>> import numpy as np
        >>> from rxpipe.testing import collect, from_arrays
        >>> class Mean:
        ...     def __init__(self): self.values = []
        ...     def update(self, batch): self.values.append(batch.features)
        ...     def result(self): return float(np.concatenate(self.values).mean())
        >>> center = fitted("custom.center", Mean,
        ...                 lambda m: lambda b: b.evolve(features=b.features - m))
        >>> out = collect(from_arrays(np.arange(4.0)[:, None], batch_size=2).pipe(center))
        >>> np.concatenate([b.features for b in out]).ravel().tolist()
        [-1.5, -0.5, 0.5, 1.5]
    """
    states: PerRun[Callable[[Batch], Applied]] = PerRun()

    def operator(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
        def start(_: Any) -> reactivex.Observable[Batch]:
            tally = current_tally(stage)  # subscribed now: the pass's accounting

            def applied(apply: Callable[[Batch], Applied]) -> reactivex.Observable[Batch]:
                step: Operator[Batch, Batch]
                if on_error == "skip":
                    one: Callable[[Batch], Any] = apply  # returns one batch (see on_error)
                    step = map_batches(stage, one, on_error="skip", max_skipped=max_skipped)
                else:
                    step = transform(stage, lambda: _Apply(apply))
                return reporting_to(tally, source.pipe(step))

            known = states.get()
            if known is not None:
                return applied(known)

            def then_apply(state: S) -> reactivex.Observable[Batch]:
                return applied(states.setdefault(make_apply(state)))

            learned: reactivex.Observable[S] = source.pipe(
                transform(stage, lambda: _FitPass(stage, make_fitter()))
            )
            return learned.pipe(ops.concat_map(then_apply))

        return reactivex.defer(start)

    return operator


def reporting_to(tally: Tally, observable: reactivex.Observable[T]) -> reactivex.Observable[T]:
    """``observable``, subscribed with ``tally`` current (for a subscription made later)."""

    def subscribe(observer: Any, scheduler: Any = None) -> Any:
        with tallying(tally):
            return observable.subscribe(observer, scheduler=scheduler)

    return reactivex.create(subscribe)
