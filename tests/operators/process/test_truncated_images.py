"""Tests of process.decode_image on cut-off PNGs and GIFs: refused as serving refuses them.

Pillow decodes a PNG missing up to its last 20 bytes (IEND, the pixel data's CRC, the end
of its zlib stream) and a GIF missing its first frame's last byte; TensorFlow, which
decodes them when serving, refuses both. Training refuses them too, naming the file, with
serving's message (``rxpipe.serving.images.tf_decoding_problem``); a GIF whose first frame
is whole (its trailer missing, or a later frame cut) decodes on both sides alike.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex
from PIL import Image

from rxpipe import StageError
from rxpipe.flow._tally import Tally, tallying
from rxpipe.operators import collect, process
from rxpipe.operators.process._image_steps import DecodeImage, decode_one
from rxpipe.testing import collect as run

WIDTH, HEIGHT = 20, 12


def encode(image: Image.Image, kind: str, **options: object) -> bytes:
    """``image`` encoded as ``kind`` with Pillow."""
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


NOISE = Image.fromarray(
    np.random.default_rng(3).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
)
PNG = encode(NOISE, "PNG")
GIF = encode(NOISE.quantize(16), "GIF")
ANIMATED_GIF = encode(
    NOISE.quantize(16), "GIF", save_all=True, append_images=[NOISE.quantize(16).rotate(180)]
)


def served(data: bytes) -> np.ndarray | None:  # type: ignore[type-arg]
    """The pixels the serving graph (``DecodeImage.apply_tf`` under ``tf.function``, as the
    exported model runs it) decodes ``data`` to; None if TensorFlow refuses it."""
    import tensorflow as tf

    if not _SERVING_GRAPH:
        strings = tf.TensorSpec([None], tf.string)
        _SERVING_GRAPH.append(tf.function(DecodeImage(3).apply_tf, input_signature=[strings]))
    try:
        return _SERVING_GRAPH[0](tf.constant([data])).numpy()[0]  # type: ignore[no-any-return]
    except tf.errors.InvalidArgumentError:
        return None


_SERVING_GRAPH: list[Any] = []


def folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A folder of ``files`` (relative path → bytes), for collect.image_folder."""
    root = tmp_path / "images"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize(
    ("name", "data", "received"),
    [
        ("b/cut.png", PNG[:-1], "expected a complete PNG image (its chunks through IEND)"),
        ("b/cut.png", PNG[:-20], "expected a complete PNG image (its chunks through IEND)"),
        (
            "b/cut.gif",
            GIF[:-2],
            "expected a complete GIF image (its first frame's data through its last block)",
        ),
    ],
    ids=["png missing 1 byte", "png missing 20 bytes", "gif missing its frame's last byte"],
)
def test_a_cut_off_file_in_a_folder_fails_naming_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], name: str, data: bytes, received: str
) -> None:
    """Pillow alone decodes these files, the serving graph refuses them: the stage fails
    naming the file, before TensorFlow decodes the batch (nothing on standard error); under
    skip, it is skipped and reported."""
    with Image.open(io.BytesIO(data)) as image:
        image.convert("RGB")
    assert served(data) is None
    root = folder(tmp_path, {"a/good.png": PNG, name: data})
    stream = reactivex.empty().pipe(collect.image_folder(str(root)), process.decode_image())
    capfd.readouterr()
    with pytest.raises(StageError) as info:
        run(stream)
    assert str(info.value).endswith(
        f"process.decode_image: cannot decode sample {name!r}: {received}. Received: "
        f"{len(data)} bytes that end before the image does (a truncated file)"
    )
    assert info.value.sample_ids == (name,)
    errors = capfd.readouterr().err
    assert "PNG" not in errors
    assert "GIF" not in errors
    tally = Tally("process.decode_image")
    with tallying(tally):
        skipping = process.decode_image(on_error="skip")
        batches = run(reactivex.empty().pipe(collect.image_folder(str(root)), skipping))
    assert [b.ids.tolist() for b in batches] == [["a/good.png"]]
    assert [s.sample_id for s in tally.skipped] == [name]


def test_gifs_whose_first_frame_is_whole_decode_as_served(tmp_path: Path) -> None:
    """A GIF missing its trailer, or the end of a later frame, decodes in the stage's batch to
    the pixels the serving graph gives, as Pillow decodes it."""
    files = {"a/whole.gif": GIF, "a/no-trailer.gif": GIF[:-1], "b/later-cut.gif": ANIMATED_GIF[:-9]}
    root = folder(tmp_path, files)
    [batch] = run(reactivex.empty().pipe(collect.image_folder(str(root)), process.decode_image()))
    assert sorted(batch.ids.tolist()) == sorted(files)
    for sample_id, pixels in zip(batch.ids.tolist(), batch.features, strict=True):
        np.testing.assert_array_equal(pixels, served(files[sample_id]))
        np.testing.assert_array_equal(pixels, decode_one(files[sample_id], 3))
