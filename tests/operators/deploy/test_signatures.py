"""serving_images: every image format the README promises, decoded as training decodes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rxpipe
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
