"""How much faster does a stage run with 2 workers than with 1, on 2 cores?

Two stages, each run through rxpipe.flow.parallel_map with workers=1 (the baseline,
measured in the same run) and workers=2:

- threads, on GIL-releasing numpy work of about 2 ms per batch (sin, exp, sqrt, cos over
  a float64 array; ufuncs, so no BLAS or OpenMP threads). Goal: ≥ 1.8×.
- processes, on pure-Python work of about 10 ms per batch (a summing loop). Goal: ≥ 1.6×
  in steady state (from the first result to the last); the end-to-end ratio, which
  includes starting the worker processes (spawn), is reported too.

Each configuration runs several times (threads 3, processes 2) and the best run counts:
this VM's neighbours are noisy. The raw 2-thread ratio of the same numpy work, without
rxpipe, is reported as the machine's ceiling.

Usage: python benchmarks/parallel_scaling.py [--quick] [--json]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import reactivex
from _common import Report, at_least, machine, make_parser

from rxpipe.flow import generate, parallel_map

ARRAY = 200_000


_scratch = threading.local()


def numpy_work(x: np.ndarray[Any, Any]) -> float:
    """About 2 ms of ufunc work that releases the GIL (into a per-thread scratch array, so
    that it measures computing, not the page faults of a fresh 1.6 MB array per call)."""
    y = getattr(_scratch, "y", None)
    if y is None or y.shape != x.shape:
        y = _scratch.y = np.empty_like(x)
    np.sin(x, out=y)
    np.exp(y, out=y)
    np.sqrt(y, out=y)
    np.cos(y, out=y)
    return float(y[0])


def python_work(n: int) -> int:
    """Pure-Python work: a summing loop of ``n`` steps (holds the GIL)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate_numpy(seconds: float) -> np.ndarray[Any, Any]:
    """An array on which :func:`numpy_work` takes about ``seconds`` here."""
    probe = np.random.default_rng(0).random(ARRAY)
    numpy_work(probe)
    start = time.perf_counter()
    for _ in range(10):
        numpy_work(probe)
    took = (time.perf_counter() - start) / 10
    return np.random.default_rng(0).random(max(1000, int(ARRAY * seconds / took)))


def calibrate_python(seconds: float) -> int:
    """Loop steps that take about ``seconds`` here."""
    steps = 10_000
    while True:
        start = time.perf_counter()
        python_work(steps)
        took = time.perf_counter() - start
        if took > 0.02:
            return max(1, int(steps * seconds / took))
        steps *= 2


def timed(
    source: reactivex.Observable[Any], stage: Callable[[Any], Any], count: int
) -> tuple[float, float]:
    """(end-to-end seconds, seconds from the first result to the last)."""
    done = threading.Event()
    first: list[float] = []
    seen = [0]

    def on_next(_: Any) -> None:
        if not first:
            first.append(time.perf_counter())
        seen[0] += 1

    start = time.perf_counter()
    subscription = source.pipe(stage).subscribe(on_next, lambda e: done.set(), done.set)
    done.wait()
    end = time.perf_counter()
    subscription.dispose()
    assert seen[0] == count, seen[0]
    return end - start, end - first[0]


def raw_thread_scaling(array: np.ndarray[Any, Any], count: int) -> dict[int, float]:
    """Batches/s of the numpy work on 1 and 2 plain threads (best of 3), without rxpipe."""

    def work(n: int) -> None:
        for _ in range(n):
            numpy_work(array)

    rates = {}
    for workers in (1, 2):
        best = float("inf")
        for _ in range(3):
            threads = [
                threading.Thread(target=work, args=(count // workers,)) for _ in range(workers)
            ]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            best = min(best, time.perf_counter() - start)
        rates[workers] = count / best
    return rates


def repeat_items(item: Any, count: int) -> reactivex.Observable[Any]:
    """A cold source emitting ``item`` ``count`` times."""

    def items() -> Iterator[Any]:
        for _ in range(count):
            yield item

    return generate(items)


def main() -> int:
    args = make_parser(__doc__).parse_args()
    report = Report(args.json)
    report.note(f"machine: {machine()}")

    arrays = calibrate_numpy(0.002)
    start = time.perf_counter()
    for _ in range(20):
        numpy_work(arrays)
    per_batch = (time.perf_counter() - start) / 20
    count = 1_000 if args.quick else 3_000
    report.note(f"threads: {count} batches of {per_batch * 1e3:.2f} ms numpy work")
    source = repeat_items(arrays, count)
    rates = {}
    for workers in (1, 2):
        stage = parallel_map("numpy", numpy_work, workers)
        seconds = min(timed(source, stage, count)[0] for _ in range(3))
        rates[workers] = count / seconds
    raw = raw_thread_scaling(arrays, count)
    report.result("parallel.threads_numpy_workers_1", rates[1], "batches/s")
    report.result(
        "parallel.threads_numpy_workers_2",
        rates[2],
        "batches/s",
        baseline=rates[1],
        goal=at_least(1.8, "ratio"),
    )
    report.result(
        "parallel.threads_numpy_raw_2_threads",
        raw[2],
        "batches/s",
        baseline=raw[1],
        note="the same work on 2 plain threads, no rxpipe: this machine's ceiling",
    )

    steps = calibrate_python(0.010)
    count = 300 if args.quick else 1_000
    report.note(f"processes: {count} items of ~10 ms pure-Python work ({steps:,} steps)")
    source = repeat_items(steps, count)
    end_to_end, steady = {}, {}
    for workers in (1, 2):
        stage = parallel_map("python", python_work, workers, executor="process")
        runs = [timed(source, stage, count) for _ in range(2)]
        end_to_end[workers] = count / min(total for total, _ in runs)
        steady[workers] = (count - 1) / min(after_first for _, after_first in runs)
    report.result("parallel.processes_python_workers_1_steady", steady[1], "items/s")
    report.result(
        "parallel.processes_python_workers_2_steady",
        steady[2],
        "items/s",
        baseline=steady[1],
        goal=at_least(1.6, "ratio"),
    )
    report.result("parallel.processes_python_workers_1_end_to_end", end_to_end[1], "items/s")
    report.result(
        "parallel.processes_python_workers_2_end_to_end",
        end_to_end[2],
        "items/s",
        baseline=end_to_end[1],
    )
    return report.summary()


if __name__ == "__main__":
    raise SystemExit(main())
