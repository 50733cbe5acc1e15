"""ModelBatcher: requests in, micro-batched calls on the model thread, answers routed back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from rxpipe.serving.batcher import BatcherClosedError, ModelBatcher

Arrays = dict[str, np.ndarray[Any, Any]]


class Doubler:
    """A model that doubles its input, records its calls, and can be held busy."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, signature: str, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Arrays:
        self.release.wait(30)
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError(f"negative input in a batch of {len(x)}")
        self.calls.append(len(x))
        return {"y": x * 2, "signature": np.array([signature] * len(x))}


def rows(*values: float) -> dict[str, np.ndarray[Any, Any]]:
    """A batch of one-feature rows."""
    return {"x": np.array(values, dtype=np.float32)[:, np.newaxis]}


async def wait_until(predicate: Any) -> None:
    """Poll ``predicate`` from the event loop (the loop must keep running meanwhile)."""
    for _ in range(3000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 30 s")


def test_requests_queued_while_the_model_is_busy_go_in_one_call(no_thread_leak: None) -> None:
    """While the first call runs, nine more requests gather and run as one call."""
    model = Doubler()
    batcher = ModelBatcher(model, max_batch_size=64, max_wait_ms=0.0)

    async def scenario() -> list[Arrays]:
        model.release.clear()
        first = asyncio.ensure_future(batcher.predict("sig", rows(0)))
        await wait_until(lambda: batcher.stats.pending == 1)
        rest = [asyncio.ensure_future(batcher.predict("sig", rows(i))) for i in range(1, 10)]
        await wait_until(lambda: batcher.stats.pending == 10)
        model.release.set()
        return await asyncio.gather(first, *rest)

    try:
        answers = asyncio.run(scenario())
    finally:
        batcher.close()
    assert [float(a["y"][0, 0]) for a in answers] == [2.0 * i for i in range(10)]
    assert model.calls == [1, 9]
    assert (batcher.stats.model_calls, batcher.stats.largest_batch) == (2, 9)


def test_each_request_gets_its_own_rows_back(no_thread_leak: None) -> None:
    """Requests of different sizes share a call; each receives exactly its slice."""
    model = Doubler()
    batcher = ModelBatcher(model, max_batch_size=6, max_wait_ms=60_000)

    async def scenario() -> list[Arrays]:
        return await asyncio.gather(
            batcher.predict("sig", rows(1)),
            batcher.predict("sig", rows(2, 3)),
            batcher.predict("sig", rows(4, 5, 6)),
        )

    try:
        answers = asyncio.run(scenario())
    finally:
        batcher.close()
    assert [a["y"].ravel().tolist() for a in answers] == [[2.0], [4.0, 6.0], [8.0, 10.0, 12.0]]
    assert model.calls == [6]


def test_signatures_are_batched_apart(no_thread_leak: None) -> None:
    """Requests for different signatures never share a model call."""
    model = Doubler()
    batcher = ModelBatcher(model, max_batch_size=4, max_wait_ms=60_000)

    async def scenario() -> list[Arrays]:
        return await asyncio.gather(
            *(batcher.predict(sig, rows(1, 2)) for sig in ("a", "b", "a", "b"))
        )

    try:
        answers = asyncio.run(scenario())
    finally:
        batcher.close()
    assert [a["signature"].tolist() for a in answers] == [["a", "a"], ["b", "b"]] * 2
    assert model.calls == [4, 4]


def test_a_bad_request_fails_alone(no_thread_leak: None) -> None:
    """A request the model rejects gets the error; the others in its batch still succeed."""
    model = Doubler()
    batcher = ModelBatcher(model, max_batch_size=3, max_wait_ms=60_000)

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            batcher.predict("sig", rows(1)),
            batcher.predict("sig", rows(-1)),
            batcher.predict("sig", rows(3)),
            return_exceptions=True,
        )

    try:
        good, bad, other = asyncio.run(scenario())
    finally:
        batcher.close()
    assert isinstance(bad, ValueError)
    assert "negative input in a batch of 1" in str(bad)
    assert (good["y"].item(), other["y"].item()) == (2.0, 6.0)
    assert (batcher.stats.failed, batcher.stats.requests, batcher.stats.pending) == (1, 3, 0)


