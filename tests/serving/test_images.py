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
