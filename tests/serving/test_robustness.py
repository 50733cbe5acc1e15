"""The prediction server under what real clients send: odd bodies, odd values, odd bundles."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from rxpipe.cli import main
from rxpipe.errors import BundleError, PredictionInputError
from rxpipe.serving import Bundle
from rxpipe.serving.app import create_app
from rxpipe.serving.bundle import TensorInfo
from rxpipe.serving.inputs import to_array
from rxpipe.serving.server import bind

from .test_raw_kinds import DecodeTiny, TextLength, call, export

pytestmark = pytest.mark.slow


def answers(bundle_dir: Path, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    """Send requests in process to a server on the bundle at ``bundle_dir``.

    The ASGI transport re-raises what the application lets escape, so an error the
    server does not turn into an answer fails the test.
    """
    app, handlers = create_app(Bundle.load(bundle_dir))
    try:
        return asyncio.run(call(app, *requests))
    finally:
        handlers.batcher.close()


def test_top_k_takes_ascii_digits_only(regression_bundle: Path) -> None:
    """?top_k=² (a digit to str.isdigit, not to int) is a 400 naming top_k, not a 500."""
    [answer] = answers(regression_bundle, ("POST", "/predict?top_k=²", {"json": {"input": [0]}}))
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": "top_k: expected an int >= 1. Received: '²'"}


def test_errors_about_one_input_name_the_input_field(regression_bundle: Path) -> None:
    """/predict {"input": ...} errors start with input, the field the client sent."""
    [answer] = answers(regression_bundle, ("POST", "/predict", {"json": {"input": [1, 2]}}))
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("input: expected float32 values of shape (3,)")


def test_a_lone_surrogate_in_text_is_a_400_naming_the_sample(tmp_path: Path) -> None:
    """JSON's "\\ud800" (valid JSON, not UTF-8) in a text input: 400 naming the sample, not 500."""
    export(tmp_path, TextLength(), 1, ("short", "long"))
    body = b'{"instances": ["fine", "bad \\ud800 text"]}'
    [answer] = answers(
        tmp_path,
        (
            "POST",
            "/v1/models/raw:predict",
            {"content": body, "headers": {"content-type": "application/json"}},
        ),
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == (
        "instances: expected strings of Unicode characters (JSON escapes such as "
        "\\ud83d\\ude00 in pairs). Received: a string with the lone surrogate '\\ud800' at "
        "character 4 in sample 1"
    )


@pytest.mark.parametrize(
    ("content_type", "body", "received"),
    [
        ("multipart/form-data", b"--x\r\n", "Missing boundary in multipart."),
        ("multipart/form-data; boundary=xyz", b"garbage", "Invalid multipart data."),
    ],
)
def test_multipart_the_parser_refuses_names_what_was_expected(
    tmp_path: Path, content_type: str, body: bytes, received: str
) -> None:
    """A multipart body without boundary, or not multipart, says expected and received."""
    export(tmp_path, DecodeTiny(), 16, ("dark", "light"))
    request = {"content": body, "headers": {"content-type": content_type}}
    [answer] = answers(tmp_path, ("POST", "/predict", request))
    assert answer.status_code == 400
    assert answer.json()["error"] == (
        "POST /predict: expected a multipart/form-data body (with its boundary) holding image "
        f"files (field 'image', at most 256). Received: a body the multipart parser refused "
        f"({received})"
    )


@pytest.mark.parametrize(
    ("spec", "value", "received"),
    [
        (
            TensorInfo("x", "uint8", (None, 2)),
            [[1, 2], [3, 10**30]],
            "the integer 1000000000000000000000000000000, beyond 64 bits in sample 1 at (1,)",
        ),
        (
            TensorInfo("x", "float32", (None, 2)),
            [[1, {"a": 2}]],
            "an object with keys ['a'] in sample 0 at (1,)",
        ),
        (
            TensorInfo("x", "uint8", (None, 2)),
            [{"feat": [1, 2]}],
            "an object with keys ['feat'] in sample 0",
        ),
        (
            TensorInfo("x", "string", (None,)),
            ["a", {"text": "b"}],
            "an object with keys ['text'] in sample 1",
        ),
        (TensorInfo("x", "string", (None,)), ["a", 5], "the integer 5 in sample 1"),
    ],
)
def test_values_no_array_holds_are_named_with_their_sample(
    spec: TensorInfo, value: Any, received: str
) -> None:
    """Objects and integers beyond 64 bits are named with where they are, not 'mixed values'."""
    with pytest.raises(PredictionInputError) as info:
        to_array(value, spec, "instances")
    assert str(info.value).startswith("instances: expected")
    assert str(info.value).endswith(f"Received: {received}")


def copy_bundle(bundle: Path, target: Path, **card: Any) -> Path:
    """A copy of ``bundle`` whose model card has the fields ``card`` (``whole=``: is that)."""
    shutil.copytree(bundle, target)
    path = target / "model_card.json"
    data = json.loads(path.read_text())
    data = card.get("whole", {**data, **card})
    path.write_text(json.dumps(data))
    return target


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ({"whole": [1, 2]}, "expected a JSON object (a model card). Received: list"),
        ({"labels": 5}, "expected labels as a list of strings. Received: 5"),
        ({"labels": ["a", "b", "c"]}, "expected 10 labels, one per class the model scores. "),
        ({"inputs": ["features"]}, "expected inputs as a JSON object. Received: list"),
    ],
)
def test_a_bundle_with_a_broken_card_is_refused_at_load(
    digits_bundle: Any, tmp_path: Path, card: dict[str, Any], message: str
) -> None:
    """A card that is no object, or whose labels do not fit the model, fails naming the card."""
    bundle = copy_bundle(digits_bundle.run_dir / "model", tmp_path / "model", **card)
    with pytest.raises(BundleError) as info:
        Bundle.load(bundle)
    assert str(info.value).startswith(f"{bundle / 'model_card.json'}: {message}")


