"""``rxpipe serve``: the prediction server on uvicorn, with a graceful SIGTERM.

On SIGTERM (or Ctrl-C) the server stops accepting connections, answers what is waiting
in the batcher at once (without waiting for ``max_wait_ms``), answers 503 to requests
whose body is still arriving (a stalled upload does not hold the shutdown), lets every
other request in flight complete, then stops the model thread. After a SIGTERM the
process exits with 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from rxpipe.errors import ConfigError, PredictionInputError
from rxpipe.serving.app import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_BATCH_PIXELS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    create_app,
)
from rxpipe.serving.bundle import DEFAULT_SIGNATURE, Bundle
from rxpipe.serving.inputs import unused_batch

__all__ = ["bind", "check_port", "serve"]


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app (``on_exit``) as soon as an exit signal arrives."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None and not self._loop.is_closed():
            # A signal handler must not take locks the interrupted code may hold:
            # flush from the event loop instead.
            self._loop.call_soon_threadsafe(self._on_exit)
        super().handle_exit(sig, frame)


def check_port(port: Any) -> int:
    """``port`` if it is a TCP port number (0 to 65535; 0: any free port).

    Raises:
        ConfigError: naming ``port``, for anything else.

    Example:
        >>> check_port(99999)
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: port: expected an int in [0, 65535] (0: any free port). \
Received: 99999
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(
            f"expected an int in [0, 65535] (0: any free port). Received: {port!r}", "port"
        )
    return port


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: an ephemeral port).

    Raises:
        ConfigError: if ``port`` is not a port number.
        OSError: if the address cannot be bound.
    """
    check_port(port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they
    # are TCP, and without it a response's headers and body (two writes) wait for the
    # client's delayed ACK, about 40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _ignore(sig: int, frame: FrameType | None) -> None:
    """After a graceful shutdown uvicorn re-raises the signal: let the process exit with 0."""


def serve(
    path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    name: str | None = None,
    max_batch_size: int = 32,
    max_wait_ms: float = 2.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    default_top_k: int = 5,
    log_level: str = "warning",
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    max_batch_pixels: int = DEFAULT_MAX_BATCH_PIXELS,
) -> None:
    """Load the bundle at ``path`` and serve it until SIGTERM or Ctrl-C.

    Args:
        path: a run directory or a bundle directory.
        host: the address to listen on.
        port: the port (0: any free port; the URL announced says which).
        name: the model's name in URLs (default: the bundle's).
        max_batch_size: the most samples per model call (1: batching off).
        max_wait_ms: the longest a request waits for its batch to fill.
        max_body_bytes: the largest request body (413 past it).
        default_top_k: labels answered by ``/predict`` by default.
        log_level: uvicorn's log level.
        max_image_pixels: the most pixels (width × height) of an uploaded image (400
            past it).
        body_timeout_s: the longest a request's body may take to arrive (408 past it).
        max_batch_pixels: the most pixels of uploaded images decoded in one model call
            (an image over it runs alone; this bounds the memory decoding takes).

    Once it listens, the server prints ``serving model 'NAME' (version 1) at URL``.

    Raises:
        ConfigError: if ``port`` is not a port number, ``max_image_pixels`` or
            ``max_batch_pixels`` not an int >= 1 or ``body_timeout_s`` not a number > 0
            (checked before the model loads).
        BundleError: if ``path`` holds no readable bundle.
        OSError: if the address cannot be bound.
    """
    check_port(port)
    for field, pixels in (
        ("max_image_pixels", max_image_pixels),
        ("max_batch_pixels", max_batch_pixels),
    ):
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
            raise ConfigError(f"expected an int >= 1. Received: {pixels!r}", field)
    if not 0 < body_timeout_s < float("inf"):
        raise ConfigError(
            f"expected a number of seconds > 0. Received: {body_timeout_s!r}", "body_timeout_s"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bundle = Bundle.load(path)
    app, handlers = create_app(
        bundle,
        name=name,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_body_bytes=max_body_bytes,
        default_top_k=default_top_k,
        max_image_pixels=max_image_pixels,
        body_timeout_s=body_timeout_s,
        max_batch_pixels=max_batch_pixels,
    )
    warm_up(bundle)
    # TensorFlow leaves millions of long-lived objects; a full garbage collection scans
    # them all (100-300 ms, every few seconds under load). Park them out of its reach.
    gc.collect()
    gc.freeze()
    sock = bind(host, port)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
        server_header=False,
    )
    server = _Server(config, handlers.shutdown)
    bound_host, bound_port = sock.getsockname()[:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{url_host}:{bound_port}"
    print(f"serving model {handlers.name!r} (version {bundle.version}) at {url}", flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _ignore)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def warm_up(bundle: Bundle) -> None:
    """Run each signature once on a dummy sample, so the first request pays no start-up.

    A model that rejects the dummy sample (e.g. text its preprocessing cannot take) is
    simply not warmed up.
    """
    batch = {name: unused_batch(info, 1) for name, info in bundle.inputs.items()}
    if bundle.image_input != (DEFAULT_SIGNATURE, next(iter(bundle.inputs))):
        with contextlib.suppress(PredictionInputError):
            bundle.predict(batch, DEFAULT_SIGNATURE)
    if bundle.accepts_images:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, "PNG")
        with contextlib.suppress(PredictionInputError):
            bundle.predict_images([buffer.getvalue()])
