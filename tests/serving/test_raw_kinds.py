"""Models whose raw input is text or encoded images: exported, predicted and served."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import attrs
import httpx
import keras
import numpy as np
import pytest
import reactivex
import tensorflow as tf

from rxpipe.batch import DatasetMetadata, FeatureSpec
from rxpipe.cli import main
from rxpipe.context import atomic_write
from rxpipe.model import TrainedModel
from rxpipe.operators.deploy import write_bundle
from rxpipe.serving import Bundle
from rxpipe.serving.app import create_app

pytestmark = pytest.mark.slow
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


@attrs.frozen
class TextLength:
    """Text → its length in characters / 10 (a stand-in for a fitted vectorizer)."""

    name: str = "text_length"

    def apply(self, features: Any) -> Any:
        return np.array([[len(str(t)) / 10] for t in features], np.float32)

    def apply_tf(self, features: Any) -> Any:
        lengths = tf.strings.length(features, unit="UTF8_CHAR")
        return tf.cast(lengths, tf.float32)[:, tf.newaxis] / 10

    def to_config(self) -> dict[str, Any]:
        return {}


@attrs.frozen
class DecodeTiny:
    """Encoded image bytes → 4×4 gray pixels in [0, 1], flattened (recorded as decode_image)."""

    name: str = "decode_image"

    def apply(self, features: Any) -> Any:
        return np.asarray(self.apply_tf(tf.constant(list(features))))

    def apply_tf(self, features: Any) -> Any:
        def one(data: tf.Tensor) -> tf.Tensor:
            image = tf.io.decode_image(data, channels=1, expand_animations=False)
            image = tf.image.resize(tf.cast(image, tf.float32), (4, 4)) / 255
            return tf.reshape(image, (16,))

        return tf.map_fn(one, features, fn_output_signature=tf.TensorSpec((16,), tf.float32))

    def to_config(self) -> dict[str, Any]:
        return {}


def export(tmp_path: Path, step: Any, width: int, labels: tuple[str, ...]) -> TrainedModel:
    """Export a small softmax model behind ``step`` (raw input: one string per sample)."""
    inputs = keras.Input((width,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(len(labels), activation="softmax")(hidden))
    raw = DatasetMetadata("raw", FeatureSpec((), "object"), labels)
    meta = raw.with_preprocessor(step, FeatureSpec((width,), "float32"))
    trained = TrainedModel("small", model, reactivex.empty(), meta)
    with atomic_write(tmp_path / "model") as target:
        write_bundle(trained, target, name="raw")
    return trained


def scores(trained: TrainedModel, raw: list[Any]) -> np.ndarray[Any, Any]:
    """The Keras model's scores on raw samples, preprocessed with numpy."""
    x = np.array(raw, dtype=object)
    for step in trained.metadata.preprocessing:
        x = step.apply(x)
    return np.asarray(trained.model(x, training=False))


