"""Micro-batching and graceful shutdown of the real server process."""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
from typing import Any

import httpx
import numpy as np
import pytest

from rxpipe.testing import wait_for

pytestmark = pytest.mark.slow

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


async def _predict_all(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(
            *(client.post(f"{url}/v1/models/digits:predict", json=body) for body in bodies)
        )


def delta(after: dict[str, Any], before: dict[str, Any], *keys: str) -> tuple[int, ...]:
    """How much each counter grew."""
    return tuple(after[k] - before[k] for k in keys)


def test_concurrent_requests_share_one_model_call(batching_server: Any, digits_bundle: Any) -> None:
    """Eight concurrent one-digit requests make one model call; each gets its own answer."""
    images = digits_bundle.images[:8]
    # The batch can only close by filling up: max wait is far longer than the test.
    before = batching_server.stats()
    bodies = [{"instances": [image.tolist()]} for image in images]
    answers = asyncio.run(_predict_all(batching_server.url, bodies))
    stats = batching_server.stats()
    assert [a.status_code for a in answers] == [200] * 8
    for index, answer in enumerate(answers):
        [prediction] = answer.json()["predictions"]
        np.testing.assert_allclose(prediction["scores"], digits_bundle.scores[index], **TOLERANCE)
    assert delta(stats, before, "model_calls", "requests", "samples") == (1, 8, 8)
    assert stats["largest_batch"] == 8


def test_requests_of_several_rows_are_batched_and_split_back(
    batching_server: Any, digits_bundle: Any
) -> None:
    """Requests of 1, 3 and 4 rows fill one batch of 8 and each gets back its own rows."""
    bounds = list(itertools.pairwise(np.cumsum([0, 1, 3, 4]).tolist()))
    before = batching_server.stats()
    bodies = [{"inputs": digits_bundle.images[a:b].tolist()} for a, b in bounds]
    answers = asyncio.run(_predict_all(batching_server.url, bodies))
    stats = batching_server.stats()
    for answer, (a, b) in zip(answers, bounds, strict=True):
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(
            answer.json()["outputs"]["scores"], digits_bundle.scores[a:b], **TOLERANCE
        )
    assert delta(stats, before, "model_calls", "samples") == (1, 8)


def test_a_request_over_max_batch_size_is_split_into_capped_calls(
    batching_server: Any, digits_bundle: Any
) -> None:
    """20 samples in one request at --max-batch-size 8: calls of 8, 8 and 4, answers in order."""
    before = batching_server.stats()
    answer = httpx.post(
        f"{batching_server.url}/v1/models/digits:predict",
        json={"inputs": digits_bundle.images[:20].tolist()},
        timeout=120,
    )
    stats = batching_server.stats()
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(
        answer.json()["outputs"]["scores"], digits_bundle.scores[:20], **TOLERANCE
    )
    assert delta(stats, before, "model_calls", "requests", "samples") == (3, 1, 20)
    assert stats["largest_batch"] == 8


def test_sigterm_lets_the_request_in_flight_complete(start_server: Any, digits_bundle: Any) -> None:
    """SIGTERM while a request waits in a batch: it is answered at once and the server exits 0."""
    with start_server("--max-batch-size", "64", "--max-wait-ms", "600000") as server:
        answers: list[httpx.Response] = []
        body = {"instances": [digits_bundle.images[3].tolist()]}

        def call() -> None:
            answers.append(
                httpx.post(f"{server.url}/v1/models/digits:predict", json=body, timeout=120)
            )

        caller = threading.Thread(target=call)
        caller.start()
        assert wait_for(lambda: server.stats()["pending"] == 1, timeout=60)
        exit_code = server.stop()
        caller.join(60)
    assert exit_code == 0
    [answer] = answers
    assert answer.status_code == 200
    np.testing.assert_allclose(
        answer.json()["predictions"][0]["scores"], digits_bundle.scores[3], **TOLERANCE
    )


def test_uploaded_images_are_batched_by_their_pixels(
    start_server: Any, digits_bundle: Any, encode_png: Any
) -> None:
    """At --max-batch-size 8 and --max-batch-pixels 128, an 8×8 digit (64 pixels) takes 4
    of a call's 8 places: six digits in one upload run as three calls of two, whether
    uploaded as files or sent base64 to serving_images; the answers are the model's."""
    images = digits_bundle.images[:6]
    pngs = [encode_png(image) for image in images]
    args = ("--max-batch-size", "8", "--max-wait-ms", "600000", "--max-batch-pixels", "128")
    with start_server(*args) as server:
        before = server.stats()
        files = [("image", (f"digit{i}.png", png, "image/png")) for i, png in enumerate(pngs)]
        uploaded = httpx.post(f"{server.url}/predict?top_k=1", files=files, timeout=120)
        middle = server.stats()
        body = {
            "signature_name": "serving_images",
            "instances": [{"b64": base64.b64encode(png).decode()} for png in pngs],
        }
        encoded = httpx.post(f"{server.url}/v1/models/digits:predict", json=body, timeout=120)
        after = server.stats()
    assert uploaded.status_code == 200, uploaded.text
    assert encoded.status_code == 200, encoded.text
    assert delta(middle, before, "model_calls", "samples") == (3, 6)
    assert delta(after, middle, "model_calls", "samples") == (3, 6)
    assert (after["largest_batch"], after["max_batch_pixels"]) == (2, 128)
    best = [str(i) for i in digits_bundle.scores[:6].argmax(axis=1)]
    assert [answer[0]["label"] for answer in uploaded.json()] == best
    scores = np.array([p["scores"] for p in encoded.json()["predictions"]])
    np.testing.assert_allclose(scores, digits_bundle.scores[:6], **TOLERANCE)
