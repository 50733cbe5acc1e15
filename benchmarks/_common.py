"""Shared by the benchmark scripts: ``--quick``/``--json``, results against a baseline, goals.

Every benchmark answers one question, measures its baseline in the same run, and reports
each result as one line (or, with ``--json``, one JSON object)::

    {"name": ..., "value": ..., "unit": ..., "baseline": ..., "ratio": ..., "goal": ..., "met": ...}

``ratio`` is ``value / baseline``; ``goal`` says what is required, of the value or of the
ratio (e.g. ``"ratio >= 1.8"``), and ``met`` whether this run meets it.

Example::

    report = Report(json_lines=args.json)
    report.result("demo.rate", 30.0, "items/s", baseline=20.0, goal=at_least(1.2, "ratio"))
    # {"name": "demo.rate", "value": 30.0, "unit": "items/s", "baseline": 20.0,
    #  "ratio": 1.5, "goal": "ratio >= 1.2", "met": true}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Goal",
    "Report",
    "at_least",
    "at_most",
    "best_of",
    "machine",
    "make_parser",
    "paired",
    "peak_rss_bytes",
]

MB = 1 << 20


@dataclass(frozen=True)
class Goal:
    """A requirement on a result's value or ratio, e.g. ``ratio >= 1.8``."""

    on: Literal["value", "ratio"]
    op: Literal[">=", "<="]
    target: float

    def met(self, value: float, ratio: float | None) -> bool | None:
        """Whether ``value`` (or ``ratio``) meets the goal; ``None`` if there is no ratio."""
        x = value if self.on == "value" else ratio
        if x is None:
            return None
        return x >= self.target if self.op == ">=" else x <= self.target

    def __str__(self) -> str:
        return f"{self.on} {self.op} {self.target:g}"


def at_least(target: float, on: Literal["value", "ratio"] = "value") -> Goal:
    """The goal ``on >= target``."""
    return Goal(on, ">=", target)


def at_most(target: float, on: Literal["value", "ratio"] = "value") -> Goal:
    """The goal ``on <= target``."""
    return Goal(on, "<=", target)


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with ``--quick`` and ``--json``, described by ``doc``'s first line."""
    parser = argparse.ArgumentParser(
        description=(doc or "").strip().split("\n", 1)[0],
        epilog="Results are recorded in benchmarks/RESULTS.md.",
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run (under a minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per result")
    return parser


class Report:
    """Prints results as aligned lines, or as JSON lines with ``json_lines``."""

    def __init__(self, json_lines: bool = False) -> None:
        self.json_lines = json_lines
        self.records: list[dict[str, Any]] = []

    def note(self, text: str) -> None:
        """Context for a human reader (on stderr with ``--json``, so stdout stays JSON)."""
        print(text, file=sys.stderr if self.json_lines else sys.stdout, flush=True)

    def result(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: float | None = None,
        goal: Goal | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Print and keep one result; ``extra`` fields are added to its JSON object."""
        ratio = value / baseline if baseline else None
        record: dict[str, Any] = {
            "name": name,
            "value": _round(value),
            "unit": unit,
            "baseline": None if baseline is None else _round(baseline),
            "ratio": None if ratio is None else round(ratio, 3),
            "goal": None if goal is None else str(goal),
            "met": None if goal is None else goal.met(value, ratio),
            **extra,
        }
        self.records.append(record)
        if self.json_lines:
            print(json.dumps(record), flush=True)
        else:
            text = f"{name:44s} {_round(value):>14,} {unit}"
            if baseline is not None:
                text += f"  (baseline {_round(baseline):,}; ratio {ratio:.3f})"
            if goal is not None:
                text += f"  goal {goal}: {'met' if record['met'] else 'MISSED'}"
            if extra:
                text += "  [" + ", ".join(f"{k}={v}" for k, v in extra.items()) + "]"
            print(text, flush=True)
        return record

    def summary(self) -> int:
        """Print how many goals were met; the exit status (0: the benchmark ran)."""
        judged = [r for r in self.records if r["met"] is not None]
        met = sum(1 for r in judged if r["met"])
        self.note(f"{met} of {len(judged)} goals met")
        return 0


def _round(x: float) -> float:
    if x == 0 or abs(x) >= 100:
        return round(x, 1)
    return float(f"{x:.4g}")


def best_of(repeats: int, run: Callable[[], Any]) -> float:
    """The shortest wall time of ``repeats`` calls of ``run``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def paired(rates: list[float], bounds: list[float]) -> list[float]:
    """Each rate over the mean of the baseline measured right before and right after it.

    On a shared machine whose speed drifts, a variant measured between two baseline runs
    is compared with what the machine did around it, not with its best moment.

    Example:
        >>> paired([90.0], [100.0, 80.0])
        [1.0]
    """
    return [rate / ((bounds[i] + bounds[i + 1]) / 2) for i, rate in enumerate(rates)]


def alternated(
    repeats: int, measure: Callable[[], float], baseline: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """``measure``'s rates and their :func:`paired` ratios, each run between two baselines.

    Example:
        >>> alternated(2, lambda: 90.0, lambda: 100.0)
        ([90.0, 90.0], [0.9, 0.9])
    """
    bounds = [baseline()]
    rates: list[float] = []
    for _ in range(repeats):
        rates.append(measure())
        bounds.append(baseline())
    return rates, paired(rates, bounds)


def quartiles(values: list[float]) -> list[float]:
    """The first and third quartiles, rounded as results are.

    Example:
        >>> quartiles([1.0, 2.0, 3.0, 4.0, 5.0])
        [2.0, 4.0]
    """
    import numpy as np

    return [round(float(q), 3) for q in np.quantile(values, [0.25, 0.75])]


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        model = platform.processor()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    import numpy

    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "load_1min": round(load, 2),
    }
