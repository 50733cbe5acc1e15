"""Uploaded images: check that bytes are an image TensorFlow can decode, before batching them.

A file that is not an image must fail alone, with a 400 naming it, not inside a batch
of other requests' images.
"""

from __future__ import annotations

import io
import warnings

from rxpipe.errors import PredictionInputError

__all__ = ["IMAGE_FORMATS", "check_image"]

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP")  # what tf.io.decode_image reads
_ALSO_JPEG = frozenset({"MPO"})  # a JPEG with more pictures after it (phone cameras): TF
# decodes its first picture, as Pillow and process.decode_image do


def check_image(data: bytes | str, filename: str) -> None:
    """Raise :class:`PredictionInputError` unless ``data`` is a PNG, JPEG, GIF or BMP image.

    Example:
        >>> check_image(b"hello", "notes.png")
        Traceback (most recent call last):
        ...
        rxpipe.errors.PredictionInputError: notes.png: expected an image (PNG, JPEG, GIF, BMP). \
Received: 5 bytes that no image reader recognises
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, bytes):
        raise PredictionInputError(
            f'{filename}: expected image bytes (in JSON: {{"b64": "..."}}). '
            f"Received: {type(data).__name__}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format
                image.verify()
    except UnidentifiedImageError:
        raise PredictionInputError(
            f"{filename}: expected an image ({', '.join(IMAGE_FORMATS)}). "
            f"Received: {len(data)} bytes that no image reader recognises"
        ) from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as error:
        raise PredictionInputError(
            f"{filename}: expected a readable image ({', '.join(IMAGE_FORMATS)}). "
            f"Received: {len(data)} bytes that fail to read ({type(error).__name__}: {error})"
        ) from None
    if kind not in IMAGE_FORMATS and kind not in _ALSO_JPEG:
        raise PredictionInputError(
            f"{filename}: expected an image in {', '.join(IMAGE_FORMATS)}. Received: {kind}"
        )
