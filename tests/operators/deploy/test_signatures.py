"""serving_images: every image format the README promises, decoded as training decodes,
and offered only for features that are pixels of a known range."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex

import rxpipe
from rxpipe.batch import DatasetMetadata, FeatureSpec
from rxpipe.context import atomic_write
from rxpipe.model import TrainedModel
from rxpipe.operators.deploy import write_bundle
from rxpipe.operators.deploy._signatures import is_image
from rxpipe.operators.process._image_steps import decode_one, grayscale
from rxpipe.serving import Bundle

pytestmark = pytest.mark.slow
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def encode(pixels: np.ndarray[Any, Any], fmt: str, mode: str) -> bytes:
    """Pixels (h, w) gray or (h, w, 3) RGB, 0–255, encoded by Pillow as ``fmt`` in ``mode``."""
    from PIL import Image

    buffer = io.BytesIO()
    options = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
    Image.fromarray(pixels).convert(mode).save(buffer, fmt, **options)
    return buffer.getvalue()


def reference(result: rxpipe.RunResult, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The trained Keras model's scores on raw digits (uint8, 0–16), preprocessed in numpy."""
    trained = result.trained
    assert trained is not None
    x: Any = raw
    for step in trained.metadata.preprocessing:
        x = step.apply(x)
    return np.asarray(trained.model(x, training=False))


def to_raw(gray: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Gray pixels (n, 8, 8, 1), 0–255, mapped onto the digits' 0–16 as serving_images does."""
    return np.round(gray.astype(np.float32) * np.float32(16 / 255)).astype(np.uint8)


@pytest.fixture(scope="module")
def bundle(digits_export: rxpipe.RunResult) -> Bundle:
    """The exported digits bundle (a grayscale model: raw input uint8 (8, 8, 1))."""
    return Bundle.load(Path(digits_export.artifacts["model"]).parent)


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("PNG", "L"), ("GIF", "L"), ("BMP", "L"), ("BMP", "RGB"), ("PNG", "P")],
)
def test_lossless_formats_decode_to_the_very_same_digits(
    bundle: Bundle,
    digits_export: rxpipe.RunResult,
    raw_digits: np.ndarray[Any, Any],
    fmt: str,
    mode: str,
) -> None:
    """PNG, GIF and BMP (gray, palette or RGB) of a digit score exactly like the raw digit."""
    images = [
        encode(np.round(d[..., 0] * (255 / 16)).astype(np.uint8), fmt, mode) for d in raw_digits[:4]
    ]
    scores = bundle.predict_images(images)["scores"]
    np.testing.assert_allclose(scores, reference(digits_export, raw_digits[:4]), **TOLERANCE)


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_jpegs_decode_too(
    bundle: Bundle, digits_export: rxpipe.RunResult, raw_digits: np.ndarray[Any, Any], mode: str
) -> None:
    """Gray, RGB and CMYK JPEGs: lossy, so scores come within a few hundredths of the raw
    digits' scores, and equal those of the same files decoded as training decodes them."""
    images = [
        encode(np.round(d[..., 0] * (255 / 16)).astype(np.uint8), "JPEG", mode)
        for d in raw_digits[:4]
    ]
    scores = bundle.predict_images(images)["scores"]
    np.testing.assert_allclose(scores, reference(digits_export, raw_digits[:4]), atol=0.05)
    trained_as = to_raw(grayscale(np.stack([decode_one(image, 3) for image in images])))
    np.testing.assert_allclose(scores, reference(digits_export, trained_as), **TOLERANCE)


def test_colour_images_become_gray_as_process_decode_image_makes_them(
    bundle: Bundle, digits_export: rxpipe.RunResult
) -> None:
    """RGB pixels go gray with process.decode_image's weights and rounding, then to 0–16."""
    rgb = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    raw = to_raw(grayscale(rgb))
    for fmt in ("PNG", "BMP"):
        scores = bundle.predict_images([encode(image, fmt, "RGB") for image in rgb])["scores"]
        np.testing.assert_allclose(scores, reference(digits_export, raw), **TOLERANCE)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (FeatureSpec((8, 8, 1), "uint8", (0.0, 16.0)), True),  # the digits
        (FeatureSpec((28, 28), "uint8"), True),  # gray pixels without a channel axis
        (FeatureSpec((32, 32, 3), "uint8"), True),
        (FeatureSpec((32, 32, 4), "uint8"), True),  # RGBA
        (FeatureSpec((8, 8, 1), "float32", (0.0, 1.0)), True),  # float images, declared
        (FeatureSpec((8, 8, 1), "float32"), False),  # float, scale unknown
        (FeatureSpec((50, 6), "float32", (0.0, 1.0)), False),  # a time series
        (FeatureSpec((50, 6), "float32"), False),
        (FeatureSpec((50, 6), "int64", (0.0, 9.0)), False),
        (FeatureSpec((8, 8, 2), "uint8"), False),
        (FeatureSpec((8, 8, 1), "bool"), False),
        (FeatureSpec((64,), "uint8"), False),
    ],
)
def test_only_pixels_of_a_known_range_get_an_image_signature(
    spec: FeatureSpec, expected: bool
) -> None:
    """uint8 or a declared value range, with 1, 3 or 4 channels (2-D: uint8 only)."""
    assert is_image(spec) is expected


def _gray_png(pixels: np.ndarray[Any, Any]) -> bytes:
    return encode(pixels, "PNG", "L")


def _exported(model: Any, spec: FeatureSpec, folder: Path) -> Bundle:
    meta = DatasetMetadata("images", spec, tuple("0123456789"))
    with atomic_write(folder / "model") as target:
        write_bundle(TrainedModel("cnn", model, reactivex.empty(), meta), target, name="images")
    return Bundle.load(folder)


def _small_cnn(shape: tuple[int, ...]) -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def test_float_images_in_a_declared_range_are_served_from_their_pixels(tmp_path: Path) -> None:
    """Float images in [0, 1] (value_range declared): PNG pixels 0–255 are mapped onto
    [0, 1], so serving_images answers as the model does on the same pixels; without a
    declared range no serving_images signature is offered (it fed 0–255 to the model)."""
    from sklearn.datasets import load_digits

    pixels = np.round(load_digits().images[:6] * (255 / 16)).astype(np.uint8)
    x = (pixels.astype(np.float32) * np.float32(1 / 255))[..., np.newaxis]
    model = _small_cnn((8, 8, 1))
    bundle = _exported(model, FeatureSpec((8, 8, 1), "float32", (0.0, 1.0)), tmp_path / "a")
    assert bundle.signatures.keys() == {"serving_default", "serving_images"}
    scores = bundle.predict_images([_gray_png(p) for p in pixels])["scores"]
    np.testing.assert_allclose(scores, model(x), **TOLERANCE)
    undeclared = _exported(model, FeatureSpec((8, 8, 1), "float32"), tmp_path / "b")
    assert set(undeclared.signatures) == {"serving_default"}
    assert not undeclared.accepts_images


def test_rgba_models_get_opaque_decoded_images(tmp_path: Path) -> None:
    """A (h, w, 4) uint8 model: decoded RGB pixels with an opaque alpha channel."""
    rgb = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    model = _small_cnn((8, 8, 4))
    bundle = _exported(model, FeatureSpec((8, 8, 4), "uint8"), tmp_path)
    scores = bundle.predict_images([encode(image, "PNG", "RGB") for image in rgb])["scores"]
    rgba = np.concatenate([rgb, np.full((3, 8, 8, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_allclose(scores, model(rgba.astype(np.float32)), **TOLERANCE)
