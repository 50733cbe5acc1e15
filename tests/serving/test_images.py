"""Uploaded images the model cannot take: refused alone, before decoding, naming the file."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from typing import Any

import httpx
import pytest

from rxpipe.serving import Bundle
from rxpipe.serving.app import create_app

from .test_raw_kinds import call

pytestmark = pytest.mark.slow


def encoded(mode: str, size: tuple[int, int], kind: str = "PNG") -> bytes:
    """A blank image of ``mode`` and ``size`` (width, height) encoded as ``kind``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, kind)
    return buffer.getvalue()


def upload(digits_bundle: Any, filename: str, data: bytes, **options: Any) -> httpx.Response:
    """POST one file to /predict of an in-process server on the digits bundle."""
    app, handlers = create_app(Bundle.load(digits_bundle.run_dir), **options)
    try:
        files = {"image": (filename, data, "application/octet-stream")}
        [answer] = asyncio.run(call(app, ("POST", "/predict", {"files": files})))
    finally:
        handlers.batcher.close()
    return answer


def test_an_image_over_the_pixel_cap_is_a_400_naming_its_size(digits_bundle: Any) -> None:
    """A 9000×9000 PNG of 10 kB (81 MP: under Pillow's bomb limit, 243 MB decoded) is refused
    from its header by the default cap, naming the file, its size and the cap."""
    bomb = encoded("1", (9000, 9000))
    assert len(bomb) < 100_000
    answer = upload(digits_bundle, "bomb.png", bomb)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {
        "error": "bomb.png: expected an image of at most 50000000 pixels (width × height). "
        "Received: 9000×9000 = 81000000 pixels"
    }


def test_the_pixel_cap_is_a_create_app_parameter(digits_bundle: Any) -> None:
    """max_image_pixels=1000: 40×25 passes, 40×26 is refused."""
    assert upload(digits_bundle, "ok.png", encoded("L", (40, 25)), max_image_pixels=1000).is_success
    answer = upload(digits_bundle, "big.png", encoded("L", (40, 26)), max_image_pixels=1000)
    assert answer.status_code == 400
    assert answer.json()["error"].endswith("Received: 40×26 = 1040 pixels")


@pytest.mark.parametrize(
    ("mode", "received"),
    [
        ("1", "a BMP of 1 bit per pixel"),
        (
            "P",
            "an 8-bit BMP with a color palette (TensorFlow would read its palette indices "
            "as gray levels)",
        ),
    ],
)
def test_a_bmp_tensorflow_cannot_decode_is_refused_naming_the_file(
    digits_bundle: Any, mode: str, received: str
) -> None:
    """A 1-bit or color-palette BMP (Pillow reads both) is a 400 naming the file, not a model
    error naming serving_images."""
    from PIL import Image

    image = Image.new("RGB", (8, 8), (200, 30, 90)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "BMP")
    answer = upload(digits_bundle, "scan.bmp", buffer.getvalue())
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "scan.bmp: expected a BMP image of 8 (gray), 24 or 32 bits per pixel, "
        f"uncompressed (what TensorFlow decodes). Received: {received}"
    }


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_bmps_tensorflow_decodes_are_answered(digits_bundle: Any, mode: str) -> None:
    """8-bit gray, 24-bit and 32-bit BMPs pass the check and get labels."""
    answer = upload(digits_bundle, "ok.bmp", encoded(mode, (8, 8), "BMP"))
    assert answer.status_code == 200, answer.text


def corrupt_pixels(png: bytes) -> bytes:
    """``png`` with its pixel data replaced by bytes that do not inflate (CRCs kept valid)."""
    start = png.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png[start : start + 4])
    garbage = b"\x00" * length
    chunk = b"IDAT" + garbage
    idat = struct.pack(">I", length) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return png[:start] + idat + png[start + 12 + length :]


def test_an_image_the_model_refuses_is_named_by_its_file(digits_bundle: Any) -> None:
    """A PNG whose header reads but whose pixels do not: TensorFlow's refusal names the file."""
    from PIL import Image

    broken = corrupt_pixels(encoded("L", (8, 8)))
    Image.open(io.BytesIO(broken)).verify()  # the header check cannot tell
    answer = upload(digits_bundle, "broken.png", broken)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(
        "broken.png: expected input the model can compute on. Received: input it rejected ("
    )


