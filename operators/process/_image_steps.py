"""Image preprocessors: decode, resize, grayscale, with matching numpy and TensorFlow code.

The numpy side (Pillow for decoding, numpy for resizing) runs in the data pipeline; the
TensorFlow side runs in the exported model's serving signature. They compute the same
thing: resizing follows ``tf.image.resize`` (half-pixel centres) step for step, and
grayscale uses the same weights and rounding, so a served model sees what the trained
one saw, bit for bit. JPEG is decoded on both sides with the accurate integer DCT
(Pillow's only one; ``dct_method="INTEGER_ACCURATE"`` in TF, whose default fast DCT is
up to 10 levels off), and 16-bit PNG keeps the high byte of each value on both sides
(TF's libpng reduction). Only the formats serving decodes are accepted
(:data:`rxpipe.serving.images.IMAGE_FORMATS`: PNG, JPEG, GIF, BMP), and of those only
what TF decodes to the same pixels: a GIF's transparent pixels are black (TF's
first frame), a GIF whose first frame does not fill the image and a BMP that TF
misreads or refuses (1, 4 or 16 bits a pixel, a color palette, RLE) are refused. EXIF
orientation is applied on neither side: a photo stored sideways is learnt and served
sideways, the same pixels both times.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from rxpipe.serving.images import IMAGE_FORMATS, tf_decoding_problem

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "GRAY_WEIGHTS",
    "DecodeImage",
    "Grayscale",
    "Resize",
    "decode_one",
    "decode_rgb_tf",
    "grayscale",
    "resize",
]

_JPEG_KINDS = frozenset({"JPEG", "MPO"})  # MPO: a JPEG with more pictures after it (cameras)
_READABLE = frozenset(IMAGE_FORMATS) | (_JPEG_KINDS if "JPEG" in IMAGE_FORMATS else frozenset())
"""Pillow's names of the formats serving decodes (TF reads an MPO file as its first JPEG)."""

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
"""RGB → luma weights (ITU-R BT.601, as ``tf.image.rgb_to_grayscale``)."""


