"""BodyLimit: an ASGI middleware that reads request bodies within a size and a time limit.

Past the size limit it answers 413, past the time limit 408, and once the server shuts
down 503 (to a body still arriving, and to any request after).
"""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_BODY_TIMEOUT_S", "BodyLimit"]

DEFAULT_BODY_TIMEOUT_S = 30.0
"""The longest a request's body may take to arrive, from the request's headers on.

A whole-body limit, as Go's ``http.Server.ReadTimeout``, rather than a limit between
two reads (nginx's ``client_body_timeout``): a client sending a byte now and then
would pass the latter for ever. 30 s lets the 16 MiB default body arrive at 4.5 Mbit/s.
"""


class BodyLimit:
    """ASGI middleware: read the whole request body, within ``max_bytes`` and ``timeout_s``.

    A ``Content-Length`` over the limit is refused (413) before anything is read; a
    chunked body is refused as soon as it passes the limit. A body that has not all
    arrived ``timeout_s`` seconds after the request started is answered 408, and the
    connection closed: a client that sends half a body and stops holds no request open.
    After :meth:`close` (the server shuts down) a body still arriving, and every new
    request, is answered 503 at once, so a stalled upload does not hold the shutdown.
    The application then reads the body from memory, in one piece.

    Args:
        app: the application behind the limit.
        max_bytes: the largest body accepted.
        timeout_s: the longest a body may take to arrive.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = BodyLimit(Starlette(), max_bytes=1024, timeout_s=10.0)
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._closed = False
        self._reading: set[asyncio.Task[object]] = set()
        self._stopped: set[asyncio.Task[object]] = set()

    def close(self) -> None:
        """Answer 503 to the bodies still arriving and to every later request.

        Call it on the server's event loop (e.g. with ``loop.call_soon_threadsafe``).
        """
        self._closed = True
        for task in self._reading:
            self._stopped.add(task)
            task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._closed:
            await self._shutting_down()(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                bad = f"Content-Length: expected a number. Received: {declared!r}"
                await JSONResponse({"error": bad}, status_code=400)(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large(f"{int(declared)} bytes (Content-Length)")(
                    scope, receive, send
                )
                return
        chunks: list[bytes] = []
        task = asyncio.current_task()
        assert task is not None
        self._reading.add(task)
        try:
            async with asyncio.timeout(self.timeout_s):
                complete = await self._read(receive, chunks)
        except TimeoutError:
            received = sum(map(len, chunks))
            of = "" if declared is None else f" of {int(declared)}"
            await self._refuse(
                408,
                f"request body: expected all of it within {self.timeout_s:g} s. "
                f"Received: {received}{of} bytes",
            )(scope, receive, send)
            return
        except asyncio.CancelledError:
            if task not in self._stopped or task.uncancel() > 0:
                raise  # not (only) our shutdown: the server's own cancellation
            await self._shutting_down()(scope, receive, send)
            return
        finally:
            self._reading.discard(task)
            self._stopped.discard(task)
        if complete is None:  # the client went away
            return
        if not complete:
            await self._too_large(f"more than {self.max_bytes} bytes")(scope, receive, send)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, chunks: list[bytes]) -> bool | None:
        """Append the body's chunks: True once whole, False past the limit, None on disconnect."""
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return True

    def _too_large(self, received: str) -> Response:
        message = f"request body: expected at most {self.max_bytes} bytes. Received: {received}"
        return JSONResponse({"error": message}, status_code=413)

    def _shutting_down(self) -> Response:
        return self._refuse(503, "the server is shutting down: it takes no more requests")

    @staticmethod
    def _refuse(status: int, message: str) -> Response:
        """An error answer after which the connection closes (its body may be half read)."""
        return JSONResponse({"error": message}, status_code=status, headers={"connection": "close"})