def test_a_gif_tensorflow_would_decode_on_another_canvas_is_refused() -> None:
    """A 4×3 GIF whose only frame (2×2) lies at (1, 1): TensorFlow decodes a 2×2 canvas,
    so serving refuses it, as training does (process.decode_image)."""
    import numpy as np
    from PIL import Image

    from rxpipe.errors import PredictionInputError
    from rxpipe.serving.images import check_image

    frame = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8), "P")
    frame.putpalette([200, 100, 50, 10, 20, 30, 255, 255, 255, 0, 0, 255] + [0] * 756)
    buffer = io.BytesIO()
    frame.save(buffer, "GIF", optimize=False)
    data = bytearray(buffer.getvalue())
    descriptor = data.index(b",", 13 + 3 * 2 ** ((data[10] & 7) + 1))
    struct.pack_into("<HH", data, 6, 4, 3)  # the image: 4×3
    struct.pack_into("<HH", data, descriptor + 1, 1, 1)  # the frame at (1, 1)
    with pytest.raises(PredictionInputError) as info:
        check_image(bytes(data), "offset.gif")
    assert str(info.value) == (
        "offset.gif: expected a GIF whose first frame fills the image (TensorFlow decodes "
        "another canvas for others). Received: a first frame of 2×2 at (1, 1) in a 4×3 image"
    )
    assert check_image(buffer.getvalue(), "plain.gif") == 4  # a frame that fills it: 2×2


def jpeg(progressive: bool = False, exif_thumbnail: bool = False) -> bytes:
    """A 24×40 JPEG of noise (progressive, or with an EXIF thumbnail: a JPEG in its APP1
    segment, whose own end-of-image marker comes before the picture's data)."""
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(1).integers(0, 255, (24, 40, 3), dtype=np.uint8)
    options: dict[str, Any] = {"progressive": progressive}
    if exif_thumbnail:
        thumbnail = io.BytesIO()
        Image.fromarray(noise[:8, :8]).save(thumbnail, "JPEG")
        exif = Image.Exif()
        exif[0x010E] = "a thumbnail follows"
        options["exif"] = exif.tobytes() + thumbnail.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [jpeg(), jpeg(progressive=True), jpeg(exif_thumbnail=True)],
    ids=["baseline", "progressive", "exif-thumbnail"],
)
def test_a_jpeg_cut_anywhere_is_refused_by_training_and_serving_alike(data: bytes) -> None:
    """Cut at every byte: serving's check refuses exactly the cuts training's decoder
    refuses (none of them decodes whole), with the same reason once the header reads; the
    whole file, with bytes after its end, passes both."""
    from rxpipe.errors import PredictionInputError
    from rxpipe.operators.process._image_steps import decode_one
    from rxpipe.serving.images import check_image

    def served(part: bytes) -> str | None:
        try:
            check_image(part, "cut.jpg")
        except PredictionInputError as error:
            return str(error).removeprefix("cut.jpg: ")
        return None

    def trained(part: bytes) -> str | None:
        try:
            decode_one(part, 3)
        except ValueError as error:
            return str(error)
        return None

    for end in range(3, len(data)):
        refusal = served(data[:end])
        assert refusal is not None, f"a JPEG cut to {end} of {len(data)} bytes was accepted"
        assert trained(data[:end]) is not None
        if refusal.startswith("expected a complete JPEG"):
            assert trained(data[:end]) == refusal
    assert served(data[:-1]) == (
        "expected a complete JPEG image (its data through the end-of-image marker). "
        f"Received: {len(data) - 1} bytes that end before the image does (a truncated file)"
    )
    for whole in (data, data + b"\0" * 8, data + b"more pictures"):
        assert served(whole) is None
        assert trained(whole) is None


def test_a_jpeg_whose_only_scan_is_cut_off_names_it() -> None:
    """The header, then the end-of-image marker, and no image data between them."""
    from rxpipe.serving.images import tf_decoding_problem

    data = jpeg()
    header = data[: data.index(b"\xff\xda")] + b"\xff\xd9"
    assert tf_decoding_problem(header, "JPEG", "RGB", (40, 24)) == (
        "expected a JPEG image with image data (a scan before its end-of-image marker). "
        f"Received: {len(header)} bytes whose image ends before any scan"
    )


def test_an_uploaded_truncated_jpeg_is_a_400_and_tensorflow_logs_nothing(
    digits_bundle: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """The server refuses a truncated JPEG naming it, before TensorFlow's decoder would
    write "Premature end of JPEG data" on standard error (the process's, where
    TensorFlow's C++ code writes)."""
    data = jpeg()[:-100]  # the header reads: cut in the scan
    capfd.readouterr()
    answer = upload(digits_bundle, "cut.jpg", data)
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "cut.jpg: expected a complete JPEG image (its data through the end-of-image "
        f"marker). Received: {len(data)} bytes that end before the image does (a truncated "
        "file)"
    }
    assert "JPEG" not in capfd.readouterr().err


