"""The server's listening socket."""

from __future__ import annotations

import socket

from rxpipe.serving.server import bind


def test_bound_sockets_are_tcp_without_nagle() -> None:
    """proto is TCP and TCP_NODELAY is on, or every response waits ~40 ms for a delayed ACK."""
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()