def test_flush_answers_waiting_requests_now(no_thread_leak: None) -> None:
    """flush() runs what waits without waiting for max_wait (as on SIGTERM)."""
    model = Doubler()
    batcher = ModelBatcher(model, max_batch_size=64, max_wait_ms=600_000)

    async def scenario() -> Arrays:
        waiting = asyncio.ensure_future(batcher.predict("sig", rows(7)))
        await wait_until(lambda: batcher.stats.pending == 1)
        batcher.flush()
        return await waiting

    try:
        answer = asyncio.run(scenario())
    finally:
        batcher.close()
    assert answer["y"].item() == 14.0


def test_batching_off_makes_one_call_per_request(no_thread_leak: None) -> None:
    """max_batch_size 1: every request is its own call, even when they queue up."""
    model = Doubler()
    batcher = ModelBatcher(model, max_batch_size=1, max_wait_ms=10.0)

    async def scenario() -> None:
        await asyncio.gather(*(batcher.predict("sig", rows(i)) for i in range(5)))

    try:
        asyncio.run(scenario())
    finally:
        batcher.close()
    assert model.calls == [1] * 5


def test_a_closed_batcher_refuses_requests(no_thread_leak: None) -> None:
    """After close() the model thread is gone and predict raises RuntimeError."""
    batcher = ModelBatcher(Doubler(), max_batch_size=4, max_wait_ms=1.0)
    batcher.close()
    with pytest.raises(BatcherClosedError, match="closed"):
        asyncio.run(batcher.predict("sig", rows(1)))


def test_a_request_over_the_cap_runs_in_calls_of_at_most_the_cap(no_thread_leak: None) -> None:
    """max_batch_size is a hard cap: 10 rows at a cap of 4 run as 4 + 4 + 2, answered in order."""
    model = Doubler()
    batcher = ModelBatcher(model, max_batch_size=4, max_wait_ms=60_000)
    try:
        answer = asyncio.run(batcher.predict("sig", rows(*range(10))))
    finally:
        batcher.close()
    assert answer["y"].ravel().tolist() == [2.0 * i for i in range(10)]
    assert model.calls == [4, 4, 2]
    stats = batcher.stats
    assert (stats.model_calls, stats.largest_batch, stats.samples, stats.requests) == (3, 4, 10, 1)


def test_a_small_request_runs_between_the_parts_of_a_large_one(no_thread_leak: None) -> None:
    """A request of 4 parts, then a small one while the first part runs: the small one is
    answered after that part, not after the whole large request."""
    model = Doubler()
    model.release.clear()  # the first part holds the model until the small request is queued
    batcher = ModelBatcher(model, max_batch_size=4, max_wait_ms=1.0)
    finished: list[str] = []

    async def scenario() -> None:
        async def call(name: str, batch: Arrays) -> None:
            await batcher.predict("sig", batch)
            finished.append(name)

        large = asyncio.ensure_future(call("large", rows(*range(16))))
        await wait_until(lambda: batcher.stats.pending == 1)
        small = asyncio.ensure_future(call("small", rows(100.0)))
        await wait_until(lambda: batcher.stats.pending == 2)
        model.release.set()
        await asyncio.gather(large, small)

    try:
        asyncio.run(scenario())
    finally:
        batcher.close()
    assert finished == ["small", "large"]
    assert model.calls[:2] == [4, 1]  # the small request's call right after the first part
    assert batcher.stats.requests == 2


def test_images_take_places_in_a_call_by_their_pixels(no_thread_leak: None) -> None:
    """At 4 samples and 100 pixels a call (25 pixels a place), images of 100, 10, 10, 60
    and 1,000 pixels take 4, 1, 1, 3 and 40 places: calls of 1, 2, 1 and 1 (the image over
    the budget alone); samples without pixels take one place each."""
    model = Doubler()
    batcher = ModelBatcher(model, max_batch_size=4, max_wait_ms=60_000, max_batch_pixels=100)
    try:
        answer = asyncio.run(batcher.predict("sig", rows(*range(5)), [100, 10, 10, 60, 1000]))
        assert model.calls == [1, 2, 1, 1]
        asyncio.run(batcher.predict("sig", rows(*range(4))))  # no pixels: one call of 4
    finally:
        batcher.close()
    assert answer["y"].ravel().tolist() == [2.0 * i for i in range(5)]
    assert model.calls[4:] == [4]
    assert (batcher.stats.samples, batcher.stats.largest_batch) == (9, 4)