def noise(size: tuple[int, int] = (20, 12), seed: int = 2) -> Any:
    """An RGB image of noise of ``size`` (width, height)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), np.uint8)
    return Image.fromarray(pixels)


def saved(image: Any, kind: str, **options: Any) -> bytes:
    """``image`` encoded as ``kind`` with Pillow."""
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG chunk: length, type, data and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2)]
ADAM7.append((0, 1, 1, 2))
"""The passes of PNG's interlacing: each one's first column and row, and its steps."""


def interlaced_png(image: Any) -> bytes:
    """``image`` (RGB) as an Adam7-interlaced PNG (Pillow writes none)."""
    import numpy as np

    pixels = np.asarray(image)
    rows = b""
    for left, top, step_x, step_y in ADAM7:
        part = pixels[top::step_y, left::step_x]
        rows += b"".join(b"\0" + row.tobytes() for row in part if part.size)
    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8, 2, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def pngs() -> dict[str, bytes]:
    """PNGs of noise in each mode: RGB, RGBA, gray, 16-bit gray, palette, interlaced."""
    import numpy as np
    from PIL import Image

    rgb = noise()
    wide = np.asarray(rgb.convert("L")).astype(np.uint16) * 257
    rgba = rgb.copy()
    rgba.putalpha(rgb.convert("L"))
    return {
        "rgb": saved(rgb, "PNG"),
        "rgba": saved(rgba, "PNG"),
        "gray": saved(rgb.convert("L"), "PNG"),
        "16-bit": saved(Image.fromarray(wide), "PNG"),
        "palette": saved(rgb.quantize(16), "PNG"),
        "interlaced": interlaced_png(rgb),
    }


def gifs() -> dict[str, bytes]:
    """GIFs of noise: one frame, one frame with a transparent color, two frames."""
    palette = noise().quantize(16)
    second = palette.copy()
    second.paste(3, (4, 4, 12, 9))
    return {
        "single frame": saved(palette, "GIF"),
        "transparent": saved(palette, "GIF", transparency=2, optimize=False),
        "animated": saved(palette, "GIF", save_all=True, append_images=[second]),
    }


PNGS, GIFS = pngs(), gifs()


def served(data: bytes, filename: str = "cut") -> str | None:
    """Why serving's check refuses ``data`` (the message without the file's name), or None."""
    from rxpipe.errors import PredictionInputError
    from rxpipe.serving.images import check_image

    try:
        check_image(data, filename)
    except PredictionInputError as error:
        return str(error).removeprefix(f"{filename}: ")
    return None


def trained(data: bytes) -> str | None:
    """Why training's decoder (process.decode_image's, one image) refuses ``data``, or None."""
    from rxpipe.operators.process._image_steps import decode_one

    try:
        decode_one(data, 3)
    except ValueError as error:
        return str(error)
    return None


_SERVING_GRAPH: list[Any] = []


def tf_decoded(data: bytes) -> Any:
    """The pixels the exported model's graph decodes (``DecodeImage.apply_tf`` under
    ``tf.function``), or None if TensorFlow refuses ``data``."""
    import tensorflow as tf

    from rxpipe.operators.process._image_steps import DecodeImage

    if not _SERVING_GRAPH:
        strings = tf.TensorSpec([None], tf.string)
        _SERVING_GRAPH.append(tf.function(DecodeImage(3).apply_tf, input_signature=[strings]))
    try:
        return _SERVING_GRAPH[0](tf.constant([data])).numpy()[0]
    except tf.errors.InvalidArgumentError:
        return None


def assert_decoded_alike(data: bytes) -> None:
    """Training's decoder and the serving graph decode ``data`` to the same pixels."""
    import numpy as np

    from rxpipe.operators.process._image_steps import decode_one

    served_pixels = tf_decoded(data)
    assert served_pixels is not None
    np.testing.assert_array_equal(decode_one(data, 3), served_pixels)


TRUNCATED_PNG = (
    "expected a complete PNG image (its chunks through IEND). Received: {} bytes that end "
    "before the image does (a truncated file)"
)
TRUNCATED_GIF = (
    "expected a complete GIF image (its first frame's data through its last block). "
    "Received: {} bytes that end before the image does (a truncated file)"
)


