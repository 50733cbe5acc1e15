"""Uploaded images: check that bytes are an image TensorFlow can decode, before batching them.

A file that is not an image must fail alone, with a 400 naming it, not inside a batch
of other requests' images. The check reads only the file's header (Pillow's
``Image.open`` and ``verify``), never its pixels, so it costs the same for any size.
"""

from __future__ import annotations

import io
import struct
import warnings

from rxpipe.errors import PredictionInputError

__all__ = ["DEFAULT_MAX_BATCH_PIXELS", "DEFAULT_MAX_IMAGE_PIXELS", "IMAGE_FORMATS", "check_image"]

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP")  # what tf.io.decode_image reads
_ALSO_JPEG = frozenset({"MPO"})  # a JPEG with more pictures after it (phone cameras): TF
# decodes its first picture, as Pillow and process.decode_image do

DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
"""The server's default cap on an uploaded image's width × height.

A few kilobytes of PNG can declare a huge image (its pixels compress to nothing), and
TensorFlow decodes it whole before any resize: 3 bytes a pixel as RGB, so 243 MB for
81 MP, which Pillow's own bomb limit (about 89 MP) lets through. 50 MP admits the
largest photos phones take (48 MP modes are 8000×6000, 50 MP ones 8160×6120 = 49.9 MP)
and bounds one image's decoded pixels to 150 MB (200 MB with alpha); a smaller cap
would refuse those photos, a larger one buys nothing a model's input of a few hundred
pixels a side needs.
"""

DEFAULT_MAX_BATCH_PIXELS = 100_000_000
"""The server's default cap on the pixels of the uploaded images in one model call.

The exported model decodes a call's images with ``tf.map_fn``, up to 10 at once (fewer
on a machine with fewer cores), each whole before its resize: about 15 bytes a pixel
in flight for an RGB model, 25 for a grayscale one (measured: 740 MB and 1.1 GB for a
49 MP photo). Counting images alone, a call of 32 such photos would peak at 8.4 GB on
a machine of 16 cores. Budgeted by pixels, a call holds at most 100 MP (two 50 MP
photos, or hundreds of ordinary ones), so decoding needs at most about 1.5 GB (RGB)
or 2.5 GB (grayscale) whatever the cores and the requests; an image over the budget
runs alone.
"""

# TensorFlow's BMP decoder reads a BITMAPINFOHEADER's fields at fixed offsets, takes
# bits per pixel / 8 as the channels (1, 3 or 4: 8, 24 or 32 bits) and copies the pixel
# bytes as they are: no palette, no run-length compression.
_BMP_BITS = (8, 24, 32)
_BMP_COMPRESSIONS = {0: "none", 1: "RLE8", 2: "RLE4", 3: "bit fields", 4: "JPEG", 5: "PNG"}
_BMP_READABLE_COMPRESSIONS = (0, 3)


def check_image(data: bytes | str, filename: str, max_pixels: int | None = None) -> int:
    """The pixels (width × height) of ``data``, an image TensorFlow decodes; else raise
    :class:`PredictionInputError`.

    That is a PNG, JPEG, GIF or BMP image; a BMP of 8 bits a pixel in shades of gray, or
    of 24 or 32 bits, without compression (TensorFlow's BMP decoder reads no other);
    and, with ``max_pixels``, of at most that many pixels (width × height, read from
    the header). The server answers these errors with 400, not 413: the body is within
    the size limit, the image it holds is not a valid input.

    Args:
        data: the encoded image.
        filename: the file's name (or the input's place, e.g. ``images[3]``) for errors.
        max_pixels: the most pixels an image may have; ``None``: only Pillow's own
            decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 MP).
            Pillow refuses images over twice its limit (179 MP) whatever this says.

    Returns:
        The image's width × height, read from its header (the batcher budgets model
        calls by it).

    Raises:
        PredictionInputError: naming ``filename``, what was expected and received.

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
            # With a cap of our own, Pillow's warning (over about 89 MP) is not an error:
            # the cap below decides, naming the image's size.
            if max_pixels is None:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
            else:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format
                width, height = image.size
                mode = image.mode
                image.verify()
    except UnidentifiedImageError:
        raise PredictionInputError(
            f"{filename}: expected an image ({', '.join(IMAGE_FORMATS)}). "
            f"Received: {len(data)} bytes that no image reader recognises"
        ) from None
    except Image.DecompressionBombError as error:
        cap = "" if max_pixels is None else f"at most {max_pixels} pixels, "
        raise PredictionInputError(
            f"{filename}: expected an image of {cap}at most Pillow's limit. Received: {error}"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as error:
        raise PredictionInputError(
            f"{filename}: expected a readable image ({', '.join(IMAGE_FORMATS)}). "
            f"Received: {len(data)} bytes that fail to read ({type(error).__name__}: {error})"
        ) from None
    if kind not in IMAGE_FORMATS and kind not in _ALSO_JPEG:
        raise PredictionInputError(
            f"{filename}: expected an image in {', '.join(IMAGE_FORMATS)}. Received: {kind}"
        )
    if max_pixels is not None and width * height > max_pixels:
        raise PredictionInputError(
            f"{filename}: expected an image of at most {max_pixels} pixels (width × height). "
            f"Received: {width}×{height} = {width * height} pixels"
        )
    if kind == "BMP":
        _check_bmp(data, mode, filename)
    return int(width * height)


def _check_bmp(data: bytes, mode: str, filename: str) -> None:
    """Refuse a BMP that TensorFlow's decoder rejects or decodes to the wrong pixels.

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("1", (4, 4)).save(buffer, "BMP")
        >>> _check_bmp(buffer.getvalue(), "1", "scan.bmp")
        Traceback (most recent call last):
        ...
        rxpipe.errors.PredictionInputError: scan.bmp: expected a BMP image of 8 (gray), 24 or \
32 bits per pixel, uncompressed (what TensorFlow decodes). Received: a BMP of 1 bit per pixel
    """
    expected = (
        f"{filename}: expected a BMP image of 8 (gray), 24 or 32 bits per pixel, uncompressed "
        "(what TensorFlow decodes). Received: "
    )
    (header_size,) = struct.unpack_from("<I", data, 14)  # Pillow has read this far
    if header_size < 40:
        raise PredictionInputError(f"{expected}an OS/2 BMP ({header_size}-byte header)")
    bits, compression = struct.unpack_from("<HI", data, 28)
    if bits not in _BMP_BITS:
        raise PredictionInputError(f"{expected}a BMP of {bits} bit{'s' * (bits != 1)} per pixel")
    if compression not in _BMP_READABLE_COMPRESSIONS:
        how = _BMP_COMPRESSIONS.get(compression, f"unknown ({compression})")
        raise PredictionInputError(f"{expected}a BMP with {how} compression")
    if bits == 8 and mode == "P":  # Pillow says "L" for a palette of the 256 grays in order
        raise PredictionInputError(
            f"{expected}an 8-bit BMP with a color palette (TensorFlow would read its "
            "palette indices as gray levels)"
        )
