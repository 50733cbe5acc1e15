"""What does throughput measurement (stage timing, buffer counters, snapshots) cost?

A data pipeline typical of rxpipe (features of 8x8 images in batches of 64: normalize,
rebatch to 32, a prefetch buffer, a light custom map) is run over the same data twice
per repeat, interleaved: once as a plain operator chain (the stages piped, no
instrumentation; the baseline) and once as ``Pipeline.run`` runs its stages (each
wrapped by ``instrument()``, so with accounting, per-batch busy timing, buffer
counters, and a throughput snapshot every second).

The machine is shared and its speed drifts from one second to the next, so each
instrumented pass is compared with the mean of the plain passes run right before and
right after it; the result is the median of these ratios (with their quartiles), and
``samples/s`` are medians too.

Two workloads: 32x32x3 images in batches of 64 (typical), and 8x8 features in batches
of 32 (a worst case: about 40,000 batches/s, where any per-batch cost shows).

Goal (typical workload): measured throughput is at least 95% of the uninstrumented
throughput (the measurement costs under 5%). The worst case is reported without a goal.

Usage: python benchmarks/bench_overhead.py [--quick] [--json]
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Any

import numpy as np
import reactivex
from _common import Report, alternated, at_least, machine, make_parser, quartiles
from reactivex import operators as ops

from rxpipe.batch import Batch
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus
from rxpipe.operators import access, process
from rxpipe.pipeline import Pipeline
from rxpipe.snapshots import snapshot_timer
from rxpipe.testing import from_arrays


def light(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    """A cheap custom stage: one numpy operation per batch."""

    def work(batch: Batch) -> Batch:
        float(batch.features.sum())
        return batch

    return source.pipe(ops.map(work))


def make_pipeline(samples: int, features_per_sample: int, batch: int) -> Pipeline:
    rng = np.random.default_rng(0)
    features = rng.integers(0, 16, size=(samples, features_per_sample)).astype("float32")
    labels = rng.integers(0, 10, size=samples)
    return Pipeline(
        process.normalize(scale=1 / 16),
        access.batch(batch),
        access.prefetch(4),
        light,
        name="overhead",
        source=from_arrays(features, labels, batch_size=2 * batch),
    )


def drain(observable: reactivex.Observable[Any]) -> int:
    """Subscribe, wait for the end, return the number of samples seen."""
    done = threading.Event()
    seen = [0]
    errors: list[Exception] = []

    def on_next(item: Any) -> None:
        seen[0] += item.size

    def on_error(error: Exception) -> None:
        errors.append(error)
        done.set()

    observable.subscribe(on_next, on_error, done.set)
    done.wait()
    if errors:
        raise errors[0]
    return seen[0]


def plain_rate(pipeline: Pipeline) -> float:
    start = time.perf_counter()
    samples = drain(pipeline(pipeline.source))
    return samples / (time.perf_counter() - start)


def measured_rate(pipeline: Pipeline) -> float:
    context = RunContext("bench-overhead", pipeline.name, None, EventBus("bench-overhead"))
    start = time.perf_counter()
    with running(context), snapshot_timer(context, pipeline.stage_names, 1.0):
        samples = drain(pipeline._instrumented())
    return samples / (time.perf_counter() - start)


def main() -> int:
    args = make_parser(__doc__).parse_args()
    report = Report(json_lines=args.json)
    scale = 1 if args.quick else 4
    repeats = 7 if args.quick else 15
    report.note(f"machine: {machine()}; median of {repeats} paired passes")
    # (name, samples, features per sample, batch size, goal)
    workloads = [
        ("images_32x32x3_batch_64", 50_000 * scale, 32 * 32 * 3, 64, at_least(0.95, "ratio")),
        ("tiny_8x8_batch_32", 200_000 * scale, 64, 32, None),  # worst case: ~40k batches/s
    ]
    for name, samples, width, batch, goal in workloads:
        pipeline = make_pipeline(samples, width, batch)
        measured_rate(pipeline)  # warm up both paths
        measured, ratios = alternated(
            repeats, partial(measured_rate, pipeline), partial(plain_rate, pipeline)
        )
        value, ratio = float(np.median(measured)), float(np.median(ratios))
        report.result(
            f"bench_overhead.{name}.instrumented_vs_plain",
            value,
            "samples/s",
            baseline=value / ratio,
            goal=goal,
            ratio_quartiles=quartiles(ratios),
        )
    return report.summary()


if __name__ == "__main__":
    raise SystemExit(main())