def test_serve_on_a_card_that_is_no_object_exits_2_in_one_line(
    regression_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rxpipe serve` on a card holding a JSON list: one line naming the file, exit 2."""
    bundle = copy_bundle(regression_bundle, tmp_path / "model", whole=[])
    assert main(["serve", str(bundle), "--port", "0"]) == 2
    assert capsys.readouterr().err == (
        f"rxpipe serve: {bundle / 'model_card.json'}: expected a JSON object (a model card). "
        "Received: list\n"
    )


@contextmanager
def running(app: Any) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a thread; yield its port."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        while not server.started:
            thread.join(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def exchange(port: int, requests: list[bytes]) -> bytes:
    """Send HTTP/1.1 requests on one connection; all it answers until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"".join(requests))
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def test_an_internal_error_answers_500_json_and_keeps_the_connection(
    regression_bundle: Path,
) -> None:
    """A bug in a model call answers 500 naming route and error; the keep-alive connection
    then answers the client's next request (uvicorn used to close it after a 500)."""

    def broken(signature: str, inputs: Any) -> Any:
        raise RuntimeError("the model is broken")

    app, handlers = create_app(Bundle.load(regression_bundle))
    handlers.batcher._predict = broken
    body = json.dumps({"instances": [[0, 0, 1]]}).encode()
    predict = (
        b"POST /v1/models/overflow:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with running(app) as port:
        received = exchange(port, [predict, health])
    first, _, second = received.partition(b"HTTP/1.1 200")
    assert first.startswith(b"HTTP/1.1 500")
    assert first.split(b"\r\n\r\n", 1)[1] == (
        b'{"error":"/v1/models/overflow:predict: internal error: RuntimeError: the model is '
        b'broken"}'
    )
    assert b'"status":"ok"' in second
    assert handlers.batcher.stats.failed == 1
