"""Wrap a stage with accounting, stage events and error labelling."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import reactivex
from reactivex import abc

from rxpipe.batch import Batch
from rxpipe.context import StageCounts, current_run
from rxpipe.errors import StageError
from rxpipe.events import StageCompleted, StageStarted
from rxpipe.flow.transform import as_stage_error

Operator = Callable[[reactivex.Observable[Any]], reactivex.Observable[Any]]

__all__ = ["StageCounts", "instrument"]


def instrument(name: str, kind: str, operator: Operator) -> Operator:
    """Wrap ``operator`` as the pipeline stage ``name``.

    Each subscription (one pass over the data) publishes ``StageStarted`` and, on
    completion, ``StageCompleted`` with that pass's counts, and adds its counts to the
    run's :class:`StageCounts`. An error raised by the stage itself (not one passing
    through from upstream) reaches downstream as a :class:`StageError` named ``name``,
    with the ids of the last batch that entered the stage. Pipelines name a repeated
    plugin ``"process.normalize#2"``; its errors are relabelled to that name.
    """

    def instrumented(source: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            run = current_run()
            total = run.stage_counts(name, kind)
            pass_index = total.passes
            total.passes += 1
            started = time.perf_counter()
            counts = StageCounts(name, kind)
            upstream_errors: set[int] = set()
            last_input: list[Any] = [None]
            run.publish(StageStarted, stage=name, kind_of_stage=kind, pass_index=pass_index)

            def on_input(item: Any) -> None:
                last_input[0] = item
                if isinstance(item, Batch):
                    counts.batches_in += 1
                    counts.samples_in += item.size

            def on_next(item: Any) -> None:
                if isinstance(item, Batch):
                    counts.batches_out += 1
                    counts.samples_out += item.size
                observer.on_next(item)

            def finish() -> None:
                for field in ("batches_in", "batches_out", "samples_in", "samples_out"):
                    setattr(total, field, getattr(total, field) + getattr(counts, field))
                total.duration_s += time.perf_counter() - started

            def on_error(error: Exception) -> None:
                finish()
                if id(error) not in upstream_errors:
                    if isinstance(error, StageError):
                        # Only the stage's own errors take its pipeline name; an error
                        # of an upstream stage seen through a nested subscription (the
                        # trainer reads its data inside its own operator) keeps its name.
                        if error.stage == name.partition("#")[0]:
                            error = error.relabel(name)
                    else:
                        error = as_stage_error(name, error, last_input[0])
                observer.on_error(error)

            def on_completed() -> None:
                finish()
                run.publish(
                    StageCompleted,
                    stage=name,
                    pass_index=pass_index,
                    batches_in=counts.batches_in,
                    batches_out=counts.batches_out,
                    samples_in=counts.samples_in,
                    samples_out=counts.samples_out,
                    duration_s=time.perf_counter() - started,
                )
                observer.on_completed()

            def tap(
                inner: abc.ObserverBase[Any], sch: abc.SchedulerBase | None = None
            ) -> abc.DisposableBase:
                def forward(item: Any) -> None:
                    on_input(item)
                    inner.on_next(item)

                def forward_error(error: Exception) -> None:
                    upstream_errors.add(id(error))
                    inner.on_error(error)

                return source.subscribe(forward, forward_error, inner.on_completed, scheduler=sch)

            return operator(reactivex.create(tap)).subscribe(
                on_next, on_error, on_completed, scheduler=scheduler
            )

        return reactivex.create(subscribe)

    return instrumented
