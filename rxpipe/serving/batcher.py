"""ModelBatcher: concurrent requests in, one model call per micro-batch, each answer to its request.

Requests enter a Subject on the event loop's thread. ``group_by`` keeps each signature's
requests apart, :func:`~rxpipe.serving.batching.micro_batch` gathers them by size and
wait on the model's own thread (an ``EventLoopScheduler``), the batch runs as one model
call there, and each request's slice of the outputs goes back to its asyncio future
with ``call_soon_threadsafe``. While a model call runs, new requests join the next
batch, so under load batches fill up by themselves.

``max_batch_size`` is a hard cap on the samples of one model call: a request larger
than it runs as several calls of at most ``max_batch_size`` samples, one after the other
(each part joins the queue when the last one is answered, so other requests' batches run
between them instead of waiting for the whole of it), whose outputs are joined in order.

Encoded images are decoded inside the model call, whole, so a call's memory grows with
their pixels, not their count. With ``max_batch_pixels``, a request's images are
weighed by their pixels (given with the request): each takes
``ceil(pixels / (max_batch_pixels / max_batch_size))`` of the call's ``max_batch_size``
places, at least one. A call then holds at most ``max_batch_size`` samples and at most
``max_batch_pixels`` pixels of images; an image over that runs alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
from reactivex import Observable
from reactivex import operators as ops
from reactivex.observable import GroupedObservable
from reactivex.scheduler import EventLoopScheduler
from reactivex.subject import Subject

from rxpipe.serving.batching import micro_batch

__all__ = ["BatchStats", "BatcherClosedError", "ModelBatcher", "Predict"]

Arrays = dict[str, np.ndarray[Any, Any]]
Predict = Callable[[str, Mapping[str, np.ndarray[Any, Any]]], Arrays]
"""Runs a model signature on a batch: ``(signature, inputs) -> outputs``."""


class BatcherClosedError(RuntimeError):
    """The batcher takes no more requests: the server is shutting down (HTTP 503)."""


@attrs.define
class BatchStats:
    """Counters of a :class:`ModelBatcher` (read them from any thread).

    Attributes:
        requests: requests answered (successfully or not).
        samples: samples predicted.
        model_calls: calls of the model (a batch that fails and is retried one request
            at a time counts each call).
        largest_batch: the most samples in one call.
        pending: requests submitted and not yet answered.
        failed: requests answered with an error.
    """

    requests: int = 0
    samples: int = 0
    model_calls: int = 0
    largest_batch: int = 0
    pending: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counters, with the mean batch size."""
        out = attrs.asdict(self)
        out["mean_batch"] = self.samples / self.model_calls if self.model_calls else 0.0
        return out


@attrs.define(eq=False)
class _Request:
    signature: str
    inputs: Mapping[str, np.ndarray[Any, Any]]
    weights: list[int]  # each sample's places in a call (1, or more for a large image)
    future: asyncio.Future[Arrays]
    loop: asyncio.AbstractEventLoop

    @property
    def size(self) -> int:
        return sum(self.weights)


def _settle(
    future: asyncio.Future[Arrays], result: Arrays | None, error: BaseException | None
) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result or {})


def _request_size(request: _Request) -> int:
    return request.size


def _signature(request: _Request) -> str:
    return request.signature


def _parts(weights: Sequence[int], cap: int) -> list[tuple[int, int]]:
    """``(start, end)`` of consecutive samples whose weights add up to at most ``cap``
    (a sample heavier than ``cap`` alone).

    Example:
        >>> _parts([1] * 5, 2), _parts([3, 1, 1, 2, 5, 1], 4)
        ([(0, 2), (2, 4), (4, 5)], [(0, 2), (2, 4), (4, 5), (5, 6)])
    """
    parts: list[tuple[int, int]] = []
    start, total = 0, 0
    for index, weight in enumerate(weights):
        if index > start and total + weight > cap:
            parts.append((start, index))
            start, total = index, 0
        total += weight
    if weights:
        parts.append((start, len(weights)))
    return parts


