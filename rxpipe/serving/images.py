"""Uploaded images: check that bytes are an image TensorFlow can decode, before batching them.

A file that is not an image must fail alone, with a 400 naming it, not inside a batch
of other requests' images. The check reads the file's header (Pillow's ``Image.open``
and, but for a PNG, ``verify``), never its pixels, so it costs about the same for any
size; of a JPEG it also walks the markers to the end-of-image marker (a few
milliseconds for a 14 MB photo), of a PNG its chunks to IEND, checking their CRCs (2 ms
for 14 MB), and of a GIF its blocks to the end of the first frame, so that a truncated
file is refused as training refuses it, before TensorFlow decodes it (and logs
``Premature end of JPEG data`` on standard error).
"""

from __future__ import annotations

import io
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator

from rxpipe.errors import PredictionInputError

__all__ = [
    "DEFAULT_MAX_BATCH_PIXELS",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "IMAGE_FORMATS",
    "check_image",
    "gif_frames",
    "tf_decoding_problem",
]

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


_WARNING_FILTERS = threading.Lock()


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
        # catch_warnings swaps the process's warning filters: one thread at a time (the
        # server checks images on its event loop and in worker threads)
        with _WARNING_FILTERS, warnings.catch_warnings():
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
                if kind != "PNG":  # a PNG's chunks are checked below, as TensorFlow reads
                    image.verify()  # them (what verify checks, and IEND's CRC)
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
    problem = tf_decoding_problem(data, kind, mode, (width, height))
    if problem is not None:
        raise PredictionInputError(f"{filename}: {problem}")
    return int(width * height)


def tf_decoding_problem(data: bytes, kind: str, mode: str, size: tuple[int, int]) -> str | None:
    """Why TensorFlow's decoder would refuse an image Pillow opened, or decode other pixels
    than Pillow does; ``None`` if it decodes it alike.

    Training (``process.decode_image``) and serving both refuse such images: a model must
    not be served other pixels than it was trained on. BMP: TensorFlow reads 8 (gray), 24
    and 32 bits a pixel, uncompressed, and no palette. GIF: TensorFlow decodes the first
    frame on a canvas of that frame's size, so a first frame that does not fill the image
    (or a frame larger than it) gives other pixels. JPEG (and MPO, read as its first
    JPEG): the data must reach the image's end-of-image marker, after a scan; a
    truncated file fails in Pillow (training) and in TensorFlow (serving, which logs
    ``Premature end of JPEG data`` on standard error), so it is refused here first, from
    its bytes, before either decodes it. PNG: every chunk through IEND must be whole,
    with its CRC (TensorFlow refuses a file missing even IEND's last byte, Pillow decodes
    one missing up to about 20). GIF: the first frame's blocks must be whole (TensorFlow
    refuses a file missing that frame's last byte, Pillow decodes it).

    Args:
        data: the encoded image.
        kind: its format as Pillow names it (``"BMP"``, ``"GIF"``, ...).
        mode: its Pillow mode (``"L"``, ``"P"``, ``"RGB"``...).
        size: its (width, height).

    Returns:
        ``"expected X. Received: Y"``, or ``None``.

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("1", (4, 4)).save(buffer, "BMP")
        >>> tf_decoding_problem(buffer.getvalue(), "BMP", "1", (4, 4))
        'expected a BMP image of 8 (gray), 24 or 32 bits per pixel, uncompressed (what TensorFlow decodes). Received: a BMP of 1 bit per pixel'
    """  # noqa: E501
    if kind == "BMP":
        return _bmp_problem(data, mode)
    if kind == "GIF":
        return _gif_problem(data, size)
    if kind == "JPEG" or kind in _ALSO_JPEG:
        return _jpeg_problem(data)
    if kind == "PNG":
        return _png_problem(data)
    return None


_PNG_CHUNK_TYPE = re.compile(rb"[A-Za-z]{4}")


