"""The prediction server, as a real process on a real port, called over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def post(server: Any, path: str, **kwargs: Any) -> httpx.Response:
    """POST to the server (generous timeout: CI machines are busy)."""
    return httpx.post(f"{server.url}{path}", timeout=60, **kwargs)


def test_status_names_version_1_available(server: Any) -> None:
    """GET /v1/models/NAME answers TensorFlow Serving's status: version 1 AVAILABLE."""
    answer = httpx.get(f"{server.url}/v1/models/digits", timeout=60)
    assert answer.status_code == 200
    [status] = answer.json()["model_version_status"]
    assert (status["version"], status["state"]) == ("1", "AVAILABLE")


def test_metadata_describes_the_raw_input_signature(server: Any) -> None:
    """GET .../metadata gives serving_default's raw uint8 input and its outputs."""
    answer = httpx.get(f"{server.url}/v1/models/digits/versions/1/metadata", timeout=60).json()
    assert answer["model_spec"] == {"name": "digits", "signature_name": "", "version": "1"}
    signatures = answer["metadata"]["signature_def"]["signature_def"]
    features = signatures["serving_default"]["inputs"]["features"]
    assert features["dtype"] == "DT_UINT8"
    assert [d["size"] for d in features["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]
    assert set(signatures["serving_default"]["outputs"]) == {"scores", "class_ids"}
    assert signatures["serving_images"]["inputs"]["images"]["dtype"] == "DT_STRING"


def test_instances_answer_the_models_own_predictions(server: Any, digits_bundle: Any) -> None:
    """Row format: each prediction equals the trained model's scores on the same raw digit."""
    images = digits_bundle.images[:20]
    answer = post(server, "/v1/models/digits:predict", json={"instances": images.tolist()})
    assert answer.status_code == 200
    predictions = answer.json()["predictions"]
    scores = np.array([p["scores"] for p in predictions])
    np.testing.assert_allclose(scores, digits_bundle.scores[:20], **TOLERANCE)
    assert [p["class_ids"] for p in predictions] == digits_bundle.scores[:20].argmax(-1).tolist()


def test_columnar_inputs_answer_outputs(server: Any, digits_bundle: Any) -> None:
    """Columnar format ({"inputs": ...}) answers {"outputs": {"scores", "class_ids"}}."""
    images = digits_bundle.images[20:25]
    answer = post(server, "/v1/models/digits/versions/1:predict", json={"inputs": images.tolist()})
    assert answer.status_code == 200
    outputs = answer.json()["outputs"]
    np.testing.assert_allclose(outputs["scores"], digits_bundle.scores[20:25], **TOLERANCE)
    assert outputs["class_ids"] == digits_bundle.scores[20:25].argmax(-1).tolist()


def test_base64_images_through_the_image_signature(
    server: Any, digits_bundle: Any, encode_png: Any
) -> None:
    """signature_name serving_images takes {"b64": PNG} rows, as TensorFlow Serving does."""
    import base64

    rows = [
        {"b64": base64.b64encode(encode_png(image)).decode()} for image in digits_bundle.images[:3]
    ]
    answer = post(
        server,
        "/v1/models/digits:predict",
        json={"signature_name": "serving_images", "instances": rows},
    )
    assert answer.status_code == 200, answer.text
    scores = np.array([p["scores"] for p in answer.json()["predictions"]])
    np.testing.assert_allclose(scores, digits_bundle.scores[:3], **TOLERANCE)


def test_pipcook_predict_takes_an_uploaded_image(
    server: Any, digits_bundle: Any, encode_png: Any
) -> None:
    """POST /predict with a multipart PNG answers the top-k labels of the model's scores."""
    image = digits_bundle.images[5]
    answer = post(
        server, "/predict?top_k=3", files={"image": ("digit.png", encode_png(image), "image/png")}
    )
    assert answer.status_code == 200, answer.text
    best = answer.json()
    expected = digits_bundle.scores[5]
    order = np.argsort(-expected)[:3]
    assert [b["label"] for b in best] == [str(i) for i in order]
    np.testing.assert_allclose([b["score"] for b in best], expected[order], **TOLERANCE)


def test_pipcook_predict_takes_json_samples(server: Any, digits_bundle: Any) -> None:
    """POST /predict with {"input"} answers one top-k list; {"instances"} one list per sample."""
    one = post(server, "/predict", json={"input": digits_bundle.images[7].tolist()}).json()
    assert len(one) == 5
    assert one[0]["label"] == str(digits_bundle.scores[7].argmax())
    several = post(
        server, "/predict?top_k=1", json={"instances": digits_bundle.images[:4].tolist()}
    )
    assert [b[0]["label"] for b in several.json()] == [
        str(i) for i in digits_bundle.scores[:4].argmax(-1)
    ]


def test_healthz_says_ok(server: Any) -> None:
    """GET /healthz answers 200 with the model's name."""
    answer = httpx.get(f"{server.url}/healthz", timeout=60)
    assert (answer.status_code, answer.json()["status"]) == (200, "ok")


def _digit(value: int = 1) -> list[Any]:
    return np.full((8, 8, 1), value).tolist()


BAD_REQUESTS = [
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"content": b"{not json"},
        400,
        "expected JSON",
        id="malformed-json",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": {"instances": [[1, 2, 3]]}},
        400,
        "expected uint8 values of shape (8, 8, 1) per sample. Received: integers of shape (3,)",
        id="wrong-shape",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": {"instances": [_digit(), np.full((8, 8, 1), 1.5).tolist()]}},
        400,
        "instances: expected uint8 values, integers in [0, 255], of shape (8, 8, 1) per sample. "
        "Received: 1.5 in sample 1 at (0, 0, 0)",
        id="wrong-dtype",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": {"instances": [_digit(300)]}},
        400,
        "expected uint8 values in [0, 255]. Received: values in [300, 300]",
        id="out-of-range",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": {"instances": [["a"] * 8] * 8}},
        400,
        "Received: strings",
        id="strings-for-numbers",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": {"instances": [[1, 2], [3]]}},
        400,
        "ragged",
        id="ragged",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": {"instances": [_digit()], "inputs": [_digit()]}},
        400,
        "exactly one of 'instances' (row format) or 'inputs' (columnar format). Received: both",
        id="instances-and-inputs",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": {"rows": []}},
        400,
        "Received: neither",
        id="neither",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": {"instances": []}},
        400,
        "non-empty list",
        id="no-instances",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": [1, 2]},
        400,
        "expected a JSON object",
        id="not-an-object",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": {"signature_name": "nope", "instances": [_digit()]}},
        400,
        "signature_name: expected one of ['serving_default', 'serving_images']",
        id="unknown-signature",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"content": b"[" * 3_000_000},
        413,
        "expected at most 1048576 bytes. Received: 3000000 bytes",
        id="body-too-large",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"content": [b"[" * 600_000, b"[" * 600_000]},
        413,
        "expected at most 1048576 bytes",
        id="chunked-body-too-large",
    ),
    pytest.param(
        "POST",
        "/v1/models/unknown:predict",
        {"json": {"instances": [_digit()]}},
        404,
        "model 'unknown': not found",
        id="unknown-model",
    ),
    pytest.param(
        "GET",
        "/v1/models/digits/versions/7",
        {},
        404,
        "version '7': not found",
        id="unknown-version",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:classify",
        {"json": {}},
        404,
        "expected :predict",
        id="unknown-verb",
    ),
    pytest.param("GET", "/v1/models/digits:predict", {}, 405, "expected POST", id="get-predict"),
    pytest.param(
        "GET",
        "/nowhere",
        {},
        404,
        "/nowhere: no such route; expected one of "
        "/v1/models/NAME[/versions/V][/metadata|:predict], /predict, /healthz, /stats",
        id="unknown-route",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"content": b'{"instances": ' + b"[" * 100_000},
        400,
        "request body: expected JSON nested at most as deep as the model's input. "
        "Received: arrays or objects nested too deeply to read",
        id="nested-too-deeply",
    ),
    pytest.param(
        "POST",
        "/v1/models/digits:predict",
        {"json": {"signature_name": "serving_images", "instances": [{"b64": "!!!"}]}},
        400,
        "instances: expected valid base64 in {'b64': ...}. Received: ",
        id="bad-base64",
    ),
    pytest.param(
        "POST",
        "/predict",
        {"files": {"image": ("notes.png", b"not an image", "image/png")}},
        400,
        "notes.png: expected an image",
        id="not-an-image",
    ),
    pytest.param(
        "POST",
        "/predict",
        {"files": {"image": ("half.png", b"\x89PNG\r\n\x1a\n", "image/png")}},
        400,
        "half.png: expected",
        id="truncated-image",
    ),
    pytest.param(
        "POST",
        "/predict",
        {"content": b"some text", "headers": {"content-type": "text/plain"}},
        400,
        "text input: expected JSON",
        id="text-to-an-image-model",
    ),
    pytest.param(
        "POST",
        "/predict?top_k=zero",
        {"json": {"input": _digit()}},
        400,
        "top_k: expected an int >= 1",
        id="bad-top-k",
    ),
]


