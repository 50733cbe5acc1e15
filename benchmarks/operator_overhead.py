"""What does a chain of rxpipe operators cost per batch, compared with plain generators?

A 5-stage chain of trivial operators (each returns its batch unchanged) on batches of
128 samples, against the same chain as plain Python generators (the baseline). The
rxpipe chain is measured as operators in one thread (map_batches), as pipeline stages
(each wrapped by instrument(), as Pipeline.run does: accounting and events), and with
the thread boundaries a pipeline adds: consumed through iterate() (the trainer's bounded
buffer), through a bounded_buffer stage, and through a parallel_map stage.

Goals: at least 20,000 batches/s, and at most 50 µs of framework overhead per batch
(time per batch minus the generators' time per batch).

Usage: python benchmarks/operator_overhead.py [--quick] [--json]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import reactivex
from _common import Report, at_least, at_most, best_of, machine, make_parser

from rxpipe.batch import Batch
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus
from rxpipe.flow import bounded_buffer, generate, instrument, iterate, map_batches, parallel_map
from rxpipe.testing import make_metadata

STAGES = 5
SAMPLES = 128


def make_batches() -> list[Batch]:
    """100 distinct batches of 128 samples (32 float32 features, an int label)."""
    features = np.zeros((SAMPLES, 32), "float32")
    labels = np.zeros(SAMPLES, "int64")
    meta = make_metadata(features, labels)
    return [
        Batch(features, labels, np.arange(i * SAMPLES, (i + 1) * SAMPLES), meta) for i in range(100)
    ]


def trivial(batch: Batch) -> Batch:
    """The work of every stage: none."""
    return batch


def generator_chain(batches: list[Batch], n: int) -> int:
    """The baseline: the same 5 stages as generators, pulled by a for loop."""

    def source() -> Iterator[Batch]:
        for i in range(n):
            yield batches[i % 100]

    def stage(upstream: Iterator[Batch]) -> Iterator[Batch]:
        for batch in upstream:
            yield trivial(batch)

    stream = source()
    for _ in range(STAGES):
        stream = stage(stream)
    count = 0
    for _ in stream:
        count += 1
    return count


def rx_source(batches: list[Batch], n: int) -> reactivex.Observable[Batch]:
    """The same source as a cold observable."""

    def source() -> Iterator[Batch]:
        for i in range(n):
            yield batches[i % 100]

    return generate(source)


def count_sync(stream: reactivex.Observable[Any]) -> int:
    """Subscribe and count (the chain runs on this thread, inside subscribe)."""
    count = [0]

    def on_next(_: Any) -> None:
        count[0] += 1

    stream.subscribe(on_next)
    return count[0]


def count_until_done(stream: reactivex.Observable[Any]) -> int:
    """Subscribe and count until completion (for chains with a thread boundary)."""
    import threading

    count = [0]
    done = threading.Event()

    def on_next(_: Any) -> None:
        count[0] += 1

    subscription = stream.subscribe(on_next, lambda e: done.set(), done.set)
    done.wait()
    subscription.dispose()
    return count[0]


def stages() -> list[Callable[[reactivex.Observable[Any]], reactivex.Observable[Any]]]:
    """Five map_batches operators."""
    return [map_batches(f"s{i}", trivial) for i in range(STAGES)]


def instrumented() -> list[Callable[[reactivex.Observable[Any]], reactivex.Observable[Any]]]:
    """Five pipeline stages, each wrapped like Pipeline.run wraps them."""
    return [instrument(f"custom.s{i}", "custom", map_batches(f"s{i}", trivial)) for i in range(5)]


def main() -> int:
    args = make_parser(__doc__).parse_args()
    n = 30_000 if args.quick else 200_000
    repeats = 3
    report = Report(args.json)
    report.note(f"machine: {machine()}; {n:,} batches of {SAMPLES} samples, best of {repeats}")
    batches = make_batches()
    context = RunContext("bench", "bench", None, EventBus("bench"))

    base_s = best_of(repeats, lambda: generator_chain(batches, n))
    variants: list[tuple[str, Callable[[], int]]] = [
        ("overhead.map_batches_x5", lambda: count_sync(rx_source(batches, n).pipe(*stages()))),
        (
            "overhead.pipeline_stages_x5",
            lambda: count_sync(rx_source(batches, n).pipe(*instrumented())),
        ),
        (
            "overhead.pipeline_stages_x5+iterate",
            lambda: sum(1 for _ in iterate(rx_source(batches, n).pipe(*instrumented()), 8)),
        ),
        (
            "overhead.pipeline_stages_x5+bounded_buffer",
            lambda: count_until_done(
                rx_source(batches, n).pipe(*instrumented(), bounded_buffer(8))
            ),
        ),
        (
            "overhead.pipeline_stages_x5+parallel_map(2)",
            lambda: count_until_done(
                rx_source(batches, n).pipe(*instrumented(), parallel_map("p", trivial, 2))
            ),
        ),
    ]
    base_rate = n / base_s
    report.result("overhead.generators_x5", base_rate, "batches/s")
    with running(context):
        for name, run in variants:
            assert run() == n
            seconds = best_of(repeats, run)
            rate = n / seconds
            report.result(name, rate, "batches/s", baseline=base_rate, goal=at_least(20_000))
            overhead_us = (seconds - base_s) / n * 1e6
            report.result(
                name.replace("overhead.", "overhead_per_batch."),
                overhead_us,
                "µs/batch",
                goal=at_most(50),
            )
    return report.summary()


if __name__ == "__main__":
    raise SystemExit(main())
