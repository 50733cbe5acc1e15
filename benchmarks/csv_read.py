"""Does collect.csv read a numeric CSV as fast as a plain csv.reader + float() loop?

A generated CSV of 200,000 rows (``--quick``: 50,000) with 8 float columns and an integer
class label (``x0,...,x7,label``), in two kinds of numbers:

- ``short``: 3 decimals (``12.573``), as measured data is usually written;
- ``full``: 17 significant digits (Python's ``repr`` of a float64, as pandas' ``to_csv``
  writes computed values), where parsing the numbers costs the most.

rxpipe: ``collect.csv(path, label="label")`` (types inferred, ``chunk_size`` 1024, the
default ``missing`` strings), drained in this process. Baseline: the same file read by
``csv.reader`` 1024 rows at a time, each cell through ``float()``, into the same arrays
(a contiguous float32 array per feature column, float32 labels). Before timing, both
are checked to give equal arrays.

The machine is shared and its speed drifts, so each rxpipe pass is compared with the
mean of the baseline passes run right before and right after it (``paired``); the result
is the median of these ratios (with their quartiles), and ``rows/s`` are medians too.

Goal (both kinds): rxpipe reads at least as fast as the plain loop (ratio >= 1.0), so
the checks it makes (missing values, bad cells named by line and column, ids) cost
nothing over reading the numbers.

Usage: python benchmarks/csv_read.py [--quick] [--json]
"""

from __future__ import annotations

import csv
import itertools
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import reactivex
from _common import Report, alternated, at_least, machine, make_parser, quartiles

from rxpipe.batch import Batch
from rxpipe.operators import collect

COLUMNS = 8
CHUNK = 1024
Sink = Callable[[dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any]], None]


def write_csv(path: Path, rows: int, decimals: int | None) -> None:
    """``rows`` rows of normal(0, 100) numbers (rounded to ``decimals``) and a label 0-2."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(rows, COLUMNS)) * 100
    if decimals is not None:
        data = data.round(decimals)
    labels = rng.integers(0, 3, size=rows)
    with path.open("w", newline="") as handle:
        handle.write(",".join(f"x{i}" for i in range(COLUMNS)) + ",label\n")
        for values, label in zip(data.tolist(), labels.tolist(), strict=True):
            handle.write(",".join(map(repr, values)) + f",{label}\n")


def plain_loop(path: Path, sink: Sink) -> int:
    """The baseline: csv.reader and float(), a chunk of rows at a time; rows read."""
    rows = 0
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        names = next(reader)[:-1]
        while chunk := list(itertools.islice(reader, CHUNK)):
            values = np.array([[float(x) for x in row[:-1]] for row in chunk], dtype=np.float32)
            labels = np.array([float(row[-1]) for row in chunk], dtype=np.float32)
            sink(dict(zip(names, values.T.copy(), strict=True)), labels)
            rows += len(chunk)
    return rows


def with_rxpipe(path: Path, sink: Sink) -> int:
    """collect.csv drained to the end; rows read."""
    done = threading.Event()
    rows = [0]
    errors: list[Exception] = []

    def on_next(batch: Batch) -> None:
        assert isinstance(batch.features, dict)
        assert batch.labels is not None
        sink(batch.features, batch.labels)
        rows[0] += batch.size

    def on_error(error: Exception) -> None:
        errors.append(error)
        done.set()

    stream = reactivex.empty().pipe(collect.csv(str(path), label="label"))
    stream.subscribe(on_next, on_error, done.set)
    done.wait()
    if errors:
        raise errors[0]
    return rows[0]


def check_equal(path: Path) -> None:
    """Both readers give the same arrays, bit for bit."""
    got: list[list[np.ndarray[Any, Any]]] = [[], []]
    for kept, read in zip(got, (plain_loop, with_rxpipe), strict=True):

        def keep(features: dict[str, np.ndarray[Any, Any]], labels: Any, kept: Any = kept) -> None:
            kept.append(np.column_stack([*features.values(), labels]))

        read(path, keep)
    plain, rxpipe = (np.concatenate(arrays) for arrays in got)
    if plain.dtype != rxpipe.dtype or plain.tobytes() != rxpipe.tobytes():
        raise AssertionError(f"{path.name}: collect.csv and the plain loop read different arrays")


def rate(read: Callable[[Path, Sink], int], path: Path) -> float:
    start = time.perf_counter()
    rows = read(path, lambda features, labels: None)
    return rows / (time.perf_counter() - start)


def main() -> int:
    args = make_parser(__doc__).parse_args()
    report = Report(json_lines=args.json)
    rows = 50_000 if args.quick else 200_000
    repeats = 5 if args.quick else 11
    report.note(f"machine: {machine()}; {rows:,} rows; median of {repeats} paired passes")
    with tempfile.TemporaryDirectory(prefix="rxpipe-bench-csv-") as root:
        for kind, decimals in (("short", 3), ("full", None)):
            path = Path(root) / f"{kind}.csv"
            write_csv(path, rows, decimals)
            check_equal(path)  # also warms up both readers
            measured, ratios = alternated(
                repeats, partial(rate, with_rxpipe, path), partial(rate, plain_loop, path)
            )
            value, ratio = float(np.median(measured)), float(np.median(ratios))
            report.result(
                f"csv_read.{kind}_numbers.rxpipe_vs_plain_loop",
                value,
                "rows/s",
                baseline=value / ratio,
                goal=at_least(1.0, "ratio"),
                ratio_quartiles=quartiles(ratios),
                file_mb=round(path.stat().st_size / 2**20, 1),
            )
    return report.summary()


if __name__ == "__main__":
    raise SystemExit(main())
