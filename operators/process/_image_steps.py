"""Image preprocessors: decode, resize, grayscale, with matching numpy and TensorFlow code.

The TensorFlow side runs in the exported model's serving signature, and in the data
pipeline too: ``process.decode_image`` decodes each batch with it
(:meth:`DecodeImage.decode_batch`, about 0.85 ms of CPU a 640×480 JPEG resized, against
1.4 ms the other way). The numpy side (Pillow for decoding, numpy for resizing) is the
reference, and the path for what the batch path leaves: an image over a call's memory
budget, a batch with a bad image (to name it), and ``process.resize`` and
``process.grayscale``. They compute the same thing: resizing follows
``tf.image.resize`` (half-pixel centres) step for step, and grayscale uses the same
weights and rounding, so a served model sees what the trained one saw, bit for bit.
JPEG is decoded on both sides with the accurate integer DCT (Pillow's only one;
``dct_method="INTEGER_ACCURATE"`` in TF, whose default fast DCT is up to 10 levels
off), and 16-bit PNG keeps the high byte of each value on both sides (TF's libpng
reduction). Only the formats serving decodes are accepted
(:data:`rxpipe.serving.images.IMAGE_FORMATS`: PNG, JPEG, GIF, BMP), and of those only
what TF decodes to the same pixels: a GIF's transparent pixels are black (TF's
first frame), a GIF whose first frame does not fill the image and a BMP that TF
misreads or refuses (1, 4 or 16 bits a pixel, a color palette, RLE) are refused. EXIF
orientation is applied on neither side: a photo stored sideways is learnt and served
sideways, the same pixels both times.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import numpy as np

from rxpipe.serving.images import IMAGE_FORMATS, tf_decoding_problem
from rxpipe.tf_import import import_tensorflow

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
    "image_size",
    "resize",
]

_T = TypeVar("_T")

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
    rgb = _read(data, _rgb)
    return rgb if channels == 3 else grayscale(rgb[np.newaxis])[0]


def image_size(data: bytes) -> tuple[int, int]:
    """The (height, width) :func:`decode_one` decodes ``data`` to, read from its header.

    Checks what :func:`decode_one` checks but the pixel data itself (its format, Pillow's
    decompression-bomb limit, what TF would decode otherwise), with the same errors, in
    a few microseconds whatever the image's size: Pillow's ``Image.open`` reads the
    header only.

    Raises:
        ValueError: as :func:`decode_one` does, bar a failure in the pixel data.

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (6, 4)).save(buffer, "BMP")
        >>> image_size(buffer.getvalue())
        (4, 6)
    """
    return _read(data, lambda image: (image.size[1], image.size[0]))


def _read(data: bytes, read: Callable[[Any], _T]) -> _T:
    """``read`` of ``data`` opened with Pillow, once it passes the checks; else ValueError.

    Pillow's errors in ``read`` (decoding the pixels) become ValueError too.
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
                    out = read(image)
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
    return out


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
    if method == "nearest":
        top, _, _ = _axis(height, size[0], method)
        left, _, _ = _axis(width, size[1], method)
        return images[:, top][:, :, left]
    rows, corners, x_lerp, y_lerp = _bilinear_plan(height, width, size[0], size[1])
    # The four neighbours of each output pixel, gathered before the cast to float32 (a
    # 48 MP photo resized to a model's input is never converted whole: 576 MB): first
    # the rows they lie on, then, in one take, the pixels of those rows.
    n, channels = images.shape[0], images.shape[3]
    lines = images[:, rows].reshape(n, -1, channels)
    gathered = lines.take(corners, axis=1).astype(np.float32)
    top_left, top_right, bottom_left, bottom_right = gathered.reshape(
        n, 4, size[0], size[1], channels
    ).swapaxes(0, 1)
    # In place, in tf.image.resize's order: top + (bottom - top) * y_lerp, each of
    # top and bottom left + (right - left) * x_lerp.
    top_right -= top_left
    top_right *= x_lerp
    top_right += top_left
    bottom_right -= bottom_left
    bottom_right *= x_lerp
    bottom_right += bottom_left
    bottom_right -= top_right
    bottom_right *= y_lerp
    bottom_right += top_right
    if np.issubdtype(images.dtype, np.integer):
        info = np.iinfo(images.dtype)
        np.round(bottom_right, out=bottom_right)
        np.clip(bottom_right, info.min, info.max, out=bottom_right)
    out: np.ndarray[Any, Any] = bottom_right.astype(images.dtype)  # (not a view of all 4)
    return out


