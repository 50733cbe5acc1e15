"""Request bodies that never finish arriving: 408 after --body-timeout-s, 503 on SIGTERM."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def half_upload(url: str) -> socket.socket:
    """Open a connection and send a :predict request's headers and half its 1000-byte body."""
    address = urlsplit(url)
    conn = socket.create_connection((address.hostname, address.port), timeout=60)
    conn.sendall(
        b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b"[" * 500
    )
    return conn


def answer_of(conn: socket.socket) -> bytes:
    """All the server sends until it closes the connection."""
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received


def test_a_stalled_body_is_answered_408_and_closed(start_server: Any, encode_png: Any) -> None:
    """--body-timeout-s 1: half a body, then nothing, is a 408 naming what arrived, and the
    connection closes; --max-image-pixels reaches the server (8×8 > 50 pixels)."""
    with start_server("--body-timeout-s", "1", "--max-image-pixels", "50") as server:
        started = time.monotonic()
        with half_upload(server.url) as conn:
            received = answer_of(conn)
        waited = time.monotonic() - started
        files = {"image": ("digit.png", encode_png(np.zeros((8, 8, 1))))}
        image = httpx.post(f"{server.url}/predict", files=files, timeout=60)
    assert received.startswith(b"HTTP/1.1 408"), received
    assert received.endswith(
        b'{"error":"request body: expected all of it within 1 s. Received: 500 of 1000 bytes"}'
    )
    assert 0.9 < waited < 10
    assert image.status_code == 400
    assert image.json()["error"] == (
        "digit.png: expected an image of at most 50 pixels (width × height). "
        "Received: 8×8 = 64 pixels"
    )


def test_sigterm_answers_a_stalled_upload_503_and_exits_at_once(start_server: Any) -> None:
    """SIGTERM while a body is half sent: 503 to it, exit 0 in seconds (not uvicorn's 30 s
    graceful timeout), and no CancelledError traceback in the log."""
    with start_server() as server, half_upload(server.url) as conn:
        assert server.stats()["requests"] == 0  # the server took the connection
        started = time.monotonic()
        exit_code = server.stop()
        stopped = time.monotonic() - started
        received = answer_of(conn)
    assert exit_code == 0
    assert stopped < 10
    assert received.startswith(b"HTTP/1.1 503"), received
    assert b"shutting down" in received
    assert "CancelledError" not in server.log.read_text()
