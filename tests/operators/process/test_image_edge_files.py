"""Tests of process.decode_image on edge files: what training decodes is what serving decodes.

Each file here decodes in TensorFlow (the exported model's serving graph) to the pixels
Pillow gives in training, or is refused in training with a message naming the sample,
so that no model is trained on pixels that serving would not see.
"""

from __future__ import annotations

import io
import re
import struct

import numpy as np
import pytest
from PIL import Image

from rxpipe import StageError
from rxpipe.flow._tally import Tally, tallying
from rxpipe.operators import process
from rxpipe.operators.process._image_steps import (
    DecodeImage,
    Grayscale,
    Resize,
    decode_one,
    decode_rgb_tf,
)
from rxpipe.testing import collect as run
from rxpipe.testing import from_arrays

PALETTE = [200, 100, 50, 10, 20, 30, 255, 255, 255, 0, 0, 255] + [0] * (768 - 12)
INDICES = np.array([[0, 1, 2], [3, 0, 2]], np.uint8)


def encode(image: Image.Image, kind: str, **options: object) -> bytes:
    """``image`` encoded as ``kind`` with Pillow."""
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def palette_image(indices: np.ndarray = INDICES) -> Image.Image:  # type: ignore[type-arg]
    """A "P" image of ``indices`` into :data:`PALETTE`."""
    image = Image.fromarray(indices, "P")
    image.putpalette(PALETTE)
    return image


def served(data: bytes) -> np.ndarray:  # type: ignore[type-arg]
    """The RGB pixels the exported model's graph decodes from ``data``."""
    import tensorflow as tf

    return decode_rgb_tf(tf.constant(data)).numpy()  # type: ignore[no-any-return]


def decoded_in_a_run(data: bytes) -> StageError:
    """The error process.decode_image fails with on a batch of a good PNG and ``data``."""
    good = encode(Image.new("RGB", (3, 2)), "PNG")
    raw = np.array([good, data], dtype=object)
    with pytest.raises(StageError) as info:
        run(from_arrays(raw).pipe(process.decode_image()))
    assert info.value.sample_ids == (1,)
    return info.value


@pytest.mark.parametrize("transparent", [0, 1])
def test_a_gifs_transparent_pixels_are_black_as_serving_decodes_them(transparent: int) -> None:
    """TF paints a GIF's transparent pixels black; training did show the palette color."""
    data = encode(palette_image(), "GIF", transparency=transparent, optimize=False)
    for channels in (1, 3):
        mine = decode_one(data, channels)
        expected = served(data) if channels == 3 else DecodeImage(1).apply_tf([data])[0]
        np.testing.assert_array_equal(mine, np.asarray(expected))
    rgb = decode_one(data, 3)
    assert (rgb[np.equal(INDICES, transparent)] == 0).all()
    assert rgb[np.equal(INDICES, 2)].tolist() == [[255, 255, 255]] * 2


def offset_gif() -> bytes:
    """A GIF of 4×3 whose only frame, 2×2, lies at (1, 1)."""
    data = bytearray(encode(palette_image(np.array([[0, 1], [2, 3]], np.uint8)), "GIF"))
    descriptor = data.index(b",", 13 + 3 * 2 ** ((data[10] & 7) + 1))
    struct.pack_into("<HH", data, 6, 4, 3)  # the logical screen
    struct.pack_into("<HH", data, descriptor + 1, 1, 1)  # the frame's left and top
    return bytes(data)


def test_a_gif_whose_first_frame_does_not_fill_it_is_refused() -> None:
    """TF decodes such a GIF to another canvas (2×2 here, Pillow 4×3): refused in training."""
    data = offset_gif()
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (4, 3)
    assert served(data).shape[:2] == (2, 2)
    error = decoded_in_a_run(data)
    assert str(error).endswith(
        "process.decode_image: cannot decode sample 1: expected a GIF whose first frame "
        "fills the image (TensorFlow decodes another canvas for others). Received: a first "
        "frame of 2×2 at (1, 1) in a 4×3 image"
    )


def test_an_animated_gif_with_smaller_later_frames_decodes_its_first_frame() -> None:
    """Later frames Pillow stores as changed rectangles are fine: both sides take frame 0."""
    first = np.random.default_rng(0).integers(0, 4, (12, 16), dtype=np.uint8)
    second = first.copy()
    second[2:5, 3:7] = (second[2:5, 3:7] + 1) % 4  # saved as a 4×3 frame
    frames = [palette_image(first), palette_image(second)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0)
    mine = decode_one(data, 3)
    assert mine.shape == (12, 16, 3)
    np.testing.assert_array_equal(mine, served(data))


