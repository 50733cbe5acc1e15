"""BodyLimit: an ASGI middleware that refuses request bodies over a size limit (HTTP 413)."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit"]


class BodyLimit:
    """ASGI middleware: read the whole request body, answering 413 past ``max_bytes``.

    A ``Content-Length`` over the limit is refused before anything is read; a chunked
    body is refused as soon as it passes the limit. The application then reads the
    body from memory, in one piece.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = BodyLimit(Starlette(), max_bytes=1024)
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(f"more than {self.max_bytes} bytes")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, received: str) -> Response:
        message = f"request body: expected at most {self.max_bytes} bytes. Received: {received}"
        return JSONResponse({"error": message}, status_code=413)
