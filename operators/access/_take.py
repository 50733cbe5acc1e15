"""access.take and access.skip: the first samples of the stream, or all but them."""

from __future__ import annotations

from collections.abc import Iterable

import reactivex
from reactivex import abc
from reactivex.disposable import SingleAssignmentDisposable

from rxpipe.batch import Batch, Split
from rxpipe.flow import current_tally, transform
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import non_negative_int, positive_int


class _Counted:
    """Keep (``take``) or drop (``skip``) the first ``count`` samples, overall or per split."""

    def __init__(self, stage: str, count: int, keep_first: bool, per_split: bool) -> None:
        self._count = count
        self._keep_first = keep_first
        self._per_split = per_split
        self._seen: dict[Split | None, int] = {}
        self._tally = current_tally(stage)
        self._reason = f"{stage}({count}{', per_split' if per_split else ''})"

    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        key = batch.split if self._per_split else None
        seen = self._seen.get(key, 0)
        self._seen[key] = seen + batch.size
        head = max(0, min(batch.size, self._count - seen))  # samples within the first count
        kept = head if self._keep_first else batch.size - head
        if kept < batch.size:
            self._tally.drop(batch.size - kept, self._reason)
        if kept == 0:
            return ()
        if kept == batch.size:
            return (batch,)
        return (batch.select(slice(0, head) if self._keep_first else slice(head, batch.size)),)

    def on_end(self) -> Iterable[Batch]:
        return ()


def _take_total(count: int) -> Operator[Batch, Batch]:
    """The first ``count`` samples; then complete and dispose the upstream."""

    def operator(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
        def subscribe(
            observer: abc.ObserverBase[Batch], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            tally = current_tally("access.take")
            upstream = SingleAssignmentDisposable()
            left = count
            done = False

            def on_next(batch: Batch) -> None:
                nonlocal left, done
                if done:
                    return
                out = batch if batch.size <= left else batch.select(slice(0, left))
                if out.size < batch.size:
                    tally.drop(batch.size - out.size, f"access.take({count})")
                left -= out.size
                if out.size:
                    observer.on_next(out)
                if left == 0:
                    done = True
                    upstream.dispose()
                    observer.on_completed()

            def on_error(error: Exception) -> None:
                if not done:
                    observer.on_error(error)

            def on_completed() -> None:
                if not done:
                    observer.on_completed()

            upstream.disposable = source.subscribe(
                on_next, on_error, on_completed, scheduler=scheduler
            )
            return upstream

        return reactivex.create(subscribe)

    return operator


@plugin("access.take")
def take(count: int, per_split: bool = False) -> Operator[Batch, Batch]:
    """Only the first ``count`` samples (of the stream, or of each split): for quick runs.

    Without ``per_split`` the stage completes as soon as it has ``count`` samples and
    stops reading its upstream. With ``per_split``, each split keeps its first ``count``
    samples and the rest of the stream is read and counted as dropped.

    Args:
        count: how many samples to keep.
        per_split: count each split separately.

    Example:
        >>> import numpy as np
        >>> from rxpipe.testing import collect, from_arrays
        >>> source = from_arrays(np.zeros((100, 1)), batch_size=8)
        >>> [b.size for b in collect(source.pipe(take(20)))]
        [8, 8, 4]
    """
    positive_int("access.take", "count", count)
    if per_split:
        return transform("access.take", lambda: _Counted("access.take", count, True, True))
    return _take_total(count)


@plugin("access.skip")
def skip(count: int, per_split: bool = False) -> Operator[Batch, Batch]:
    """Drop the first ``count`` samples (of the stream, or of each split).

    Args:
        count: how many samples to drop.
        per_split: count each split separately.

    Example:
        >>> import numpy as np
        >>> from rxpipe.testing import collect, from_arrays
        >>> source = from_arrays(np.zeros((10, 1)), batch_size=4)
        >>> [b.ids.tolist() for b in collect(source.pipe(skip(5)))]
        [[5, 6, 7], [8, 9]]
    """
    non_negative_int("access.skip", "count", count)
    return transform("access.skip", lambda: _Counted("access.skip", count, False, per_split))