@functools.lru_cache(maxsize=64)
def _bilinear_plan(
    height: int, width: int, out_height: int, out_width: int
) -> tuple[np.ndarray[Any, Any], ...]:
    """What :func:`resize` gathers for one pair of sizes (read-only, cached): the input
    rows the output's lie between (top rows, then bottom rows); in those rows, the flat
    index of each output pixel's top-left, top-right, bottom-left and bottom-right
    neighbour; and the weights along x and y, shaped to broadcast over (h, w, c)."""
    top, bottom, y_lerp = _axis(height, out_height, "bilinear")
    left, right, x_lerp = _axis(width, out_width, "bilinear")
    row = np.arange(out_height)[:, np.newaxis] * width
    corners = [row + left, row + right, row + out_height * width + left]
    corners.append(corners[2] - left + right)
    plan = (
        np.concatenate([top, bottom]),
        np.stack(corners).ravel(),
        x_lerp[np.newaxis, :, np.newaxis],
        y_lerp[:, np.newaxis, np.newaxis],
    )
    for array in plan:
        array.flags.writeable = False
    return plan


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

    def decode_batch(self, items: Sequence[Any]) -> np.ndarray[Any, Any] | None:
        """Decode a batch with TensorFlow, in the graph :meth:`apply_tf` exports; stacked.

        The pixels of :meth:`apply` (the reference, one image at a time with Pillow and
        numpy), computed as the exported model computes them, a few times faster: one
        compiled call decodes and resizes many images without the GIL. Each image's
        header is checked first, as :meth:`decode` checks it (:func:`image_size`). An
        image too large for one call's memory budget (:data:`_TF_CALL_BYTES`) is decoded
        alone by :meth:`decode`, whose memory is bounded per image; the others in calls
        of at most that budget.

        Args:
            items: encoded images.

        Returns:
            uint8 images (n, height, width, channels); ``None`` when the batch must be
            decoded one image at a time by :meth:`decode`, which names the failing one:
            an image fails a check, TensorFlow fails on one (damaged pixel data), or,
            without ``size``, the images are not all of one size.

        Example:
            >>> from PIL import Image
            >>> buffer = io.BytesIO()
            >>> Image.new("RGB", (5, 3), (255, 0, 0)).save(buffer, "PNG")
            >>> DecodeImage(channels=1, size=(2, 2)).decode_batch([buffer.getvalue()] * 4).shape
            (4, 2, 2, 1)
            >>> DecodeImage().decode_batch([buffer.getvalue(), b"not an image"]) is None
            True
        """
        try:
            sizes = [image_size(item) for item in items]
        except ValueError:
            return None
        if not sizes or (self.size is None and len(set(sizes)) > 1):
            return None
        budget = _TF_CALL_BYTES // _TF_BYTES_PER_PIXEL[self.channels]  # pixels a call
        out = np.empty((len(sizes), *(self.size or sizes[0]), self.channels), np.uint8)
        calls: list[list[int]] = [[]]
        pixels = 0
        for index, (height, width) in enumerate(sizes):
            if height * width > budget:
                try:
                    out[index] = self.decode(items[index])
                except ValueError:
                    return None
                continue
            if pixels + height * width > budget:
                calls.append([])
                pixels = 0
            calls[-1].append(index)
            pixels += height * width
        tf = import_tensorflow()
        for call in calls:
            if not call:
                continue
            try:
                images = _decode_tf(self, [bytes(items[index]) for index in call])
            except tf.errors.OpError:
                return None
            if images.shape[1:] != out.shape[1:]:  # (TF's size unlike the header's)
                return None
            if len(call) == len(out):
                return images
            out[call] = images
        return out

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


_TF_CALL_BYTES = 256 << 20
"""The most memory one TensorFlow call of :meth:`DecodeImage.decode_batch` takes: its
images' pixels × :data:`_TF_BYTES_PER_PIXEL` (``tf.map_fn`` decodes up to 10 at once on
a machine of many cores, each whole before its resize). A 640×480 batch of 64 RGB photos
is one call (20 MP); an image over the budget (21 MP in RGB, 8 MP in gray) is decoded
alone with Pillow and resized with numpy, whose memory is bounded per image."""

_TF_BYTES_PER_PIXEL = {3: 12, 1: 32}
"""What a pixel of an image in a call of :meth:`DecodeImage.apply_tf` takes at most, by
channels (measured as the growth of resident memory on 12 MP JPEGs: RGB about 4 bytes
resized, 10 not resized, with the stacked output; gray 26-30, for its float32 copies of
the RGB image)."""

_TF_DECODERS: dict[DecodeImage, Any] = {}
"""Each step's :meth:`DecodeImage.apply_tf` as a ``tf.function`` of a batch of encoded
images (``[None]`` strings), traced once."""
_TF_DECODERS_LOCK = threading.Lock()


def _decode_tf(step: DecodeImage, items: list[bytes]) -> np.ndarray[Any, Any]:
    """``step.apply_tf`` of ``items`` in one compiled call; raises ``tf.errors.OpError``.

    Safe to call from many threads at once: the function is traced once, under a lock,
    then run concurrently (each call on TensorFlow's own thread pool, without the GIL).
    """
    decoder = _TF_DECODERS.get(step)
    if decoder is None:
        with _TF_DECODERS_LOCK:
            decoder = _TF_DECODERS.get(step)
            if decoder is None:
                tf = import_tensorflow()

                def on_host(items: Any) -> Any:
                    with tf.device("/CPU:0"):  # data work: not on an accelerator, as tf.data
                        return step.apply_tf(items)

                strings = tf.TensorSpec([None], tf.string)
                decoder = tf.function(on_host, input_signature=[strings])
                decoder.get_concrete_function()  # trace it now, once
                _TF_DECODERS[step] = decoder
    tf = import_tensorflow()
    return decoder(tf.constant(items, tf.string)).numpy()  # type: ignore[no-any-return]


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
