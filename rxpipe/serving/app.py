"""The prediction server's ASGI application (Starlette).

Routes:

- ``GET /v1/models/NAME[/versions/V]``: TensorFlow Serving's model status.
- ``GET /v1/models/NAME[/versions/V]/metadata``: its signature definitions.
- ``POST /v1/models/NAME[/versions/V]:predict``: ``{"instances": [...]}`` (rows) answers
  ``{"predictions": [...]}``, ``{"inputs": ...}`` (columns) answers ``{"outputs": ...}``;
  an optional ``"signature_name"`` picks ``serving_images`` (base64 images).
- ``POST /predict`` (Pipcook style): an uploaded image (multipart, field ``image``),
  ``{"input": sample}``, ``{"instances": [...]}`` or a text body; ``GET /predict?input=``
  for text models. A classifier answers the top ``k`` (``?top_k=``)
  ``[{"label", "score"}]`` of one sample, or a list of those for several; a regression
  model (model card ``task = "regression"``) answers ``{"value": v}`` per sample (``v`` a
  list for several targets).
- ``GET /healthz``; ``GET /stats`` (requests, samples, model calls, batch sizes).

Every error is ``{"error": "..."}`` with a 4xx code saying whose fault it is: 400 for
malformed or too deeply nested JSON, a wrong shape or dtype (naming expected and
received), a number that is not finite in the input's dtype (NaN, ``Infinity``, or
``1e39`` for float32), both ``instances`` and ``inputs``, a file that is not an image,
an image TensorFlow cannot decode (e.g. a 1-bit BMP), or an image of more pixels than
``max_image_pixels`` (400, not 413: the body is within the size limit, the image it
holds is an invalid input, as TensorFlow Serving answers invalid arguments); 404 for
an unknown model, version or route; 405 for a wrong method; 408 for a body that takes
longer than ``body_timeout_s`` to arrive; 413 for a body over the size limit; 503 for
a request that arrives, or a body still arriving, while the server shuts down. An
unexpected error (a bug) answers 500 naming the route and the exception, is logged once
with its traceback, and leaves the connection open for the client's next request.

Non-finite outputs: a model may answer NaN or infinity for valid input (it overflowed,
or was trained badly). Strict JSON has no such numbers; like TensorFlow Serving's REST
API (``WriteDecimal`` in ``tensorflow_serving/util/json_tensor.cc``), the server writes
them as the bare tokens ``NaN``, ``Infinity`` and ``-Infinity``, which JavaScript's
``JSON.parse`` refuses but Python's ``json``, and most JSON libraries in lenient mode,
read. It never answers 500 for them.

Large JSON bodies: ``json.loads`` builds a Python object per list and number, about 35
times the body's size for nested lists of small numbers (500 MB for a 14.5 MB body). A
body over ``large_body_bytes`` is therefore parsed and turned into arrays in a worker
thread, at most ``large_body_parses`` at a time (the others wait their turn), so that
concurrent large bodies cannot add up; smaller bodies are parsed at once on the event
loop and never wait behind them. ``json.loads`` holds the GIL from start to end (1.6 s
for that body), which would stall the event loop all the same; so a large body's outer
arrays are read item by item (:func:`_loads_in_steps`), giving the event loop its turn
between items.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rxpipe.errors import PredictionInputError, format_names
from rxpipe.serving.batcher import BatcherClosedError, ModelBatcher
from rxpipe.serving.bundle import (
    DEFAULT_SIGNATURE,
    Bundle,
    TensorInfo,
    regression_values,
    top_k,
)
from rxpipe.serving.images import DEFAULT_MAX_BATCH_PIXELS, DEFAULT_MAX_IMAGE_PIXELS, check_image
from rxpipe.serving.inputs import parse_request, rows_to_batch, to_array
from rxpipe.serving.limits import DEFAULT_BODY_TIMEOUT_S, BodyLimit

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_MAX_BATCH_PIXELS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "ROUTES",
    "ServingApp",
    "create_app",
]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
LARGE_BODY_BYTES = 1024 * 1024
"""A JSON body over this size is parsed in a worker thread, a few at a time."""
LARGE_BODY_PARSES = 1
"""Large bodies parsed at once. One: ``json.loads`` holds the GIL throughout, so two
parses at once take as long as one after the other, with twice the memory."""
_T = TypeVar("_T")
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace
_LOG = logging.getLogger("uvicorn.error")  # where uvicorn reports the server's own errors
_TF_DTYPES = {
    "string": "DT_STRING",
    "float16": "DT_HALF",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
}  # TensorFlow Serving's names; the others are DT_ + the upper-case numpy name
_MAX_FILES = 256  # image files in one multipart upload
_MODEL_PATH = re.compile(
    r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?:/(?P<tail>[^/:]+)|:(?P<verb>\w+))?"
)


ROUTES = (
    "/v1/models/NAME[/versions/V][/metadata|:predict]",
    "/predict",
    "/healthz",
    "/stats",
)
"""Every route the server has, for the 404 answer (keep in step with :func:`create_app`)."""


class _Answer(JSONResponse):
    """JSON with NaN and infinities written as ``NaN``/``Infinity``, as TensorFlow Serving does."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=False, allow_nan=True, indent=None, separators=(",", ":")
        ).encode("utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _plain(value: np.ndarray[Any, Any]) -> Any:
    if value.dtype.kind in "OSa":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
    return value.tolist()


class ServingApp:
    """The handlers of the prediction server, around one bundle and its batcher.

    Args:
        bundle: the loaded model bundle.
        batcher: runs predictions in micro-batches.
        name: the model's name in TensorFlow Serving's URLs.
        max_body_bytes: the largest request body accepted (413 past it).
        default_top_k: labels answered by ``/predict`` unless ``?top_k=`` says otherwise.
        max_image_pixels: the most pixels (width × height) of an uploaded image (400
            past it, read from the image's header before anything decodes it).
        large_body_bytes: a JSON body over this size is parsed in a worker thread.
        large_body_parses: the most such bodies parsed at once (the others wait).
        body_limit: the middleware reading the bodies, closed by :meth:`shutdown`.
    """

    def __init__(
        self,
        bundle: Bundle,
        batcher: ModelBatcher,
        name: str,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        default_top_k: int = 5,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        large_body_bytes: int = LARGE_BODY_BYTES,
        large_body_parses: int = LARGE_BODY_PARSES,
        body_limit: BodyLimit | None = None,
    ) -> None:
        self.bundle = bundle
        self.batcher = batcher
        self.name = name
        self.max_body_bytes = max_body_bytes
        self.default_top_k = default_top_k
        self.max_image_pixels = max_image_pixels
        self.large_body_bytes = large_body_bytes
        self.body_limit = body_limit
        self._large_bodies = asyncio.Semaphore(large_body_parses)

    def shutdown(self) -> None:
        """The server stops: run what waits in the batcher, answer 503 to bodies arriving.

        Call it on the server's event loop.
        """
        self.batcher.flush()
        if self.body_limit is not None:
            self.body_limit.close()

    # -- TensorFlow Serving's REST API ---------------------------------------------------

    async def models(self, request: Request) -> Response:
        """Dispatch ``/v1/models/...`` to status, metadata or predict."""
        path = request.path_params["path"]
        match = _MODEL_PATH.fullmatch(path)
        if match is None:
            return _error(404, f"/v1/models/{path}: expected /v1/models/NAME[:predict]")
        name, version, tail, verb = match.group("name", "version", "tail", "verb")
        if name != self.name:
            return _error(
                404, f"model {name!r}: not found; expected {self.name!r} (the model served)"
            )
        if version is not None and version != self.bundle.version:
            return _error(
                404,
                f"model {name!r} version {version!r}: not found; expected {self.bundle.version!r}",
            )
        if verb is not None:
            if verb != "predict":
                return _error(404, f":{verb}: expected :predict (the only method served)")
            if request.method != "POST":
                return _error(405, f":predict: expected POST. Received: {request.method}")
            return await self.tf_predict(request)
        if request.method != "GET":
            return _error(405, f"/v1/models/{path}: expected GET. Received: {request.method}")
        if tail is None:
            return JSONResponse(self.status())
        if tail == "metadata":
            return _Answer(self.metadata())  # the card's metrics may be NaN
        return _error(404, f"/v1/models/{path}: expected .../metadata or ...:predict")

    def status(self) -> dict[str, Any]:
        """TensorFlow Serving's model status answer."""
        return {
            "model_version_status": [
                {
                    "version": self.bundle.version,
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }

    def metadata(self) -> dict[str, Any]:
        """TensorFlow Serving's metadata answer (signature definitions), plus the model card."""

        def tensor(info: TensorInfo, prefix: str) -> dict[str, Any]:
            return {
                "dtype": _TF_DTYPES.get(info.dtype, f"DT_{info.dtype.upper()}"),
                "tensor_shape": {
                    "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in info.shape],
                    "unknown_rank": False,
                },
                "name": f"{prefix}_{info.name}:0",
            }

        signature_def = {
            sig: {
                "inputs": {n: tensor(i, sig) for n, i in io["inputs"].items()},
                "outputs": {
                    n: tensor(i, "StatefulPartitionedCall") for n, i in io["outputs"].items()
                },
                "method_name": "tensorflow/serving/predict",
            }
            for sig, io in self.bundle.signatures.items()
        }
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": self.bundle.version},
            "metadata": {"signature_def": {"signature_def": signature_def}},
            "rxpipe": {"model_card": self.bundle.card, "batching": self.batching()},
        }

    async def tf_predict(self, request: Request) -> Response:
        """``:predict`` in row (``instances``) or columnar (``inputs``) format."""
        signature, batch, rows, pixels = await self._decode(await request.body(), self._tf_inputs)
        image_input = self.bundle.image_input
        if pixels is not None and image_input is not None:
            names = [f"{image_input[1]}[{index}]" for index in range(len(pixels))]
            outputs = await self._predict_files(signature, batch, names, pixels)
        else:
            outputs = await self.batcher.predict(signature, batch)
        if rows:
            if len(outputs) == 1:
                return _Answer({"predictions": _plain(next(iter(outputs.values())))})
            names = sorted(outputs)
            columns = [_plain(outputs[n]) for n in names]
            rows_out = [
                dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)
            ]
            return _Answer({"predictions": rows_out})
        if len(outputs) == 1:
            return _Answer({"outputs": _plain(next(iter(outputs.values())))})
        return _Answer({"outputs": {n: _plain(v) for n, v in sorted(outputs.items())}})

    def _tf_inputs(
        self, raw: bytes, in_steps: bool
    ) -> tuple[str, dict[str, Any], bool, list[int] | None]:
        """The signature, checked input arrays and row format of a ``:predict`` body, and
        the pixels of its images (``None`` for a signature of no encoded images)."""
        body = _loads(raw, in_steps)
        signature = DEFAULT_SIGNATURE
        if isinstance(body, Mapping) and "signature_name" in body:
            signature = str(body["signature_name"])
            if signature not in self.bundle.signatures:
                raise PredictionInputError(
                    f"signature_name: expected one of {sorted(self.bundle.signatures)}. "
                    f"Received: {signature!r}"
                )
            body = {k: v for k, v in body.items() if k != "signature_name"}
        batch, rows = parse_request(
            body, self.bundle.signatures[signature]["inputs"], self.bundle.filled_inputs
        )
        image_input = self.bundle.image_input
        if image_input is None or image_input[0] != signature:
            return signature, batch, rows, None
        pixels = [
            check_image(image, f"{image_input[1]}[{index}]", self.max_image_pixels)
            for index, image in enumerate(batch[image_input[1]].ravel())
        ]
        return signature, batch, rows, pixels

    # -- Pipcook-style /predict ----------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        """Top-k labels (or a regression's values) for an image, JSON sample(s) or a text."""
        k = self._top_k(request)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "GET":
            text = request.query_params.get("input")
            if text is None:
                raise PredictionInputError("GET /predict: expected ?input=TEXT. Received: no input")
            return await self._predict_samples(self._text_batch([text]), True, k)
        if content_type == "multipart/form-data":
            return await self._predict_images(request, k)
        if content_type.startswith("text/"):
            text = _text_body(await request.body(), request.headers.get("content-type", ""))
            return await self._predict_samples(self._text_batch([text]), True, k)
        batch, single = await self._decode(await request.body(), self._sample_inputs)
        return await self._predict_samples(batch, single, k)

    def _sample_inputs(self, raw: bytes, in_steps: bool) -> tuple[dict[str, Any], bool]:
        """The checked input arrays of a JSON ``/predict`` body; True for one sample."""
        body = _loads(raw, in_steps)
        if not isinstance(body, Mapping) or len({"input", "instances"} & set(body)) != 1:
            got = f"keys {sorted(body)}" if isinstance(body, Mapping) else "JSON that is no object"
            raise PredictionInputError(
                "POST /predict: expected an image upload (multipart field 'image'), a text "
                "body, or a JSON object with one of 'input' (one sample) or 'instances' "
                f"(a list). Received: {got}"
            )
        single = "input" in body
        if single:
            batch = rows_to_batch(
                [body["input"]], self.bundle.inputs, self.bundle.filled_inputs, where="input"
            )
        else:
            batch = rows_to_batch(body["instances"], self.bundle.inputs, self.bundle.filled_inputs)
        return batch, single

    async def _predict_images(self, request: Request, k: int) -> Response:
        target = self.bundle.image_input
        if target is None:
            raise PredictionInputError(
                f"POST /predict: expected JSON or text for model {self.name!r}, which takes "
                f"{self.bundle.describe_inputs()}. Received: a file upload"
            )
        limit = self.max_body_bytes
        try:
            form = await request.form(max_part_size=limit, max_files=_MAX_FILES)
        except HTTPException as error:  # Starlette's answer to multipart it cannot parse
            raise PredictionInputError(
                "POST /predict: expected a multipart/form-data body (with its boundary) holding "
                f"image files (field 'image', at most {_MAX_FILES}). Received: a body the "
                f"multipart parser refused ({error.detail})"
            ) from None
        try:
            uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if not uploads:
                raise PredictionInputError(
                    "POST /predict: expected an image file in the multipart field 'image'. "
                    f"Received: fields {sorted(form.keys())} without a file"
                )
            images = [await upload.read() for upload in uploads]
            names = [upload.filename or f"file {i}" for i, upload in enumerate(uploads)]
        finally:
            await form.close()
        pixels = [
            check_image(image, filename, self.max_image_pixels)
            for image, filename in zip(images, names, strict=True)
        ]
        column = np.empty(len(images), dtype=object)
        column[:] = images
        outputs = await self._predict_files(target[0], {target[1]: column}, names, pixels)
        return self._top_k_response(outputs, len(images) == 1, k)

    async def _predict_files(
        self,
        signature: str,
        inputs: Mapping[str, Any],
        names: Sequence[str],
        pixels: Sequence[int],
    ) -> Mapping[str, Any]:
        """Predict encoded images of these ``pixels``; the model's refusal names the files."""
        try:
            return await self.batcher.predict(signature, inputs, pixels)
        except PredictionInputError as error:
            shown = format_names(names, 5, quoted=False)
            where = names[0] if len(names) == 1 else f"one of {shown}"
            raise PredictionInputError(
                f"{where}: {str(error).removeprefix(f'{signature}: ')}"
            ) from None

    async def _predict_samples(self, batch: dict[str, Any], single: bool, k: int) -> Response:
        outputs = await self.batcher.predict(DEFAULT_SIGNATURE, batch)
        return self._top_k_response(outputs, single, k)

    def _top_k_response(self, outputs: Mapping[str, Any], single: bool, k: int) -> Response:
        answers: list[Any]
        if self.bundle.is_regression:
            answers = [{"value": v} for v in regression_values(outputs["scores"])]
        else:
            answers = top_k(outputs["scores"], self.bundle.labels, k)
        return _Answer(answers[0] if single else answers)

    def _text_batch(self, texts: list[str]) -> dict[str, Any]:
        if not self.bundle.accepts_text:
            raise PredictionInputError(
                f"text input: expected JSON for model {self.name!r}, which takes "
                f"{self.bundle.describe_inputs()}. Received: text"
            )
        name, spec = next(iter(self.bundle.inputs.items()))
        return {name: to_array(texts, spec, "input")}

    def _top_k(self, request: Request) -> int:
        value = request.query_params.get("top_k")
        if value is None:
            return self.default_top_k
        if not (value.isascii() and value.isdigit()) or int(value) < 1:  # not '²' or '٣'
            raise PredictionInputError(f"top_k: expected an int >= 1. Received: {value!r}")
        return int(value)

    async def _decode(self, raw: bytes, decode: Callable[[bytes, bool], _T]) -> _T:
        """``decode(raw, in_steps)``: at once for a small body, else in a worker thread, in turn.

        The slot is given back when the thread ends, not when the request does: a request
        cancelled mid-parse (its parse runs on) keeps its place until the memory is free.
        """
        if len(raw) <= self.large_body_bytes:
            return decode(raw, False)
        await self._large_bodies.acquire()
        try:
            parsed = asyncio.get_running_loop().run_in_executor(None, decode, raw, True)
        except BaseException:
            self._large_bodies.release()
            raise
        parsed.add_done_callback(self._parsed)
        return await asyncio.shield(parsed)

    def _parsed(self, future: asyncio.Future[Any]) -> None:
        self._large_bodies.release()
        if not future.cancelled():
            future.exception()  # retrieved, should nobody await it any more

    # -- health and counters -------------------------------------------------------------

    def batching(self) -> dict[str, Any]:
        """The batcher's settings and counters."""
        return {
            "max_batch_size": self.batcher.max_batch_size,
            "max_wait_ms": self.batcher.max_wait_ms,
            "max_batch_pixels": self.batcher.max_batch_pixels,
            **self.batcher.stats.to_dict(),
        }

    async def healthz(self, request: Request) -> Response:
        """200 while the model answers."""
        if self.batcher.error is not None:
            return _error(503, f"the model batcher stopped: {self.batcher.error}")
        return JSONResponse({"status": "ok", "model": self.name, "version": self.bundle.version})

    async def stats(self, request: Request) -> Response:
        """Batching counters: requests, samples, model calls, largest and mean batch."""
        return JSONResponse(self.batching())


def _text_body(raw: bytes, content_type: str) -> str:
    r"""A ``text/*`` body decoded by its ``charset`` (UTF-8 by default), without a
    byte-order mark (as ``collect.text_folder`` reads training files).

    Example:
        >>> _text_body("\ufeffcafé".encode(), "text/plain"), _text_body(b"caf\xe9", "text/plain; charset=latin-1")
        ('café', 'café')
        >>> _text_body(b"caf\xe9", "text/plain")
        Traceback (most recent call last):
        ...
        rxpipe.errors.PredictionInputError: text body: expected utf-8 text (or a charset in the Content-Type). Received: the byte 0xe9 at offset 3
    """  # noqa: E501
    charset = "utf-8"
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    try:
        text = raw.decode(charset)
    except LookupError:
        raise PredictionInputError(
            f"text body: expected a charset Python knows (e.g. utf-8). Received: {charset!r}"
        ) from None
    except UnicodeDecodeError as error:
        raise PredictionInputError(
            f"text body: expected {charset} text (or a charset in the Content-Type). "
            f"Received: the byte 0x{raw[error.start]:02x} at offset {error.start}"
        ) from None
    return text.removeprefix("\ufeff")


def _loads(raw: bytes, in_steps: bool = False) -> Any:
    """A request body's JSON (``in_steps``: read with :func:`_loads_in_steps`).

    Raises:
        PredictionInputError: for a body that is not JSON or is nested too deeply.
    """
    try:
        return _loads_in_steps(raw) if in_steps else json.loads(raw)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise PredictionInputError(f"request body: expected JSON. Received: {error}") from None
    except RecursionError:
        raise PredictionInputError(
            "request body: expected JSON nested at most as deep as the model's input. "
            f"Received: arrays or objects nested too deeply to read ({len(raw)} bytes)"
        ) from None


def _loads_in_steps(raw: bytes) -> Any:
    """``json.loads(raw)``, reading the items of the outer arrays one ``raw_decode`` at a time.

    ``json.loads`` is one C call that holds the GIL until it returns; between two items
    here, Python code runs and the GIL can pass to the event loop's thread. Objects are
    entered at any depth, arrays only at the first level (``{"instances": [...]}``,
    ``{"inputs": {"a": [...]}}``): below, items are small and many. Anything this reader
    does not take is read again by ``json.loads``, whose answer (or error) is returned.

    Example:
        >>> _loads_in_steps(b'{"instances": [[1, 2], {"b64": "AA=="}], "x": NaN}')
        {'instances': [[1, 2], {'b64': 'AA=='}], 'x': nan}
    """
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        value, end = _value_in_steps(text, _skip_space(text, 0), 1)
        if _skip_space(text, end) == len(text):
            return value
    except (ValueError, RecursionError):
        pass
    return json.loads(raw)


def _skip_space(text: str, index: int) -> int:
    """The index of the first character at or after ``index`` that is not JSON whitespace."""
    space = _SPACE.match(text, index)
    assert space is not None  # it matches the empty string
    return space.end()


def _value_in_steps(text: str, index: int, arrays: int) -> tuple[Any, int]:
    """The JSON value at ``text[index]`` and the index after it (see :func:`_loads_in_steps`).

    Raises:
        ValueError: for anything but a JSON value there.
    """
    opener = text[index : index + 1]
    if opener not in ("[", "{") or (opener == "[" and arrays == 0):
        return _DECODER.raw_decode(text, index)
    closer = "]" if opener == "[" else "}"
    items: list[Any] = []
    fields: dict[str, Any] = {}
    index = _skip_space(text, index + 1)
    if not text.startswith(closer, index):
        while True:
            if opener == "{":
                key, index = _DECODER.raw_decode(text, index)
                index = _skip_space(text, index)
                if not isinstance(key, str) or not text.startswith(":", index):
                    raise ValueError("expected a key and ':'")
                index = _skip_space(text, index + 1)
                fields[key], index = _value_in_steps(text, index, arrays)
            else:
                item, index = _value_in_steps(text, index, arrays - 1)
                items.append(item)
            index = _skip_space(text, index)
            if text.startswith(closer, index):
                break
            if not text.startswith(",", index):
                raise ValueError(f"expected ',' or {closer!r}")
            index = _skip_space(text, index + 1)
    return (fields if opener == "{" else items), index + 1


async def _input_error(request: Request, error: Exception) -> Response:
    return _error(400, str(error))


async def _closed(request: Request, error: Exception) -> Response:
    return _error(503, str(error))


class _InternalErrors:
    """ASGI middleware: an unexpected exception answers 500 JSON and keeps the connection.

    Starlette's own last-resort handler re-raises after answering, so uvicorn logs the
    error a second time and closes the connection: a keep-alive client then fails its
    next request with a reset. Here the error is logged once, with its traceback, and
    answered as any other error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            if started:  # too late to answer: let uvicorn close the connection
                raise
            path = scope.get("path", "")
            _LOG.exception("%s %s: internal error", scope.get("method", ""), path)
            await _error(500, f"{path}: internal error: {type(error).__name__}: {error}")(
                scope, receive, send
            )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    detail = error.detail
    if error.status_code == 404:
        detail = f"{request.url.path}: no such route; expected one of {', '.join(ROUTES)}"
    elif error.status_code == 405:
        detail = f"{request.url.path}: method {request.method} not allowed"
    return _error(error.status_code, detail)


def create_app(
    bundle: Bundle,
    *,
    name: str | None = None,
    max_batch_size: int = 32,
    max_wait_ms: float = 2.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    default_top_k: int = 5,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    max_batch_pixels: int = DEFAULT_MAX_BATCH_PIXELS,
) -> tuple[ASGIApp, ServingApp]:
    """The ASGI application serving ``bundle``, and its handlers (for counters and flush).

    Args:
        bundle: the loaded bundle.
        name: the model's name in URLs (default: the bundle's).
        max_batch_size: the most samples per model call (1: batching off).
        max_wait_ms: the longest a request waits for its batch to fill.
        max_body_bytes: the largest request body (413 past it).
        default_top_k: labels answered by ``/predict`` by default.
        max_image_pixels: the most pixels (width × height) of an uploaded image (400
            past it).
        body_timeout_s: the longest a request's body may take to arrive (408 past it).
        max_batch_pixels: the most pixels of uploaded images decoded in one model call
            (an image over it runs alone; see :data:`DEFAULT_MAX_BATCH_PIXELS`).

    On shutdown, call ``handlers.shutdown()`` on the event loop: bodies still arriving
    are answered 503 and what waits in the batcher runs at once.

    Example:
        >>> app, handlers = create_app(Bundle.load("runs/digits/latest"))  # doctest: +SKIP
    """

    def predict(signature: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return bundle.predict(inputs, signature)

    batcher = ModelBatcher(predict, max_batch_size, max_wait_ms, max_batch_pixels)
    handlers = ServingApp(
        bundle,
        batcher,
        name or bundle.name,
        max_body_bytes,
        default_top_k,
        max_image_pixels=max_image_pixels,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            batcher.close()

    app = Starlette(
        routes=[
            Route("/v1/models/{path:path}", handlers.models, methods=["GET", "POST"]),
            Route("/predict", handlers.predict, methods=["GET", "POST"]),
            Route("/healthz", handlers.healthz, methods=["GET"]),
            Route("/stats", handlers.stats, methods=["GET"]),
        ],
        exception_handlers={
            PredictionInputError: _input_error,
            BatcherClosedError: _closed,
            HTTPException: _http_error,
        },
        middleware=[Middleware(_InternalErrors)],
        lifespan=lifespan,
    )
    handlers.body_limit = BodyLimit(app, max_body_bytes, body_timeout_s)
    return handlers.body_limit, handlers
