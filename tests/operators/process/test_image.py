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
from rxpipe.operators.process._image_steps import DecodeImage, Grayscale, Resize
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
    with pytest.raises(StageError, match=r"an unknown format, starting b'not an i'\)$"):
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