def _png_problem(data: bytes) -> str | None:
    """Why a PNG's data does not hold a whole image as TensorFlow reads it: it ends before
    the end of its IEND chunk, or a chunk before that is damaged (its CRC does not match,
    or its type is not 4 letters); ``None`` if it holds one.

    Walks the chunks by their lengths from the signature to IEND, as libpng (serving)
    does; data after IEND is not read. libpng refuses a file missing even IEND's last
    byte, or with a critical chunk's CRC wrong; Pillow (training) decodes both, as long
    as the pixel data is all there (a file missing up to about 20 bytes: IEND, the pixel
    data's CRC, the end of its zlib stream). Ancillary chunks
    with a wrong CRC are refused too, as Pillow refuses them (when it opens a file, or
    ``verify`` after the pixel data). Reads bytes, no pixels: about 2 ms for 14 MB.

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (16, 16), (200, 30, 90)).save(buffer, "PNG")
        >>> png = buffer.getvalue()
        >>> _png_problem(png) is None, _png_problem(png + b"more") is None
        (True, True)
        >>> _png_problem(png[:-1])
        'expected a complete PNG image (its chunks through IEND). Received: ... bytes that \
end before the image does (a truncated file)'
    """
    view = memoryview(data)
    position, end = 8, len(data)  # past the signature
    while position + 12 <= end:  # a chunk: length, type, data, CRC
        length = int.from_bytes(view[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if not _PNG_CHUNK_TYPE.fullmatch(kind):
            return (
                "expected a PNG image made of chunks (each named by 4 letters). Received: "
                f"{end} bytes with a chunk named {kind!r} at byte {position} (a damaged file)"
            )
        crc_at = position + 8 + length
        if crc_at + 4 > end:
            break
        if zlib.crc32(view[position + 4 : crc_at]) != int.from_bytes(
            view[crc_at : crc_at + 4], "big"
        ):
            return (
                "expected a PNG image with intact chunks (each chunk's CRC matching its "
                f"data). Received: {end} bytes whose {kind.decode()} chunk at byte "
                f"{position} fails its CRC (a damaged file)"
            )
        if kind == b"IEND":
            return None
        position = crc_at + 4
    return _truncated("PNG", "its chunks through IEND", end)


_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
"""A marker in a scan's entropy-coded data: 0xFF, then neither a stuffed 0x00, a restart
marker (0xD0-0xD7) nor another fill byte 0xFF."""
_JPEG_EOI, _JPEG_SOS = 0xD9, 0xDA
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # markers without a length


def _jpeg_problem(data: bytes) -> str | None:
    """Why a JPEG's data does not hold a whole image: it ends before its end-of-image
    marker (EOI), or reaches it before any scan; ``None`` if it holds one.

    Walks the segments by their lengths (an EXIF thumbnail's own EOI, inside its APP1
    segment, is skipped with it) and each scan's entropy-coded data to the marker that
    ends it, as libjpeg does. Data after the EOI (the further pictures of an MPO file,
    padding) is not read. Reads bytes, no pixels: the scans are searched by a regular
    expression, a few milliseconds for a 14 MB photo.

    Pillow (training) fails on a file that ends before its EOI ("image file is
    truncated"); TensorFlow (serving) fails on it too, but not always (a file missing
    only the EOI's last byte decodes), and logs ``Premature end of JPEG data`` or
    ``Input file read error`` on standard error. Refused here, by both, before either
    decodes it.

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (16, 16), (200, 30, 90)).save(buffer, "JPEG")
        >>> jpeg = buffer.getvalue()
        >>> _jpeg_problem(jpeg) is None, _jpeg_problem(jpeg + b"more") is None
        (True, True)
        >>> _jpeg_problem(jpeg[:-2])
        'expected a complete JPEG image (its data through the end-of-image marker). \
Received: ... bytes that end before the image does (a truncated file)'
    """
    position, end, scans = 2, len(data), 0  # past the start-of-image marker
    while True:
        position = data.find(b"\xff", position)  # libjpeg skips stray bytes before a marker
        if position < 0:
            break
        while position + 1 < end and data[position + 1] == 0xFF:  # fill bytes
            position += 1
        if position + 1 >= end:
            break
        marker = data[position + 1]
        position += 2
        if marker == _JPEG_EOI:
            if scans:
                return None
            return (
                "expected a JPEG image with image data (a scan before its end-of-image "
                f"marker). Received: {len(data)} bytes whose image ends before any scan"
            )
        if marker == 0x00 or marker in _JPEG_STANDALONE:
            continue
        if position + 2 > end:
            break
        position += int.from_bytes(data[position : position + 2], "big")
        if marker == _JPEG_SOS:  # the scan's data runs to the next marker
            scans += 1
            found = _JPEG_MARKER.search(data, position)
            if found is None:
                break
            position = found.start()
    return _truncated("JPEG", "its data through the end-of-image marker", len(data))


def _truncated(kind: str, through: str, size: int) -> str:
    """The refusal of an image file cut off before its end."""
    return (
        f"expected a complete {kind} image ({through}). Received: {size} bytes that end "
        "before the image does (a truncated file)"
    )


def _bmp_problem(data: bytes, mode: str) -> str | None:
    expected = (
        "expected a BMP image of 8 (gray), 24 or 32 bits per pixel, uncompressed "
        "(what TensorFlow decodes). Received: "
    )
    (header_size,) = struct.unpack_from("<I", data, 14)  # Pillow has read this far
    if header_size < 40:
        return f"{expected}an OS/2 BMP ({header_size}-byte header)"
    bits, compression = struct.unpack_from("<HI", data, 28)
    if bits not in _BMP_BITS:
        return f"{expected}a BMP of {bits} bit{'s' * (bits != 1)} per pixel"
    if compression not in _BMP_READABLE_COMPRESSIONS:
        how = _BMP_COMPRESSIONS.get(compression, f"unknown ({compression})")
        return f"{expected}a BMP with {how} compression"
    if bits == 8 and mode == "P":  # Pillow says "L" for a palette of the 256 grays in order
        return (
            f"{expected}an 8-bit BMP with a color palette (TensorFlow would read its "
            "palette indices as gray levels)"
        )
    return None


def _gif_problem(data: bytes, size: tuple[int, int]) -> str | None:
    """Why TensorFlow would refuse a GIF Pillow opened, or decode other pixels; ``None``
    if it decodes it alike.

    The first frame's blocks must be whole, through the terminator of its pixel data:
    TensorFlow (giflib) refuses a file missing that last byte, Pillow decodes it. What
    follows the first frame may be cut off (a later frame, the trailer): both decode the
    first frame alike (TensorFlow logs ``failed to slurp gif file`` on standard error).
    """
    first_end = next((stop for start, stop in _gif_blocks(data) if data[start] == 0x2C), None)
    if first_end is None or first_end > len(data):
        return _truncated("GIF", "its first frame's data through its last block", len(data))
    frames = gif_frames(data)
    width, height = size
    if frames and frames[0] != (0, 0, width, height):
        left, top, frame_width, frame_height = frames[0]
        return (
            "expected a GIF whose first frame fills the image (TensorFlow decodes "
            "another canvas for others). Received: a first frame of "
            f"{frame_width}×{frame_height} at ({left}, {top}) in a {width}×{height} image"
        )
    larger = [f for f in frames if f[2] > width or f[3] > height]
    if larger:
        return (
            f"expected a GIF whose frames fit its {width}×{height} image (TensorFlow "
            f"decodes a larger canvas for others). Received: a frame of "
            f"{larger[0][2]}×{larger[0][3]}"
        )
    return None


def gif_frames(data: bytes) -> list[tuple[int, int, int, int]]:
    """Each frame's (left, top, width, height) in a GIF, from its image descriptors.

    Reads the block structure only (no pixels); stops at the trailer or at the end of
    the data (Pillow has read the file by then; a damaged tail fails there).

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("P", (5, 3)).save(buffer, "GIF")
        >>> gif_frames(buffer.getvalue())
        [(0, 0, 5, 3)]
    """
    frames: list[tuple[int, int, int, int]] = []
    try:
        for start, _ in _gif_blocks(data):
            if data[start] == 0x2C:
                left, top, width, height = struct.unpack_from("<4H", data, start + 1)
                frames.append((left, top, width, height))
    except (IndexError, struct.error):  # a damaged tail: the frames read so far
        pass
    return frames


def _gif_blocks(data: bytes) -> Iterator[tuple[int, int]]:
    """Where each block of a GIF (an image or an extension) starts, and where it stops:
    past the terminator of its sub-blocks, or past the end of ``data`` if it is cut off.

    Ends at the trailer (0x3B), at a byte that starts no block, or at the end of the data.
    """
    flags, end = data[10], len(data)
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while position < end:
        start, block = position, data[position]
        if block == 0x2C:  # image descriptor, color table, LZW code size, sub-blocks
            local = data[position + 9] if position + 9 < end else 0
            position += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        elif block == 0x21:  # extension: label, then sub-blocks
            position += 2
        else:  # the trailer (0x3B), or not a block
            return
        while position < end and data[position]:  # sub-blocks, to the terminator
            position += data[position] + 1
        position += 1
        yield start, position