@pytest.mark.parametrize("data", PNGS.values(), ids=PNGS.keys())
def test_a_png_cut_anywhere_is_refused_by_training_and_serving_alike(data: bytes) -> None:
    """Cut at every byte: serving's check and training's decoder both refuse, with the same
    reason once the header reads, as TensorFlow refuses each cut (a file missing IEND's
    last byte included; Pillow alone decoded those missing up to 20 bytes); the whole file,
    with bytes after IEND, passes both and decodes alike."""
    for end in range(8, len(data)):
        refusal = served(data[:end])
        assert refusal is not None, f"a PNG cut to {end} of {len(data)} bytes was accepted"
        assert trained(data[:end]) is not None, f"training decoded {end} of {len(data)} bytes"
        if refusal.startswith("expected a complete PNG"):
            assert trained(data[:end]) == refusal
    for cut in (1, 4, 5, 12, 16, 20, 21, 22, len(data) // 2):
        assert served(data[:-cut]) == TRUNCATED_PNG.format(len(data) - cut)
        assert tf_decoded(data[:-cut]) is None, f"TensorFlow decodes a PNG missing {cut} bytes"
    for whole in (data, data + b"\0" * 8, data + b"more", data + png_chunk(b"tEXt", b"a\0b")):
        assert served(whole) is None
        assert trained(whole) is None
        assert_decoded_alike(whole)


@pytest.mark.parametrize("chunk", [b"IDAT", b"IEND", b"tEXt"])
def test_a_png_whose_chunk_fails_its_crc_is_refused_by_training_and_serving_alike(
    chunk: bytes,
) -> None:
    """TensorFlow refuses a PNG whose pixel data (IDAT) or IEND fails its CRC, which Pillow
    decoded in training; an ancillary chunk after the pixels that fails its CRC was refused by
    serving's check (Pillow's verify) and decoded in training. Now both refuse all three."""
    data = PNGS["rgb"]
    iend = data.index(b"IEND") - 4
    data = data[:iend] + png_chunk(b"tEXt", b"a\0b") + data[iend:]
    start = data.index(chunk) - 4
    crc_at = start + 8 + struct.unpack_from(">I", data, start)[0]
    damaged = data[:crc_at] + bytes([data[crc_at] ^ 0xFF]) + data[crc_at + 1 :]
    refusal = (
        "expected a PNG image with intact chunks (each chunk's CRC matching its data). "
        f"Received: {len(damaged)} bytes whose {chunk.decode()} chunk at byte {start} fails "
        "its CRC (a damaged file)"
    )
    assert served(damaged) == refusal
    assert trained(damaged) == refusal
    if chunk != b"tEXt":  # (TensorFlow skips an ancillary chunk whose CRC fails)
        assert tf_decoded(damaged) is None


def first_frame_end(data: bytes) -> int:
    """Where a GIF's first frame ends: past the terminator of its pixel data's sub-blocks."""
    position = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while data[position] == 0x21:  # extensions: introducer, label, sub-blocks
        position += 2
        while data[position]:
            position += data[position] + 1
        position += 1
    assert data[position] == 0x2C  # the image descriptor, [color table], LZW code size
    local = data[position + 9]
    position += 11 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
    while data[position]:
        position += data[position] + 1
    return position + 1


@pytest.mark.parametrize("data", GIFS.values(), ids=GIFS.keys())
def test_a_gif_cut_in_its_first_frame_is_refused_by_training_and_serving_alike(
    data: bytes,
) -> None:
    """Cut at every byte: a GIF whose first frame is whole (the trailer missing, or part of a
    later frame) passes serving's check and training's decoder and decodes alike; one cut in
    its first frame is refused by both, as TensorFlow refuses it (one missing only that
    frame's last byte, its terminator, included: Pillow alone decoded that one)."""
    whole_frame = first_frame_end(data)
    for end in range(13, len(data)):
        refusal = served(data[:end])
        if end >= whole_frame:
            assert refusal is None, f"a GIF cut to {end} of {len(data)} bytes was refused"
            assert trained(data[:end]) is None
            assert_decoded_alike(data[:end])
        else:
            assert refusal is not None, f"a GIF cut to {end} of {len(data)} bytes was accepted"
            assert trained(data[:end]) is not None
            if refusal.startswith("expected a complete GIF"):
                assert trained(data[:end]) == refusal
    cut = data[: whole_frame - 1]
    assert served(cut) == trained(cut) == TRUNCATED_GIF.format(len(cut))
    assert tf_decoded(cut) is None
    for whole in (data, data + b"\0" * 8, data + b"more"):
        assert served(whole) is None
        assert trained(whole) is None
        assert_decoded_alike(whole)


@pytest.mark.parametrize(
    ("filename", "data", "refusal"),
    [
        ("cut.png", PNGS["rgb"][:-2], TRUNCATED_PNG.format(len(PNGS["rgb"]) - 2)),
        ("cut.gif", GIFS["single frame"][:-2], TRUNCATED_GIF.format(len(GIFS["single frame"]) - 2)),
    ],
)
def test_an_uploaded_truncated_png_or_gif_is_a_400_and_tensorflow_logs_nothing(
    digits_bundle: Any, capfd: pytest.CaptureFixture[str], filename: str, data: bytes, refusal: str
) -> None:
    """The server refuses a PNG missing IEND's CRC, or a GIF missing its first frame's
    terminator, naming it, before TensorFlow's decoder would refuse it and write "Invalid PNG
    data" or "Invalid GIF data" on standard error."""
    capfd.readouterr()
    answer = upload(digits_bundle, filename, data)
    assert answer.status_code == 400
    assert answer.json() == {"error": f"{filename}: {refusal}"}
    errors = capfd.readouterr().err
    assert "PNG" not in errors
    assert "GIF" not in errors
