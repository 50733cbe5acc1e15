"""Tests of process.decode_image, process.resize and process.grayscale (and their TF twins)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st

from rxpipe import ConfigError, StageError
from rxpipe.flow._tally import Tally, tallying
from rxpipe.operators import collect, process
from rxpipe.operators.process._image_steps import (
    DecodeImage,
    Grayscale,
    Resize,
    decode_one,
    decode_rgb_tf,
)
from rxpipe.testing import collect as run
from rxpipe.testing import from_arrays


def png_bytes(pixels: np.ndarray) -> bytes:  # type: ignore[type-arg]
    """Encode a uint8 array as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def encoded(images: list[np.ndarray]) -> np.ndarray:  # type: ignore[type-arg]
    """An object array of PNG bytes."""
    out = np.empty(len(images), dtype=object)
    out[:] = [png_bytes(i) for i in images]
    return out


def test_decode_image_reads_a_folder_of_pngs(digit_folder: Path) -> None:
    """PNG files decode to uint8 images of the asked size, with the value range recorded."""
    stream = reactivex.empty().pipe(
        collect.image_folder(str(digit_folder), limit=20),
        process.decode_image(channels=1, size=[8, 8]),
    )
    [batch] = run(stream)
    assert batch.features.shape == (20, 8, 8, 1)
    assert batch.features.dtype == np.uint8
    meta = batch.metadata
    assert meta.feature_spec.value_range == (0.0, 255.0)
    assert [s.name for s in meta.preprocessing] == ["decode_image"]
    assert meta.raw_features.dtype == "object"


def test_decoding_matches_tensorflow_for_png() -> None:
    """The numpy path and the serving path give the same pixels (PNG is lossless)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (9, 13, 3), dtype=np.uint8) for _ in range(3)]
    for step in (
        DecodeImage(3, (5, 7)),
        DecodeImage(1, (16, 16)),
        DecodeImage(3, (4, 4), "nearest"),
    ):
        mine = step.apply(encoded(images))
        theirs = step.apply_tf(tf.constant([png_bytes(i) for i in images])).numpy()
        np.testing.assert_array_equal(mine, theirs)


def photo_jpegs() -> dict[str, bytes]:
    """Real JPEG photos (scikit-learn's sample images) and re-encodings of a crop of one."""
    from importlib.resources import files

    from PIL import Image

    images = files("sklearn.datasets.images")
    out = {name: images.joinpath(name).read_bytes() for name in ("china.jpg", "flower.jpg")}
    with Image.open(io.BytesIO(out["china.jpg"])) as photo:
        crop = photo.crop((100, 50, 260, 170))
        for label, image, options in (
            ("q75 4:2:0", crop, {"quality": 75, "subsampling": 2}),
            ("q95 4:4:4", crop, {"quality": 95, "subsampling": 0}),
            ("gray", crop.convert("L"), {}),
            ("cmyk", crop.convert("CMYK"), {}),
        ):
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", **options)
            out[label] = buffer.getvalue()
    return out


@pytest.mark.parametrize(
    "step",
    [DecodeImage(3), DecodeImage(1), DecodeImage(3, (64, 48)), DecodeImage(1, (32, 32), "nearest")],
    ids=["rgb", "gray", "rgb resized", "gray nearest"],
)
def test_jpeg_decodes_to_the_same_pixels_in_training_and_serving(step: DecodeImage) -> None:
    """Pillow (training) and the exported TF graph give identical pixels for real JPEGs.

    tf.io.decode_image's fast DCT was up to 10 levels off on most pixels.
    """
    import tensorflow as tf

    for name, data in photo_jpegs().items():
        mine = step.apply(np.array([data], dtype=object))
        served = tf.function(step.apply_tf)(tf.constant([data])).numpy()
        assert served.dtype == mine.dtype == np.uint8
        np.testing.assert_array_equal(mine, served, err_msg=name)


def test_multi_picture_jpegs_from_cameras_decode_their_first_picture() -> None:
    """An MPO file (Pillow's name for a JPEG followed by more pictures) is a JPEG to TF."""
    import tensorflow as tf
    from PIL import Image

    jpegs = photo_jpegs()
    buffer = io.BytesIO()
    with (
        Image.open(io.BytesIO(jpegs["china.jpg"])) as first,
        Image.open(io.BytesIO(jpegs["flower.jpg"])) as second,
    ):
        first.save(buffer, "MPO", save_all=True, append_images=[second.crop((0, 0, 90, 60))])
    data = buffer.getvalue()
    mine = decode_one(data, 3)
    assert mine.shape == (427, 640, 3)  # china.jpg (re-encoded), not the flower after it
    np.testing.assert_array_equal(mine, decode_rgb_tf(tf.constant(data)).numpy())


def test_decode_rgb_tf_is_the_serving_twin_of_decode_one() -> None:
    """decode_rgb_tf in a map_fn (as the export's image signature) equals decode_one."""
    import tensorflow as tf

    jpegs = photo_jpegs()
    data = [jpegs["q75 4:2:0"], png_bytes(np.full((120, 160, 3), 7, np.uint8))]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def decode(batch: tf.Tensor) -> tf.Tensor:
        spec = tf.TensorSpec((None, None, 3), tf.uint8)
        return tf.map_fn(decode_rgb_tf, batch, fn_output_signature=spec)

    served = decode(tf.constant(data)).numpy()
    np.testing.assert_array_equal(served, np.stack([decode_one(d, 3) for d in data]))


def test_16_bit_png_keeps_the_high_byte_as_serving_does() -> None:
    """A 16-bit grayscale PNG decodes to value >> 8 on both sides, not clipped to 255."""
    import tensorflow as tf
    from PIL import Image

    values = np.random.default_rng(4).integers(0, 65536, (6, 7)).astype(np.uint16)
    values[0, :4] = [0, 257, 1000, 65535]
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "PNG")
    data = np.array([buffer.getvalue()], dtype=object)
    for channels in (1, 3):
        step = DecodeImage(channels)
        mine = step.apply(data)
        np.testing.assert_array_equal(mine[0, ..., 0], (values >> 8).astype(np.uint8))
        np.testing.assert_array_equal(mine, step.apply_tf(tf.constant(data)).numpy())