@pytest.mark.parametrize(
    ("image", "received"),
    [
        (Image.new("1", (5, 4), 1), "a BMP of 1 bit per pixel"),
        (palette_image(), "an 8-bit BMP with a color palette"),
    ],
    ids=["1 bit", "palette"],
)
def test_bmps_that_serving_misreads_are_refused_in_training(
    image: Image.Image, received: str
) -> None:
    """Pillow reads these BMPs, but TF refuses them or reads palette indices as grays."""
    data = encode(image, "BMP")
    error = decoded_in_a_run(data)
    assert (
        "process.decode_image: cannot decode sample 1: expected a BMP image of 8 (gray), "
        f"24 or 32 bits per pixel, uncompressed (what TensorFlow decodes). Received: {received}"
    ) in str(error)
    gray = encode(Image.fromarray(INDICES * 40, "L"), "BMP")
    np.testing.assert_array_equal(decode_one(gray, 3), served(gray))


def test_a_png_palette_with_alpha_values_decodes_without_a_warning() -> None:
    """Pillow warned on converting it ("Palette images with Transparency expressed in
    bytes ..."), an error under warnings-as-errors; the pixels are TF's."""
    data = encode(palette_image(), "PNG", transparency=bytes([0, 128, 255, 255]))
    mine = decode_one(data, 3)  # pytest turns warnings into errors
    np.testing.assert_array_equal(mine, served(data))
    assert mine[0, 0].tolist() == [200, 100, 50]  # the color, not black


def test_an_image_over_pillows_bomb_limit_names_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pillow's DecompressionBombError becomes the sample's error, and skip skips it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # errors over 200 pixels
    big = encode(Image.new("RGB", (20, 11)), "PNG")
    small = encode(Image.new("RGB", (10, 10)), "PNG")
    raw = np.array([small, big], dtype=object)
    with pytest.raises(StageError) as info:
        run(from_arrays(raw).pipe(process.decode_image()))
    assert info.value.sample_ids == (1,)
    assert (
        "process.decode_image: cannot decode sample 1: expected an image within Pillow's "
        "decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS × 2 pixels). Received: Image "
        "size (220 pixels) exceeds limit of 200 pixels"
    ) in str(info.value)
    tally = Tally("process.decode_image")
    with tallying(tally):
        [batch] = run(from_arrays(raw).pipe(process.decode_image(on_error="skip")))
    assert batch.ids.tolist() == [0]
    assert [s.sample_id for s in tally.skipped] == [1]


@pytest.mark.parametrize(
    ("data", "received"),
    [
        (b"", "an empty file (0 bytes)"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "48 bytes that start as a PNG image but do not read"),
        (b"\xff\xd8\xff\xe0" + bytes(10), "14 bytes that start as a JPEG image but do not read"),
    ],
    ids=["empty", "damaged PNG", "damaged JPEG"],
)
def test_empty_and_damaged_files_say_what_they_are(data: bytes, received: str) -> None:
    """Not "an unknown format, starting b''" for an empty file or a PNG's own signature."""
    expected = f"expected an image in PNG, JPEG, GIF, BMP. Received: {received}"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}"):
        decode_one(data, 3)


def test_a_large_image_is_resized_and_grayed_without_a_float_copy_of_it_whole() -> None:
    """A 48 MP photo took +1.4 GB to decode to gray (float32 copies of all its pixels)."""
    import tracemalloc

    from rxpipe.operators.process._image_steps import grayscale, resize

    image = np.random.default_rng(5).integers(0, 256, (1, 2000, 3000, 3), dtype=np.uint8)
    for convert in (lambda x: resize(x, (16, 16)), grayscale):
        tracemalloc.start()
        try:
            convert(image)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 2 * image.nbytes  # a float32 copy alone is 4 × image.nbytes
    import tensorflow as tf

    small = image[:, :40, :60]
    for step in (Grayscale(), Resize((7, 5))):
        np.testing.assert_array_equal(step.apply(small), step.apply_tf(tf.constant(small)).numpy())


def test_a_batch_of_mixed_sizes_names_the_samples_of_another_size() -> None:
    """It named the batch's first four ids, whatever their size."""
    sizes = [(4, 4), (4, 4), (4, 4), (4, 4), (5, 3), (4, 4), (2, 2)]
    raw = np.array([encode(Image.new("L", (w, h)), "PNG") for h, w in sizes], dtype=object)
    with pytest.raises(StageError) as info:
        run(from_arrays(raw).pipe(process.decode_image()))
    assert info.value.sample_ids == (4, 6)
    assert str(info.value).endswith(
        "process.decode_image: sample 4: expected images of one size (or set size=[h, w]), "
        "(4, 4) as sample 0. Received: (5, 3) (2 samples of other sizes in this batch)"
    )
    [kept] = run(from_arrays(raw).pipe(process.decode_image(on_error="skip")))
    assert kept.ids.tolist() == [0, 1, 2, 3, 5]


def test_pillows_bomb_warning_as_an_error_names_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under warnings-as-errors (as here), Pillow's warning escaped as itself."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # warns over 100 pixels
    data = encode(Image.new("RGB", (15, 10)), "PNG")
    with pytest.raises(ValueError, match=r"^expected an image within Pillow's decompression-bomb"):
        decode_one(data, 3)
