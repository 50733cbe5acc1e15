"""Stress: many short pipelines with random stages and random failures; no hang, no leak."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, Pipeline, RxpipeError, Stage
from rxpipe.flow import bounded_buffer, generate, map_batches, parallel_map, prefetch
from rxpipe.testing import make_metadata, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")

RUNS = 150


class Broken(OSError):
    """The error a broken source raises."""


def random_source(rng: random.Random) -> tuple[reactivex.Observable[Batch], bool]:
    """Batches of random sizes; sometimes the source breaks part-way. Returns (source, breaks)."""
    sizes = [rng.randint(1, 8) for _ in range(rng.randint(0, 20))]
    total = sum(sizes)
    features = np.arange(total, dtype="float32")[:, None]
    meta = make_metadata(features)
    breaks_after = rng.randint(0, len(sizes)) if rng.random() < 0.2 else None

    def batches() -> Iterator[Batch]:
        start = 0
        for index, size in enumerate(sizes):
            if index == breaks_after:
                raise Broken("the source broke")
            yield Batch(features[start : start + size], None, np.arange(start, start + size), meta)
            start += size
        if breaks_after == len(sizes):
            raise Broken("the source broke at its end")

    return generate(batches), breaks_after is not None


def random_stage(rng: random.Random, index: int) -> Stage[Any, Any]:
    """A random flow stage; some fail on a random sample, in raise or skip mode."""
    name = f"custom.s{index}"
    bad = {rng.randint(0, 80)} if rng.random() < 0.3 else set()
    on_error = rng.choice(["raise", "skip"])

    def work(batch: Batch) -> Batch:
        if bad.intersection(batch.ids.tolist()):
            raise ValueError("random failure")
        return batch

    kind = rng.choice(["buffer", "lossy", "prefetch", "parallel", "map"])
    if kind == "buffer":
        return Stage(name, bounded_buffer(rng.randint(1, 4)))
    if kind == "lossy":
        overflow = rng.choice(["drop_oldest", "drop_newest"])
        return Stage(name, bounded_buffer(rng.randint(1, 4), overflow=overflow))
    if kind == "prefetch":
        return Stage(name, prefetch(rng.randint(1, 3)))
    workers = rng.randint(1, 3) if kind == "parallel" else 1
    ordered = rng.random() < 0.8
    return Stage(
        name,
        map_batches(name, work, on_error=on_error, workers=workers, ordered=ordered)
        if kind == "map"
        else parallel_map(name, work, workers, ordered=ordered, on_error=on_error),
    )


@pytest.mark.timeout(60)
def test_many_short_pipelines_never_hang_or_leak(tmp_path: Path) -> None:
    """Random pipelines each finish or fail cleanly, balanced, leaving nothing running."""
    rng = random.Random(20240229)
    outcomes = {"completed": 0, "failed": 0}
    for index in range(RUNS):
        source, breaks = random_source(rng)
        stages = [random_stage(rng, i) for i in range(rng.randint(1, 4))]
        pipeline = Pipeline(*stages, source=source, name=f"stress{index}", runs_dir=tmp_path)
        try:
            result = pipeline.run(progress=False)
        except (RxpipeError, Broken):
            outcomes["failed"] += 1
            continue
        assert not breaks  # a broken source always fails the run
        outcomes["completed"] += 1
        for counts in result.counts.values():
            assert counts.balanced
    assert outcomes["completed"] > 10
    assert outcomes["failed"] > 10


@pytest.mark.timeout(60)
def test_disposing_at_random_moments_never_hangs_or_leaks() -> None:
    """Random chains disposed at random moments (even while starting) stop cleanly."""
    rng = random.Random(7)
    for index in range(RUNS):
        source, _ = random_source(rng)
        chain = [random_stage(rng, i) for i in range(rng.randint(1, 4))]
        subscription = source.pipe(*chain).subscribe(lambda _: None, lambda _: None)
        if rng.random() < 0.7:
            threading.Event().wait(rng.random() / 200)
        subscription.dispose()
        assert wait_for(lambda: not engine_threads(), timeout=2.0), index


def engine_threads() -> list[threading.Thread]:
    """The flow engine's threads alive now."""
    return [t for t in threading.enumerate() if t.name.startswith("rxpipe-custom")]
