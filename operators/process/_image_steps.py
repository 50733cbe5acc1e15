"""Image preprocessors: decode, resize, grayscale, with matching numpy and TensorFlow code.

The numpy side (Pillow for decoding, numpy for resizing) runs in the data pipeline; the
TensorFlow side runs in the exported model's serving signature. They compute the same
thing: resizing follows ``tf.image.resize`` (half-pixel centres) step for step, and
grayscale uses the same weights and rounding, so a served model sees what the trained
one saw (lossless formats are bit-identical; JPEG decoders may differ by a level or two).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "GRAY_WEIGHTS",
    "DecodeImage",
    "Grayscale",
    "Resize",
    "decode_one",
    "grayscale",
    "resize",
]

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
"""RGB → luma weights (ITU-R BT.601, as ``tf.image.rgb_to_grayscale``)."""


def decode_one(data: bytes, channels: int) -> np.ndarray[Any, Any]:
    """Decode one PNG, JPEG, BMP or GIF (first frame) to uint8 of shape (h, w, channels).

    Raises:
        ValueError: if ``data`` is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"expected encoded image bytes. Received: {type(data).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError(
            f"not a readable PNG, JPEG, BMP or GIF image (an unknown format, starting "
            f"{bytes(data[:8])!r})"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"not a readable PNG, JPEG, BMP or GIF image ({error})") from None
    return rgb if channels == 3 else grayscale(rgb[np.newaxis])[0]


def _axis(in_size: int, out_size: int, method: str) -> tuple[Any, Any, Any]:
    scale = np.float32(in_size) / np.float32(out_size)
    centres = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale
    if method == "nearest":
        index = np.minimum(np.floor(centres).astype(np.int64), in_size - 1)
        return index, index, np.zeros(out_size, np.float32)
    x = centres - np.float32(0.5)
    floor = np.floor(x)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(x).astype(np.int64), in_size - 1)
    return lower, upper, (x - floor).astype(np.float32)


