"""Cold sources: from generator factories, and appended to a stream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import reactivex
from reactivex import abc
from reactivex.disposable import Disposable
from reactivex.scheduler import CurrentThreadScheduler

T = TypeVar("T")


def generate(factory: Callable[[], Iterator[T]]) -> reactivex.Observable[T]:
    """A cold observable that runs ``factory()`` anew for every subscription.

    The generator is advanced only while the subscription is alive: disposing it (or an
    error downstream) stops the loop before the next item, and the generator is closed,
    so files it holds are released. An exception raised by ``factory()`` or the generator
    reaches the observer's ``on_error``.

    Example:
        >>> from rxpipe.testing import collect
        >>> collect(generate(lambda: iter(range(3))))
        [0, 1, 2]
    """

    def subscribe(
        observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        disposed = False

        def run(_: abc.SchedulerBase, __: Any = None) -> None:
            try:
                iterator = factory()
            except Exception as error:  # e.g. a file that cannot be opened: on_error too
                observer.on_error(error)
                return
            try:
                while not disposed:
                    try:
                        item = next(iterator)
                    except StopIteration:
                        observer.on_completed()
                        return
                    observer.on_next(item)
            except Exception as error:
                observer.on_error(error)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()

        def dispose() -> None:
            nonlocal disposed
            disposed = True

        # Scheduling on the trampoline lets the subscription chain finish wiring its
        # disposables before the first item flows, so a downstream error can stop us.
        sched = scheduler or CurrentThreadScheduler.singleton()
        return reactivex.disposable.CompositeDisposable(sched.schedule(run), Disposable(dispose))

    return reactivex.create(subscribe)


def append(
    factory: Callable[[], reactivex.Observable[T]],
) -> Callable[[reactivex.Observable[T]], reactivex.Observable[T]]:
    """An operator emitting its input, then the items of the observable ``factory()`` makes.

    This is how a ``collect`` plugin chains after the sources before it. ``factory`` is
    called when the operator is subscribed, once per pass, so what it creates then (a
    :class:`~rxpipe.flow.Tally` from :func:`~rxpipe.flow.current_tally`, per-pass state)
    belongs to the stage's pass. (``reactivex.concat(source, reactivex.defer(...))`` would
    call it only when the input completes, on whatever thread that happens, where the
    stage's tally is no longer current.)

    Example:
        >>> from rxpipe.testing import collect
        >>> collect(reactivex.of(1, 2).pipe(append(lambda: generate(lambda: iter([3])))))
        [1, 2, 3]
    """

    def operator(source: reactivex.Observable[T]) -> reactivex.Observable[T]:
        return reactivex.defer(lambda _: reactivex.concat(source, factory()))

    return operator
