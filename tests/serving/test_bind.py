"""The server's listening socket, and the port it is given."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rxpipe.cli import main
from rxpipe.errors import ConfigError
from rxpipe.serving.server import bind, check_port


def test_bound_sockets_are_tcp_without_nagle() -> None:
    """proto is TCP and TCP_NODELAY is on, or every response waits ~40 ms for a delayed ACK."""
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


@pytest.mark.parametrize("port", [99999, 65536, -1, True, "8501"])
def test_a_port_out_of_range_is_a_config_error(port: object) -> None:
    """bind() refuses what is no port number with a ConfigError naming port (not OverflowError)."""
    with pytest.raises(ConfigError) as info:
        bind("127.0.0.1", port)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"port: expected an int in [0, 65535] (0: any free port). Received: {port!r}"
    )
    assert check_port(65535) == 65535


def test_serve_with_a_bad_port_exits_2_before_loading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rxpipe serve RUN --port 99999` prints one line naming port and exits 2, no traceback."""
    assert main(["serve", str(tmp_path), "--port", "99999"]) == 2
    assert capsys.readouterr().err == (
        "rxpipe: configuration error: port: expected an int in [0, 65535] (0: any free port). "
        "Received: 99999\n"
    )