class ModelBatcher:
    """Micro-batches concurrent predictions into model calls on one model thread.

    Args:
        predict: runs a signature on a batch of inputs.
        max_batch_size: the most samples in one model call (1 turns batching off: one
            call per request).
        max_wait_ms: the longest a request waits for others to join its batch.
        max_batch_pixels: the most pixels of encoded images in one model call (for
            requests that give their images' pixels; ``None``: no pixel budget).

    Example:
        >>> batcher = ModelBatcher(lambda sig, x: {"y": x["x"] * 2}, 8, 1.0)
        >>> out = asyncio.run(batcher.predict("serving_default", {"x": np.ones((2, 1))}))
        >>> out["y"].ravel().tolist(), batcher.stats.model_calls
        ([2.0, 2.0], 1)
        >>> batcher.close()
    """

    def __init__(
        self,
        predict: Predict,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_batch_pixels: int | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size: expected an int >= 1. Received: {max_batch_size!r}")
        if max_batch_pixels is not None and max_batch_pixels < 1:
            raise ValueError(
                f"max_batch_pixels: expected an int >= 1. Received: {max_batch_pixels!r}"
            )
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms
        self.max_batch_pixels = max_batch_pixels
        self.stats = BatchStats()
        self.error: Exception | None = None
        self._predict = predict
        self._stats_lock = threading.Lock()
        self._closed = False
        self._scheduler = EventLoopScheduler(
            lambda target: threading.Thread(target=target, name="rxpipe-model", daemon=True)
        )
        self._requests: Subject[_Request] = Subject()
        self._flush: Subject[None] = Subject()
        batches = micro_batch(
            max_batch_size,
            max_wait_ms / 1000.0,
            size_of=_request_size,
            flush=self._flush,
            scheduler=self._scheduler,
        )
        self._done = threading.Event()

        def batch_group(group: GroupedObservable[str, _Request]) -> Observable[list[_Request]]:
            return group.pipe(batches)

        self._subscription = self._requests.pipe(
            ops.group_by(_signature),
            ops.flat_map(batch_group),
        ).subscribe(self._run, self._on_error, self._done.set)

    async def predict(
        self,
        signature: str,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        pixels: Sequence[int] | None = None,
    ) -> Arrays:
        """Predict a batch of checked inputs; resolves when its micro-batch has run.

        Args:
            signature: the model signature to run.
            inputs: the batch, one array per input.
            pixels: for encoded images, each sample's width × height (weighed against
                ``max_batch_pixels``).

        Raises:
            BatcherClosedError: if the batcher is closed.
            Exception: what the model call raised for this request.
        """
        if self._closed:
            raise BatcherClosedError("the model batcher is closed: the server is shutting down")
        weights = self._weights(int(next(iter(inputs.values())).shape[0]), pixels)
        with self._stats_lock:
            self.stats.pending += 1
        failed = True
        try:
            if sum(weights) <= self.max_batch_size:
                outputs = await self._submit(signature, inputs, weights)
            else:  # part after part: other requests' batches run in between
                parts = [
                    await self._submit(
                        signature,
                        {k: v[start:end] for k, v in inputs.items()},
                        weights[start:end],
                        flush=True,  # a last, smaller part waits for no company
                    )
                    for start, end in _parts(weights, self.max_batch_size)
                ]
                outputs = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
            failed = False
            return outputs
        finally:
            with self._stats_lock:
                self.stats.pending -= 1
                self.stats.requests += 1
                self.stats.failed += failed

    def _weights(self, size: int, pixels: Sequence[int] | None) -> list[int]:
        """Each sample's places in a model call: 1, or its share of ``max_batch_pixels``."""
        if pixels is None or self.max_batch_pixels is None:
            return [1] * size
        per_place = self.max_batch_pixels / self.max_batch_size
        return [max(1, math.ceil(p / per_place)) for p in pixels]

    async def _submit(
        self,
        signature: str,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        weights: list[int],
        *,
        flush: bool = False,
    ) -> Arrays:
        """Queue one request (or part of one) for a micro-batch; its outputs. With
        ``flush``, its batch runs without waiting ``max_wait_ms`` for others."""
        if self._closed:
            raise BatcherClosedError("the model batcher is closed: the server is shutting down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Arrays] = loop.create_future()
        self._requests.on_next(_Request(signature, inputs, weights, future, loop))
        if flush:
            self.flush()
        return await future

    def flush(self) -> None:
        """Run what is waiting now, without waiting for ``max_wait_ms`` (e.g. on shutdown)."""
        self._flush.on_next(None)

    def close(self, timeout: float = 10.0) -> None:
        """Answer what is waiting, stop the model thread."""
        if self._closed:
            return
        self._closed = True
        self._requests.on_completed()
        self._done.wait(timeout)
        self._subscription.dispose()
        self._scheduler.dispose()

    def _call(
        self, signature: str, inputs: Mapping[str, np.ndarray[Any, Any]], weights: list[int]
    ) -> Arrays:
        """Run the model on ``inputs`` in calls of at most ``max_batch_size`` places."""
        size = len(weights)
        parts: list[Arrays] = []
        for start, end in _parts(weights, self.max_batch_size) or [(0, 0)]:
            chunk = inputs if end - start == size else {k: v[start:end] for k, v in inputs.items()}
            parts.append(self._predict(signature, chunk))
            with self._stats_lock:
                self.stats.model_calls += 1
                self.stats.samples += end - start
                self.stats.largest_batch = max(self.stats.largest_batch, end - start)
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _run(self, batch: list[_Request]) -> None:
        signature = batch[0].signature
        try:
            if len(batch) == 1:
                inputs = batch[0].inputs
            else:
                inputs = {
                    name: np.concatenate([r.inputs[name] for r in batch])
                    for name in batch[0].inputs
                }
            outputs = self._call(signature, inputs, [w for r in batch for w in r.weights])
        except Exception as error:
            if len(batch) == 1:
                self._answer(batch[0], None, error)
            else:  # one bad request must not fail the others: retry one by one
                for request in batch:
                    self._run([request])
            return
        start = 0
        for request in batch:
            end = start + len(request.weights)
            self._answer(request, {k: v[start:end] for k, v in outputs.items()}, None)
            start = end

    def _answer(
        self, request: _Request, result: Arrays | None, error: BaseException | None
    ) -> None:
        # A closed event loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            request.loop.call_soon_threadsafe(_settle, request.future, result, error)

    def _on_error(self, error: Exception) -> None:
        # Only a bug in the chain gets here (model errors go to their requests); stop
        # taking requests rather than leave them waiting for ever.
        self._closed = True
        self.error = error
        self._done.set()
