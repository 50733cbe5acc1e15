"""Large JSON bodies: parsed off the event loop, one at a time, their Python objects freed early."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

from rxpipe.serving import Bundle
from rxpipe.serving.app import create_app

pytestmark = pytest.mark.slow

PREDICT = "/v1/models/overflow:predict"


def rows_body(rows: int) -> bytes:
    """``{"instances": [[0, 0, 1], ...]}``: many tiny lists, 8 bytes of JSON each."""
    return json.dumps({"instances": [[0, 0, 1]] * rows}, separators=(",", ":")).encode()


async def post_all(app: Any, bodies: list[bytes], ticks: list[float] | None = None) -> list[int]:
    """POST the bodies at once; meanwhile, if given, record when the event loop was free."""
    transport = httpx.ASGITransport(app=app)
    done = False

    async def tick() -> None:
        while not done:
            assert ticks is not None
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    ticker = asyncio.ensure_future(tick()) if ticks is not None else None
    async with httpx.AsyncClient(transport=transport, base_url="http://rxpipe", timeout=300) as c:
        headers = {"content-type": "application/json"}
        answers = await asyncio.gather(
            *(c.post(PREDICT, content=b, headers=headers) for b in bodies)
        )
    done = True
    if ticker is not None:
        await ticker
    return [a.status_code for a in answers]


def test_concurrent_large_bodies_are_parsed_one_at_a_time(regression_bundle: Path) -> None:
    """Four 2.4 MB bodies at once peak under 2.5 times one body's Python objects, not 4+ times
    (they used to stay alive while the request waited for the model)."""
    body = rows_body(300_000)
    tracemalloc.start()
    json.loads(body)
    one = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    app, handlers = create_app(Bundle.load(regression_bundle), max_batch_size=1_000_000)
    try:
        tracemalloc.start()
        statuses = asyncio.run(post_all(app, [body] * 4))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        handlers.batcher.close()
    assert statuses == [200] * 4
    assert peak < 2.5 * one, f"peak {peak / 1e6:.0f} MB; one body's objects {one / 1e6:.0f} MB"


def test_the_event_loop_runs_while_a_large_body_is_parsed(regression_bundle: Path) -> None:
    """While an 8 MB body is read, the event loop is never held for more than half the time
    json.loads takes on it (json.loads holds the GIL throughout). On a shared machine another
    process can stall the loop too, so it is measured up to three times; parsing on the
    loop would hold it in every one.

    As `rxpipe serve` does after its warm-up, the objects alive before the request are
    frozen out of the garbage collector's reach: in the test process they are the whole
    suite's (TensorFlow's, every fixture's), and a full collection triggered by the
    parser's allocations scans them all while holding the GIL, for over a second late in a
    full run, which measures the suite's heap, not where the body is parsed."""
    body = rows_body(1_000_000)
    app, handlers = create_app(Bundle.load(regression_bundle), max_batch_size=1_000_000)
    held: list[str] = []
    gc.collect()
    gc.freeze()
    try:
        for _ in range(3):
            started = time.perf_counter()
            json.loads(body)
            loads_s = time.perf_counter() - started
            ticks: list[float] = []
            assert asyncio.run(post_all(app, [body], ticks)) == [200]
            longest = max(b - a for a, b in itertools.pairwise(ticks))
            if longest < 0.5 * loads_s:
                return
            held.append(f"event loop held {longest:.2f} s; json.loads {loads_s:.2f} s")
    finally:
        gc.unfreeze()
        handlers.batcher.close()
    raise AssertionError("; ".join(held))