def send(server: Any, method: str, path: str, request: dict[str, Any]) -> httpx.Response:
    """Send one request; a list of chunks is sent as a chunked (streamed) body."""
    request = dict(request)
    if isinstance(request.get("content"), list):
        request["content"] = iter(request["content"])
    return httpx.request(method, f"{server.url}{path}", timeout=60, **request)


@pytest.mark.parametrize(("method", "path", "request_", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_json_error(
    server: Any, method: str, path: str, request_: dict[str, Any], status: int, message: str
) -> None:
    """Bad input answers its 4xx code with {"error": ...} naming expected and received."""
    answer = send(server, method, path, request_)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"}
    error = answer.json()["error"]
    assert message in error
    assert error.count("expected") == 1  # said once, not wrapped in another message


def test_a_good_request_succeeds_after_a_burst_of_bad_ones(server: Any, digits_bundle: Any) -> None:
    """Every bad request, three times over, leaves the server answering good ones."""
    for _ in range(3):
        for case in BAD_REQUESTS:
            method, path, request, status, _ = case.values
            assert send(server, method, path, request).status_code == status
    answer = post(
        server, "/v1/models/digits:predict", json={"instances": [digits_bundle.images[0].tolist()]}
    )
    assert answer.status_code == 200
    np.testing.assert_allclose(
        answer.json()["predictions"][0]["scores"], digits_bundle.scores[0], **TOLERANCE
    )
    assert httpx.get(f"{server.url}/healthz", timeout=60).status_code == 200


def test_the_404_answer_lists_every_route(regression_bundle: Any) -> None:
    """Each route the application has appears in the list a 404 answer gives."""
    from rxpipe.serving import Bundle
    from rxpipe.serving.app import ROUTES, create_app

    app, handlers = create_app(Bundle.load(regression_bundle))
    handlers.batcher.close()
    paths = [route.path.split("{")[0] for route in app.app.routes]
    assert len(paths) == len(ROUTES)
    assert all(any(r.startswith(p) for r in ROUTES) for p in paths)


@pytest.mark.parametrize(
    ("body", "received"),
    [
        (b'{"instances": [[0, 0, 1], [1e39, 0, 0]]}', "1e+39, which overflows float32 in sample 1"),
        (b'{"instances": [[0, NaN, 1]]}', "nan in sample 0 at (1,)"),
        (b'{"inputs": [[0, 0, 1], [0, 0, -Infinity]]}', "-inf in sample 1 at (2,)"),
    ],
)
def test_numbers_not_finite_in_float32_are_a_400(
    regression_server: Any, body: bytes, received: str
) -> None:
    """1e39 (inf in float32), NaN and -Infinity sent to a float32 input: 400 naming the sample."""
    answer = post(
        regression_server,
        "/v1/models/overflow:predict",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error.startswith(
        "instances: expected finite float32 values" if b"instances" in body else "inputs: expected"
    )
    assert f"Received: {received}" in error


def test_non_finite_outputs_are_written_as_tensorflow_serving_writes_them(
    regression_server: Any,
) -> None:
    """A model's inf and NaN for valid input answer 200 with bare Infinity/-Infinity/NaN."""
    rows = [[1e10, 0, 0], [0, 1e10, 0], [1e10, 1e10, 0], [0, 0, 2.5]]
    url = "/v1/models/overflow:predict"
    by_rows = post(regression_server, url, json={"instances": rows})
    assert by_rows.status_code == 200, by_rows.text
    assert by_rows.text == '{"predictions":[[Infinity],[-Infinity],[NaN],[2.5]]}'
    by_columns = post(regression_server, url, json={"inputs": rows})
    assert by_columns.text == '{"outputs":[[Infinity],[-Infinity],[NaN],[2.5]]}'
    pipcook = post(regression_server, "/predict", json={"instances": rows})
    assert pipcook.text == ('[{"value":Infinity},{"value":-Infinity},{"value":NaN},{"value":2.5}]')


def test_regression_models_answer_values_on_predict(regression_server: Any) -> None:
    """/predict answers a regression's value ({"value": v}), not a label and score."""
    one = post(regression_server, "/predict", json={"input": [0, 0, 2.5]})
    assert (one.status_code, one.json()) == (200, {"value": 2.5})
    several = post(regression_server, "/predict", json={"instances": [[0, 0, 1], [0, 0, -3.5]]})
    assert several.json() == [{"value": 1.0}, {"value": -3.5}]


def test_null_is_a_missing_value_where_the_model_fills_it(
    tmp_path: Any, regression_server: Any
) -> None:
    """A model whose preprocessing fills missing values (process.fill_missing) takes JSON
    null for them over HTTP, filled as in training; a model that fills none answers 400."""
    import keras
    import reactivex

    from rxpipe.batch import DatasetMetadata, FeatureSpec
    from rxpipe.context import atomic_write
    from rxpipe.model import TrainedModel
    from rxpipe.operators.deploy import write_bundle
    from rxpipe.operators.process._tabular_steps import FillMissing

    from .conftest import serving

    inputs = keras.Input((3,), name="features")
    layer = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.array([[1.0], [10.0], [100.0]], np.float32)])
    raw = FeatureSpec((3,), "float32")
    meta = DatasetMetadata("filled", raw, None).with_preprocessor(
        FillMissing(values=(1.0, 2.0, 3.0)), raw
    )
    with atomic_write(tmp_path / "model") as target:
        write_bundle(TrainedModel("linear", model, reactivex.empty(), meta), target)
    with serving(tmp_path / "model", tmp_path) as server:
        answer = post(server, "/v1/models/filled:predict", json={"instances": [[None, 0, None]]})
        assert (answer.status_code, answer.json()) == (200, {"predictions": [[301.0]]})
        pipcook = post(server, "/predict", json={"input": [0.5, None, 0]})
        assert pipcook.json() == {"value": 20.5}
    refused = post(regression_server, "/predict", json={"input": [0, None, 0]})
    assert refused.status_code == 400
    assert "fills no missing values" in refused.json()["error"]


def test_tabular_columns_are_served_under_their_csv_names(tmp_path: Any) -> None:
    """Columns TensorFlow renames or would merge (``a/b``, ``a_b``, ``1st``) are sent under
    the CSV's names, to :predict and /predict alike, each reaching its own weight; a
    column the model does not use (``notes``) may be sent or not; a row with a misspelt
    key is told which key is missing and which is unknown."""
    import keras
    import reactivex

    from rxpipe.batch import DatasetMetadata, FeatureSpec
    from rxpipe.context import atomic_write
    from rxpipe.model import TrainedModel
    from rxpipe.operators.deploy import write_bundle
    from rxpipe.operators.process._tabular_steps import ConcatColumns

    from .conftest import serving

    names = ("a/b", "a_b", "1st")
    inputs = keras.Input((3,), name="features")
    layer = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.array([[1.0], [10.0], [100.0]], np.float32)])
    raw = {**{name: FeatureSpec((), "float32") for name in names}, "notes": FeatureSpec((), "str")}
    meta = DatasetMetadata("columns", raw, None).with_preprocessor(
        ConcatColumns(columns=names, widths=(1, 1, 1)), FeatureSpec((3,), "float32")
    )
    with atomic_write(tmp_path / "model") as target:
        write_bundle(TrainedModel("linear", model, reactivex.empty(), meta), target, name="cols")
    row = {"a/b": 1, "a_b": 2, "1st": 3}
    with serving(tmp_path / "model", tmp_path) as server:
        answer = post(
            server, "/v1/models/cols:predict", json={"instances": [row, {**row, "notes": "x"}]}
        )
        assert (answer.status_code, answer.json()) == (200, {"predictions": [[321.0], [321.0]]})
        columns = post(
            server, "/v1/models/cols:predict", json={"inputs": {"a/b": [0], "a_b": [0], "1st": [1]}}
        )
        assert columns.json() == {"outputs": [[100.0]]}
        assert post(server, "/predict", json={"input": row}).json() == {"value": 321.0}
        metadata = httpx.get(f"{server.url}/v1/models/cols/metadata", timeout=60).json()
        signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert set(signature["inputs"]) == {*names, "notes"}
        misspelt = {"a/b": 1, "a_b": 2, "1stt": 3}
        refused = post(server, "/v1/models/cols:predict", json={"instances": [row, misspelt]})
        assert refused.status_code == 400
        assert "row 1 lacks '1st' and has the unknown key '1stt'" in refused.json()["error"]