def _restore(values: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


def resize(
    images: np.ndarray[Any, Any], size: tuple[int, int], method: str = "bilinear"
) -> np.ndarray[Any, Any]:
    """Resize a batch (n, h, w, c) to ``size`` like ``tf.image.resize``; keep the dtype.

    Integer images are rounded back to their dtype after bilinear interpolation.

    Example:
        >>> resize(np.arange(4, dtype="uint8").reshape(1, 2, 2, 1), (4, 4))[0, :, :, 0]
        array([[0, 0, 1, 1],
               [0, 1, 1, 2],
               [2, 2, 2, 2],
               [2, 2, 3, 3]], dtype=uint8)
    """
    height, width = images.shape[1], images.shape[2]
    if (height, width) == tuple(size):
        return images
    top, bottom, y_lerp = _axis(height, size[0], method)
    left, right, x_lerp = _axis(width, size[1], method)
    if method == "nearest":
        return images[:, top][:, :, left]
    x = images.astype(np.float32, copy=False)
    rows_top, rows_bottom = x[:, top], x[:, bottom]
    x_lerp = x_lerp[np.newaxis, np.newaxis, :, np.newaxis]
    upper = rows_top[:, :, left] + (rows_top[:, :, right] - rows_top[:, :, left]) * x_lerp
    lower = rows_bottom[:, :, left] + (rows_bottom[:, :, right] - rows_bottom[:, :, left]) * x_lerp
    out = upper + (lower - upper) * y_lerp[np.newaxis, :, np.newaxis, np.newaxis]
    return _restore(out, images.dtype)


def grayscale(images: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """RGB batch (n, h, w, 3) → (n, h, w, 1) with :data:`GRAY_WEIGHTS`; keep the dtype.

    Example:
        >>> grayscale(np.full((1, 1, 1, 3), 200, "uint8")).ravel().tolist()
        [200]
    """
    x = images.astype(np.float32, copy=False)
    w = [np.float32(v) for v in GRAY_WEIGHTS]
    luma = (x[..., 0] * w[0] + x[..., 1] * w[1]) + x[..., 2] * w[2]
    return _restore(luma[..., np.newaxis], images.dtype)


def _restore_tf(values: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    import tensorflow as tf

    if dtype.is_integer:
        values = tf.clip_by_value(tf.round(values), float(dtype.min), float(dtype.max))
    return tf.cast(values, dtype)


def _resize_tf(images: tf.Tensor, size: tuple[int, int], method: str) -> tf.Tensor:
    import tensorflow as tf

    resized = tf.image.resize(images, size, method=method)
    return resized if method == "nearest" else _restore_tf(resized, images.dtype)


def _grayscale_tf(images: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    w = [tf.constant(v, tf.float32) for v in GRAY_WEIGHTS]
    luma = (x[..., 0] * w[0] + x[..., 1] * w[1]) + x[..., 2] * w[2]
    return _restore_tf(luma[..., tf.newaxis], images.dtype)


@attrs.frozen
class DecodeImage:
    """Encoded image bytes → uint8 arrays (h, w, channels), resized to ``size`` if given.

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (5, 3), (255, 0, 0)).save(buffer, "PNG")
        >>> images = np.array([buffer.getvalue()], dtype=object)
        >>> DecodeImage(channels=3, size=(2, 2)).apply(images).shape
        (1, 2, 2, 3)
    """

    channels: int = 3
    size: tuple[int, int] | None = None
    method: str = "bilinear"
    name: str = "decode_image"

    def decode(self, data: bytes) -> np.ndarray[Any, Any]:
        """Decode (and resize) one image; ``ValueError`` if it is not one."""
        image = decode_one(data, self.channels)
        return image if self.size is None else resize(image[np.newaxis], self.size, self.method)[0]

    def apply(self, features: Any) -> Any:
        images = [self.decode(item) for item in np.asarray(features, dtype=object).ravel()]
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise ValueError(
                f"decode_image: expected images of one size (set size=[height, width]). "
                f"Received: sizes {sorted(s[:2] for s in shapes)}"
            )
        if not images:
            return np.zeros((0, *(self.size or (0, 0)), self.channels), np.uint8)
        return np.stack(images)

    def apply_tf(self, features: Any) -> Any:
        import tensorflow as tf

        def one(data: tf.Tensor) -> tf.Tensor:
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            if self.channels == 1:
                image = _grayscale_tf(image[tf.newaxis])[0]
            if self.size is not None:
                image = _resize_tf(image[tf.newaxis], self.size, self.method)[0]
            return image

        shape = (*self.size, self.channels) if self.size else (None, None, self.channels)
        return tf.map_fn(
            one,
            tf.reshape(features, [-1]),
            fn_output_signature=tf.TensorSpec(shape, tf.uint8),
        )

    def to_config(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Resize:
    """Resize image batches to ``size`` (bilinear or nearest, half-pixel centres).

    Example:
        >>> Resize((4, 6)).apply(np.zeros((2, 8, 8, 3), "uint8")).shape
        (2, 4, 6, 3)
    """

    size: tuple[int, int]
    method: str = "bilinear"
    name: str = "resize"

    def apply(self, features: Any) -> Any:
        images = np.asarray(features)
        flat = images.ndim == 3
        out = resize(images[..., np.newaxis] if flat else images, self.size, self.method)
        return out[..., 0] if flat else out

    def apply_tf(self, features: Any) -> Any:
        flat = len(features.shape) == 3
        images = features[..., None] if flat else features
        out = _resize_tf(images, self.size, self.method)
        return out[..., 0] if flat else out

    def to_config(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Grayscale:
    """RGB image batches (n, h, w, 3) → (n, h, w, 1).

    Example:
        >>> Grayscale().apply(np.zeros((2, 4, 4, 3), "uint8")).shape
        (2, 4, 4, 1)
    """

    name: str = "grayscale"

    def apply(self, features: Any) -> Any:
        return grayscale(np.asarray(features))

    def apply_tf(self, features: Any) -> Any:
        return _grayscale_tf(features)

    def to_config(self) -> dict[str, Any]:
        return attrs.asdict(self)