def decode_one(data: bytes, channels: int) -> np.ndarray[Any, Any]:
    """Decode one PNG, JPEG, BMP or GIF (first frame) to uint8 of shape (h, w, channels).

    The pixels are those :func:`decode_rgb_tf` gives when serving: 16-bit grayscale PNG
    keeps the high byte of each value (as TF does), not Pillow's clipping to 255; a
    GIF's transparent pixels are black, as TF decodes them.

    Raises:
        ValueError: if ``data`` is not a readable image in a format serving decodes, or
            is one that TF would decode to other pixels (a BMP of a kind TF misreads, a
            GIF whose first frame does not fill the image), or is larger than Pillow's
            decompression-bomb limit.

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.fromarray(np.array([[0, 1000, 65535]], "uint16")).save(buffer, "PNG")
        >>> decode_one(buffer.getvalue(), 1)[..., 0].tolist()
        [[0, 3, 255]]
    """
    from PIL import Image, UnidentifiedImageError

    formats = ", ".join(IMAGE_FORMATS)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"expected encoded image bytes. Received: {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ValueError(f"expected an image in {formats}. Received: an empty file (0 bytes)")
    refusal = None
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            if kind in _READABLE:
                image.seek(0)
                refusal = tf_decoding_problem(data, kind, image.mode, image.size)
                if refusal is None:
                    rgb = _rgb(image)
    except UnidentifiedImageError:
        signature = next((k for k, s in _SIGNATURES.items() if data.startswith(s)), None)
        raise ValueError(
            f"expected an image in {formats}. Received: "
            + (
                f"{len(data)} bytes that start as a {signature} image but do not read as one"
                if signature
                else f"an unknown format, starting {data[:8]!r}"
            )
        ) from None
    except Image.DecompressionBombError as error:
        raise ValueError(
            "expected an image within Pillow's decompression-bomb limit (PIL.Image."
            f"MAX_IMAGE_PIXELS × 2 pixels). Received: {error}"
        ) from None
    except Image.DecompressionBombWarning as warning:  # under warnings-as-errors
        raise ValueError(
            "expected an image within Pillow's decompression-bomb warning limit (PIL.Image."
            f"MAX_IMAGE_PIXELS, with warnings as errors). Received: {warning}"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(
            f"expected a readable {formats} image. Received: bytes that fail to decode ({error})"
        ) from None
    if kind not in _READABLE:
        raise ValueError(
            f"expected an image in {formats} (the formats a served model decodes). "
            f"Received: a {kind} image"
        )
    if refusal is not None:
        raise ValueError(refusal)
    return rgb if channels == 3 else grayscale(rgb[np.newaxis])[0]


_SIGNATURES = {
    "PNG": b"\x89PNG\r\n\x1a\n",
    "JPEG": b"\xff\xd8\xff",
    "GIF": b"GIF8",
    "BMP": b"BM",
}
"""How the files of each format served begin (to name a damaged one)."""


def _rgb(image: Any) -> np.ndarray[Any, Any]:
    """An open Pillow image's pixels as uint8 RGB, as TF decodes them."""
    if image.mode.startswith("I"):  # 16-bit grayscale PNG ("I;16", or "I"): the high byte
        gray = np.clip(np.asarray(image).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., np.newaxis], 3, axis=-1)
    transparency = image.info.get("transparency")
    if image.format == "GIF" and isinstance(transparency, int) and image.mode in ("P", "L"):
        # TF paints the transparent pixels of a GIF's first frame black.
        rgb = np.array(image.convert("RGB"), dtype=np.uint8)
        rgb[np.asarray(image) == transparency] = 0
        return rgb
    if image.mode == "P" and isinstance(transparency, bytes):
        # A palette with alpha values: through RGBA, which Pillow converts without
        # warning ("Palette images with Transparency expressed in bytes ..."); the
        # same colors.
        image = image.convert("RGBA")
    if image.mode != "RGB":  # (converting an RGB image would copy it whole)
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def decode_rgb_tf(data: tf.Tensor) -> tf.Tensor:
    """Decode one encoded image (a scalar ``tf.string``) to uint8 RGB (h, w, 3) with TF ops.

    The serving twin of :func:`decode_one`: JPEG with the accurate integer DCT, as Pillow
    decodes it (``tf.io.decode_image`` uses the fast DCT, up to 10 levels off); PNG, GIF
    (first frame) and BMP with ``tf.io.decode_image``. For use in ``tf.map_fn`` over a
    batch of encoded images.

    Example:
        >>> import tensorflow as tf
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (5, 3), (200, 30, 90)).save(buffer, "JPEG")
        >>> pixels = decode_rgb_tf(tf.constant(buffer.getvalue())).numpy()
        >>> pixels.shape, bool((pixels == decode_one(buffer.getvalue(), 3)).all())
        ((3, 5, 3), True)
    """
    import tensorflow as tf

    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )


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
    # The four neighbours of each output pixel, gathered before the cast to float32: a
    # 48 MP photo resized to a model's input is never converted whole (576 MB).
    rows_top, rows_bottom = images[:, top], images[:, bottom]
    top_left, top_right = (rows_top[:, :, i].astype(np.float32) for i in (left, right))
    bottom_left, bottom_right = (rows_bottom[:, :, i].astype(np.float32) for i in (left, right))
    x_lerp = x_lerp[np.newaxis, np.newaxis, :, np.newaxis]
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    out = upper + (lower - upper) * y_lerp[np.newaxis, :, np.newaxis, np.newaxis]
    return _restore(out, images.dtype)


def grayscale(images: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """RGB batch (n, h, w, 3) → (n, h, w, 1) with :data:`GRAY_WEIGHTS`; keep the dtype.

    Example:
        >>> grayscale(np.full((1, 1, 1, 3), 200, "uint8")).ravel().tolist()
        [200]
    """
    out = np.empty((*images.shape[:-1], 1), images.dtype)
    w = [np.float32(v) for v in GRAY_WEIGHTS]
    pixels_per_row = max(1, images.shape[0] * images.shape[2])
    rows = max(1, _GRAY_CHUNK_PIXELS // pixels_per_row)
    for start in range(0, images.shape[1], rows):  # bounded float32 temporaries
        x = images[:, start : start + rows].astype(np.float32, copy=False)
        luma = (x[..., 0] * w[0] + x[..., 1] * w[1]) + x[..., 2] * w[2]
        out[:, start : start + rows] = _restore(luma[..., np.newaxis], images.dtype)
    return out


_GRAY_CHUNK_PIXELS = 1 << 20
"""Pixels :func:`grayscale` converts at a time (its float32 temporaries: about 20 MB)."""


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
            image = decode_rgb_tf(data)
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