async def call(app: Any, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    """Send requests to the ASGI app in process (one event loop, as uvicorn would run it)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rxpipe") as client:
        return [await client.request(method, url, **kw) for method, url, kw in requests]


def png(value: int) -> bytes:
    """A 6×6 gray PNG with a bright square in it."""
    from PIL import Image

    pixels = np.zeros((6, 6), np.uint8)
    pixels[1:4, 1:4] = value
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_text_model_takes_raw_text_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Card kind "text"; predict takes a text argument; the server takes ?input=, text and JSON."""
    trained = export(tmp_path, TextLength(), 1, ("short", "long"))
    bundle = Bundle.load(tmp_path)
    assert bundle.card["inputs"]["features"]["kind"] == "text"
    assert bundle.accepts_text
    assert not bundle.accepts_images
    texts = ["hi", "a much longer sentence"]
    expected = scores(trained, texts)

    assert main(["predict", str(tmp_path), texts[1], "--json", "--top-k", "1"]) == 0
    assert '"label": "' + ("short", "long")[int(expected[1].argmax())] in capsys.readouterr().out

    app, handlers = create_app(bundle)
    try:
        by_query, by_text, by_json, upload = asyncio.run(
            call(
                app,
                ("GET", "/predict", {"params": {"input": texts[0]}}),
                (
                    "POST",
                    "/predict",
                    {"content": texts[1], "headers": {"content-type": "text/plain"}},
                ),
                ("POST", "/v1/models/raw:predict", {"json": {"instances": texts}}),
                ("POST", "/predict", {"files": {"image": ("a.png", png(9), "image/png")}}),
            )
        )
    finally:
        handlers.batcher.close()
    for answer, row in ((by_query, expected[0]), (by_text, expected[1])):
        assert answer.status_code == 200, answer.text
        got = {b["label"]: b["score"] for b in answer.json()}
        np.testing.assert_allclose([got["short"], got["long"]], row, **TOLERANCE)
    np.testing.assert_allclose(
        [p["scores"] for p in by_json.json()["predictions"]], expected, **TOLERANCE
    )
    assert upload.status_code == 400
    assert "Received: a file upload" in upload.json()["error"]


def test_a_text_body_is_read_in_its_charset_without_a_byte_order_mark(tmp_path: Path) -> None:
    """A text/plain body is UTF-8 unless its charset says otherwise; a BOM is dropped (as
    collect.text_folder drops it); bytes that are not text in that charset are a 400."""
    trained = export(tmp_path, TextLength(), 1, ("short", "long"))
    app, handlers = create_app(Bundle.load(tmp_path))

    def text(body: bytes, content_type: str) -> tuple[str, str, dict[str, Any]]:
        return ("POST", "/predict", {"content": body, "headers": {"content-type": content_type}})

    try:
        answers = asyncio.run(
            call(
                app,
                text("\ufeffhi".encode(), "text/plain"),
                text("hi".encode("utf-16"), "text/plain; charset=utf-16"),
                text("héé".encode("latin-1"), 'text/plain; charset="ISO-8859-1"'),
                text("héé".encode("latin-1"), "text/plain"),
                text(b"hi", "text/plain; charset=klingon"),
            )
        )
    finally:
        handlers.batcher.close()
    expected = scores(trained, ["hi", "héé"])
    for answer, row in zip(answers[:3], [expected[0], expected[0], expected[1]], strict=True):
        assert answer.status_code == 200, answer.text
        got = {b["label"]: b["score"] for b in answer.json()}
        np.testing.assert_allclose([got["short"], got["long"]], row, **TOLERANCE)
    assert [a.status_code for a in answers[3:]] == [400, 400]
    assert answers[3].json()["error"] == (
        "text body: expected utf-8 text (or a charset in the Content-Type). "
        "Received: the byte 0xe9 at offset 1"
    )
    assert "Received: 'klingon'" in answers[4].json()["error"]


def test_predict_reads_a_text_file_without_its_byte_order_mark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .txt file is UTF-8 without a BOM, as collect.text_folder reads it for training;
    bytes that are not UTF-8 are named."""
    export(tmp_path, TextLength(), 1, ("short", "long"))
    plain, marked, latin = tmp_path / "plain.txt", tmp_path / "marked.txt", tmp_path / "l.txt"
    plain.write_text("hi")
    marked.write_bytes("\ufeffhi".encode())
    latin.write_bytes("hé".encode("latin-1"))
    assert main(["predict", str(tmp_path), str(plain), str(marked), "--json"]) == 0
    first, second = json.loads(capsys.readouterr().out)
    assert first["predictions"] == second["predictions"]
    assert main(["predict", str(tmp_path), str(latin)]) == 2
    assert capsys.readouterr().err.endswith(
        f"{latin}: expected UTF-8 text. Received: the byte 0xe9 at offset 1\n"
    )


def test_a_model_on_encoded_images_takes_uploads_through_serving_default(tmp_path: Path) -> None:
    """Raw input = image bytes (decoded by its first step): uploads go to serving_default."""
    trained = export(tmp_path, DecodeTiny(), 16, ("dark", "light"))
    bundle = Bundle.load(tmp_path)
    assert bundle.card["inputs"]["features"]["kind"] == "image"
    assert bundle.image_input == ("serving_default", "features")
    images = [png(40), png(250)]
    expected = scores(trained, images)
    uploads = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    app, handlers = create_app(bundle)
    try:
        [answer, not_image] = asyncio.run(
            call(
                app,
                ("POST", "/predict?top_k=2", {"files": uploads}),
                ("POST", "/predict", {"files": {"image": ("c.png", b"GIF89a-no", "image/png")}}),
            )
        )
    finally:
        handlers.batcher.close()
    assert answer.status_code == 200, answer.text
    for best, row in zip(answer.json(), expected, strict=True):
        assert best[0]["label"] == ("dark", "light")[int(row.argmax())]
        assert best[0]["score"] == pytest.approx(float(row.max()), rel=1e-5)
    assert not_image.status_code == 400
    assert not_image.json()["error"].startswith("c.png: expected")