@pytest.mark.parametrize("kind", ["TIFF", "WEBP"])
def test_formats_serving_cannot_decode_are_refused_naming_the_sample(kind: str) -> None:
    """TIFF and WebP read fine with Pillow, but serving takes PNG, JPEG, GIF, BMP only."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buffer, kind)
    with pytest.raises(ValueError, match=f"expected an image in PNG, JPEG, GIF, BMP .*{kind}"):
        decode_one(buffer.getvalue(), 3)
    raw = np.array([png_bytes(np.zeros((4, 4), np.uint8)), buffer.getvalue()], dtype=object)
    source = from_arrays(raw)
    with pytest.raises(StageError, match=f"cannot decode sample 1: .*Received: a {kind} image"):
        run(source.pipe(process.decode_image()))


def test_a_later_batch_of_another_size_names_its_sample_and_both_sizes() -> None:
    """Without size=, a batch unlike the first fails, not later with wrong metadata."""
    raw = encoded([np.zeros((8, 8), np.uint8)] * 2 + [np.zeros((6, 9), np.uint8)] * 2)
    source = from_arrays(raw, batch_size=2)
    with pytest.raises(StageError) as info:
        run(source.pipe(process.decode_image()))
    assert str(info.value).endswith(
        "process.decode_image: sample 2: expected images of one size (or set size=[h, w]), "
        "(8, 8) as sample 0. Received: (6, 9)"
    )
    assert info.value.sample_ids == (2, 3)
    [good] = run(source.pipe(process.decode_image(on_error="skip")))
    assert good.ids.tolist() == [0, 1]


@settings(max_examples=20, deadline=None)
@given(
    size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    target=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    method=st.sampled_from(["bilinear", "nearest"]),
    dtype=st.sampled_from(["uint8", "float32"]),
)
def test_resize_equals_tf_image_resize(
    size: tuple[int, int], target: tuple[int, int], method: str, dtype: str
) -> None:
    """numpy resizing follows tf.image.resize exactly, for any sizes."""
    import tensorflow as tf

    x = (np.random.default_rng(1).random((2, *size, 3)) * 255).astype(dtype)
    step = Resize(target, method)
    np.testing.assert_allclose(step.apply(x), step.apply_tf(tf.constant(x)).numpy(), atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 3),
    size=st.tuples(st.integers(1, 70), st.integers(1, 70)),
    target=st.tuples(st.integers(1, 90), st.integers(1, 90)),
    channels=st.sampled_from([1, 3, 4]),
    dtype=st.sampled_from(["uint8", "uint16", "int16"]),
    cropped=st.booleans(),
)
def test_bilinear_resize_of_integer_images_is_bit_exact_with_tf(
    count: int,
    size: tuple[int, int],
    target: tuple[int, int],
    channels: int,
    dtype: str,
    cropped: bool,
) -> None:
    """Batches, any channels, integer dtypes, views of a larger array: the very values of
    tf.image.resize rounded back (its float32 arithmetic, in its order)."""
    import tensorflow as tf

    info = np.iinfo(dtype)
    rng = np.random.default_rng(sum(size) * 100 + sum(target))
    whole = rng.integers(info.min, int(info.max) + 1, (count, size[0] + 3, size[1] + 2, channels))
    x = whole.astype(dtype)[:, 1 : size[0] + 1, 2:] if cropped else whole.astype(dtype)[:, 3:, 2:]
    mine = Resize(target).apply(x)
    assert mine.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(mine, Resize(target).apply_tf(tf.constant(x)).numpy())


def test_grayscale_equals_its_tf_twin() -> None:
    """Grayscale conversion is the same in numpy and TF, and keeps uint8."""
    import tensorflow as tf

    x = np.random.default_rng(2).integers(0, 256, (3, 5, 5, 3), dtype=np.uint8)
    mine = Grayscale().apply(x)
    assert mine.dtype == np.uint8
    np.testing.assert_array_equal(mine, Grayscale().apply_tf(tf.constant(x)).numpy())


def test_a_corrupt_image_fails_naming_the_file(digit_folder: Path, tmp_path: Path) -> None:
    """An undecodable file names its path; under skip it is skipped and reported."""
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "good.png").write_bytes(png_bytes(np.zeros((4, 4), np.uint8)))
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    stream = reactivex.empty().pipe(collect.image_folder(str(root)), process.decode_image())
    with pytest.raises(StageError, match=r"cannot decode sample 'b/broken\.png'") as info:
        run(stream)
    assert info.value.sample_ids == ("b/broken.png",)  # not every sample of its batch
    (root / "b" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(StageError, match=r"Received: an unknown format, starting b'not an i'$"):
        run(stream)
    tally = Tally("process.decode_image")
    with tallying(tally):
        skipping = process.decode_image(on_error="skip")
        batches = run(reactivex.empty().pipe(collect.image_folder(str(root)), skipping))
    assert [b.ids.tolist() for b in batches] == [["a/good.png"]]
    assert [s.sample_id for s in tally.skipped] == ["b/broken.png"]


def test_images_of_different_sizes_need_a_size() -> None:
    """Without size, mixed image sizes are an error that says how to fix it."""
    raw = encoded([np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.uint8)])
    with pytest.raises(StageError, match=r"expected images of one size \(or set size"):
        run(from_arrays(raw).pipe(process.decode_image()))


def test_resize_and_grayscale_plugins_record_their_steps() -> None:
    """The plugins transform batches and record Resize and Grayscale for serving."""
    x = np.random.default_rng(3).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    [batch] = run(from_arrays(x).pipe(process.resize([4, 6]), process.grayscale()))
    assert batch.features.shape == (4, 4, 6, 1)
    assert [s.name for s in batch.metadata.preprocessing] == ["resize", "grayscale"]
    with pytest.raises(StageError, match=r"process\.grayscale: expected RGB images"):
        run(from_arrays(np.zeros((2, 4, 4, 1), "uint8")).pipe(process.grayscale()))
    with pytest.raises(StageError, match="decode them first"):
        run(from_arrays(encoded([x[0]])).pipe(process.resize([2, 2])))


def test_bad_parameters() -> None:
    """Channels, sizes and methods are checked at construction."""
    with pytest.raises(ConfigError, match=r"process\.decode_image\.channels: expected one of 1, 3"):
        process.decode_image(channels=4)
    with pytest.raises(ConfigError, match=r"process\.resize\.size: expected \[height, width\]"):
        process.resize([0, 3])
    with pytest.raises(ConfigError, match=r"process\.resize\.method"):
        process.resize([3, 3], method="cubic")
