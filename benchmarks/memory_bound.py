"""Does memory stay bounded when a fast source feeds a slow consumer?

A source makes 4 MB batches (float32, 1024×1024, every page written) as fast as it can;
a consumer takes 10 ms per batch. In rxpipe the batches pass a parallel_map (2 worker
threads, prefetch 2: 4 in flight) and a bounded_buffer of capacity 4 before the
consumer. Each variant runs in a fresh process; its baseline is that process's peak RSS
just before the stream starts (interpreter, numpy, rxpipe), measured in the same run.

Goals:
- peak RSS ≤ baseline + (capacity + in flight + 2) × 4 MB × 1.25 (here: + 50 MB);
- the same peak (within 10%) when the source is 10× longer.

For contrast, the same source through plain reactivex with ``observe_on`` (no
backpressure): its queue grows by one batch per batch the consumer has not taken yet.
That run stops its source once its RSS passes a cap (so the machine survives), and
reports how fast memory grew.

Usage: python benchmarks/memory_bound.py [--quick] [--json]
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from _common import MB, Report, at_most, machine, make_parser

BATCH_SHAPE = (1024, 1024)  # float32: 4 MB
BATCH_MB = 4
CONSUMER_S = 0.010
CAPACITY = 4
WORKERS = 2
PREFETCH = 2
CONTRAST_CAP_MB = 1500


def rss_now() -> int:
    """Current resident set size, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_so_far() -> int:
    """Peak resident set size so far, in bytes (Linux: VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def variant(name: str, batches: int) -> dict[str, Any]:
    """Run one variant in this process; return its measurements."""
    import numpy as np
    import reactivex
    from reactivex import operators as ops
    from reactivex.scheduler import NewThreadScheduler

    from rxpipe.flow import bounded_buffer, generate, parallel_map

    produced = [0]

    def make_batches() -> Iterator[Any]:
        for i in range(batches):
            if name == "observe_on" and i % 25 == 0 and rss_now() > CONTRAST_CAP_MB * MB:
                return  # the unbounded queue reached the cap: stop before the machine suffers
            produced[0] += 1
            yield np.full(BATCH_SHAPE, i, dtype=np.float32)

    def consume(_: Any) -> None:
        time.sleep(CONSUMER_S)

    def touch(batch: Any) -> Any:
        return batch

    baseline = peak_so_far()
    start = time.perf_counter()
    if name == "plain_generator":
        for batch in make_batches():
            consume(batch)
    else:
        if name == "rxpipe":
            stream = generate(make_batches).pipe(
                parallel_map("touch", touch, WORKERS, prefetch=PREFETCH), bounded_buffer(CAPACITY)
            )
        else:
            stream = reactivex.from_iterable(make_batches()).pipe(
                ops.observe_on(NewThreadScheduler())
            )
        done = threading.Event()
        subscription = stream.subscribe(consume, lambda e: done.set(), done.set)
        done.wait()
        subscription.dispose()
    return {
        "baseline": baseline,
        "peak": peak_so_far(),
        "produced": produced[0],
        "seconds": time.perf_counter() - start,
    }


def run_variant(name: str, batches: int) -> dict[str, Any]:
    """Run one variant in a fresh Python process."""
    out = subprocess.run(
        [sys.executable, __file__, "--variant", name, "--batches", str(batches)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--variant", help=argparse_hidden())
    parser.add_argument("--batches", type=int, help=argparse_hidden())
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(variant(args.variant, args.batches)))
        return 0

    report = Report(args.json)
    short = 200 if args.quick else 2_000
    report.note(
        f"machine: {machine()}; {short:,} and {10 * short:,} batches of {BATCH_MB} MB, "
        f"consumer {CONSUMER_S * 1e3:.0f} ms/batch"
    )
    bound_mb = (CAPACITY + WORKERS + PREFETCH + 2) * BATCH_MB * 1.25
    plain = run_variant("plain_generator", short)
    report.result(
        "memory.plain_generator_peak_over_baseline",
        (plain["peak"] - plain["baseline"]) / MB,
        "MB",
    )
    ours = run_variant("rxpipe", short)
    report.result(
        "memory.rxpipe_peak_over_baseline",
        (ours["peak"] - ours["baseline"]) / MB,
        "MB",
        goal=at_most(bound_mb),
        baseline_rss_mb=round(ours["baseline"] / MB, 1),
        batches_per_s=round(short / ours["seconds"], 1),
    )
    longer = run_variant("rxpipe", 10 * short)
    report.result(
        "memory.rxpipe_10x_longer_peak",
        longer["peak"] / MB,
        "MB",
        baseline=ours["peak"] / MB,
        goal=at_most(1.10, "ratio"),
        over_baseline_mb=round((longer["peak"] - longer["baseline"]) / MB, 1),
        batches_per_s=round(10 * short / longer["seconds"], 1),
    )
    contrast = run_variant("observe_on", short)
    growth = (contrast["peak"] - contrast["baseline"]) / MB
    report.result(
        "memory.observe_on_peak_over_baseline",
        growth,
        "MB",
        baseline=(ours["peak"] - ours["baseline"]) / MB,
        produced=contrast["produced"],
        stopped_at_cap=contrast["produced"] < short,
    )
    return report.summary()


def argparse_hidden() -> str:
    """Help text that hides an internal option."""
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
