"""Tests of process.decode_image's batch path: each batch decoded by TensorFlow at once.

The stage decodes a batch with the graph the exported model runs (``DecodeImage.apply_tf``,
compiled once), after a check of each image's header; the Pillow and numpy path
(``DecodeImage.apply``) is the reference it must equal pixel for pixel, and the path it
falls back to for a bad image (to name it) and for an image over a call's memory budget.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex
from PIL import Image

from rxpipe import StageError
from rxpipe.flow._tally import Tally, tallying
from rxpipe.operators import collect, process
from rxpipe.operators.process import _image_steps
from rxpipe.operators.process._image_steps import DecodeImage
from rxpipe.testing import collect as run
from rxpipe.testing import from_arrays

WIDTH, HEIGHT = 37, 23
"""Every file of :func:`kinds` has this size (odd, to meet JPEG's chroma subsampling at
its edges), so that all of them decode as one batch even without resizing."""


def encode(image: Image.Image, kind: str, **options: Any) -> bytes:
    """``image`` encoded as ``kind`` with Pillow."""
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def kinds() -> dict[str, bytes]:
    """The kinds of file training and serving decode: a crop of a real photo (and noise)
    as PNG (each mode), JPEG (subsamplings, progressive, gray, CMYK, with an EXIF
    thumbnail, multi-picture), GIF (plain, transparent, animated) and BMP (8, 24, 32 bits).
    """
    photo_bytes = files("sklearn.datasets.images").joinpath("china.jpg").read_bytes()
    with Image.open(io.BytesIO(photo_bytes)) as photo:
        rgb = photo.crop((200, 100, 200 + 4 * WIDTH, 100 + 4 * HEIGHT)).resize((WIDTH, HEIGHT))
    noise = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    gray = rgb.convert("L")
    palette = rgb.quantize(16)
    with_alpha = rgb.copy()
    with_alpha.putalpha(gray)
    wide = np.asarray(gray).astype(np.uint16) * 257 + np.arange(WIDTH, dtype=np.uint16)
    thumbnail = encode(rgb.resize((8, 5)), "JPEG")
    exif = Image.Exif()
    exif[0x010E] = "a thumbnail follows"
    second = palette.copy()
    second.paste(3, (4, 4, 12, 9))  # a later frame: a changed rectangle
    out = {
        "png rgb": encode(rgb, "PNG"),
        "png noise": encode(Image.fromarray(noise), "PNG"),
        "png gray": encode(gray, "PNG"),
        "png 1 bit": encode(gray.convert("1"), "PNG"),
        "png gray+alpha": encode(with_alpha.convert("LA"), "PNG"),
        "png rgba": encode(with_alpha, "PNG"),
        "png palette": encode(palette, "PNG"),
        "png palette 4 bits": encode(palette, "PNG", bits=4),
        "png palette alpha": encode(palette, "PNG", transparency=bytes(range(0, 256, 16))),
        "png 16 bits": encode(Image.fromarray(wide), "PNG"),
        "jpeg 4:2:0": encode(rgb, "JPEG", quality=75, subsampling=2),
        "jpeg 4:2:2": encode(rgb, "JPEG", quality=85, subsampling=1),
        "jpeg 4:4:4": encode(rgb, "JPEG", quality=95, subsampling=0),
        "jpeg noise": encode(Image.fromarray(noise), "JPEG", quality=90),
        "jpeg progressive": encode(rgb, "JPEG", progressive=True),
        "jpeg gray": encode(gray, "JPEG"),
        "jpeg cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "jpeg exif thumbnail": encode(rgb, "JPEG", exif=exif.tobytes() + thumbnail),
        "jpeg restart markers": encode(rgb, "JPEG", restart_marker_blocks=2),
        "mpo": encode(rgb, "MPO", save_all=True, append_images=[gray.convert("RGB")]),
        "gif": encode(palette, "GIF"),
        "gif gray": encode(gray, "GIF"),
        "gif transparent": encode(palette, "GIF", transparency=2, optimize=False),
        "gif animated": encode(palette, "GIF", save_all=True, append_images=[second]),
        "bmp gray": encode(gray, "BMP"),
        "bmp rgb": encode(rgb, "BMP"),
        "bmp rgba": encode(with_alpha, "BMP"),
    }
    with Image.open(io.BytesIO(out["mpo"])) as mpo:
        assert mpo.format == "MPO"
    return out


KINDS = kinds()


def objects(items: list[bytes]) -> np.ndarray:  # type: ignore[type-arg]
    """An object array of ``items``."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


class Calls:
    """What process.decode_image ran: each TensorFlow call's image count (and whether
    it failed), and the images decoded one at a time with Pillow (``decode_one``)."""

    def __init__(self) -> None:
        self.tf: list[int] = []
        self.tf_failed = 0
        self.pillow = 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Count the calls of the batch decoder and of the per-image decoder (both still run)."""
    seen = Calls()
    lock = threading.Lock()
    decode_tf, decode_one = _image_steps._decode_tf, _image_steps.decode_one

    def counted_tf(step: DecodeImage, items: list[bytes]) -> Any:
        with lock:
            seen.tf.append(len(items))
        try:
            return decode_tf(step, items)
        except Exception:
            with lock:
                seen.tf_failed += 1
            raise

    def counted_one(data: bytes, channels: int) -> Any:
        with lock:
            seen.pillow += 1
        return decode_one(data, channels)

    monkeypatch.setattr(_image_steps, "_decode_tf", counted_tf)
    monkeypatch.setattr(_image_steps, "decode_one", counted_one)
    return seen


@pytest.mark.parametrize(
    ("channels", "size", "method"),
    [
        (3, None, "bilinear"),
        (1, None, "bilinear"),
        (3, [16, 20], "bilinear"),
        (1, [16, 20], "bilinear"),
        (3, [64, 96], "bilinear"),
        (3, [30, 30], "nearest"),
        (1, [9, 70], "nearest"),
    ],
)
def test_every_kind_of_file_decodes_in_one_call_to_the_reference_pixels(
    calls: Calls, channels: int, size: list[int] | None, method: str
) -> None:
    """27 kinds of PNG, JPEG, GIF and BMP in one batch: one TensorFlow call, no image
    decoded with Pillow, and the very pixels of the Pillow and numpy reference."""
    raw = objects(list(KINDS.values()))
    step = process.decode_image(channels=channels, size=size, method=method)
    [batch] = run(from_arrays(raw, batch_size=len(raw)).pipe(step))
    assert (calls.tf, calls.pillow) == ([len(KINDS)], 0)
    reference = DecodeImage(channels, None if size is None else (size[0], size[1]), method)
    expected = reference.apply(raw)
    assert batch.features.dtype == np.uint8
    assert batch.features.shape == (len(KINDS), *(size or (HEIGHT, WIDTH)), channels)
    for index, name in enumerate(KINDS):
        np.testing.assert_array_equal(batch.features[index], expected[index], err_msg=name)
    assert [s.name for s in batch.metadata.preprocessing] == ["decode_image"]


def jpeg_folder(root: Path, count: int) -> Path:
    """``count`` JPEG files of 64×48 (crops of a real photo) in two class folders."""
    photo_bytes = files("sklearn.datasets.images").joinpath("flower.jpg").read_bytes()
    with Image.open(io.BytesIO(photo_bytes)) as photo:
        for index in range(count):
            crop = photo.crop((index * 7, index * 5, index * 7 + 256, index * 5 + 192))
            folder = root / ("a" if index % 2 else "b")
            folder.mkdir(parents=True, exist_ok=True)
            crop.resize((64, 48)).save(folder / f"{index:03}.jpg", "JPEG", quality=85)
    return root


@pytest.mark.usefixtures("no_thread_leak")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_folder_is_decoded_a_batch_a_call(calls: Calls, tmp_path: Path, workers: int) -> None:
    """40 files in batches of 8 make 5 TensorFlow calls of 8 images (not 40 Pillow
    decodes), with the reference's pixels, the files' ids and order kept."""
    root = jpeg_folder(tmp_path / "images", 40)
    stream = reactivex.empty().pipe(
        collect.image_folder(str(root), chunk_size=8),
        process.decode_image(size=[24, 32], workers=workers),
    )
    batches = run(stream)
    assert (sorted(calls.tf), calls.pillow) == ([8] * 5, 0)
    [raw] = run(reactivex.empty().pipe(collect.image_folder(str(root), chunk_size=40)))
    assert [i for b in batches for i in b.ids.tolist()] == raw.ids.tolist()
    expected = DecodeImage(3, (24, 32)).apply(raw.features)
    np.testing.assert_array_equal(np.concatenate([b.features for b in batches]), expected)


def test_concurrent_first_calls_trace_the_decoder_once() -> None:
    """Eight threads that decode at once with a step never used before: one trace."""
    step = DecodeImage(1, (5, 11), "nearest")  # a configuration no other test uses
    assert step not in _image_steps._TF_DECODERS
    data = [KINDS["png rgb"], KINDS["jpeg 4:2:0"]]
    start = threading.Barrier(8)
    outputs: list[np.ndarray] = []  # type: ignore[type-arg]

    def decode() -> None:
        start.wait()
        outputs.append(_image_steps._decode_tf(step, data))

    threads = [threading.Thread(target=decode) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _image_steps._TF_DECODERS[step].experimental_get_tracing_count() == 1
    assert len(outputs) == 8
    for out in outputs:
        np.testing.assert_array_equal(out, step.apply(objects(data)))


def damaged_png() -> bytes:
    """A PNG whose header reads but whose pixel data does not inflate (CRCs kept valid)."""
    import struct
    import zlib

    png = KINDS["png rgb"]
    start = png.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png[start : start + 4])
    chunk = b"IDAT" + b"\x00" * length
    idat = struct.pack(">I", length) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return png[:start] + idat + png[start + 12 + length :]


@pytest.mark.usefixtures("no_thread_leak")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_damaged_image_in_a_batch_is_named_and_skip_skips_only_it(
    calls: Calls, workers: int
) -> None:
    """Its header passes the check; TensorFlow's call fails on its pixels; decoded one at
    a time the batch names that sample alone, and under skip only it is left out."""
    good = [KINDS["jpeg 4:2:0"], KINDS["png rgb"], KINDS["gif"], KINDS["bmp rgb"]]
    raw = objects([*good[:2], damaged_png(), *good[2:]])
    with pytest.raises(StageError) as info:
        run(from_arrays(raw).pipe(process.decode_image(size=[8, 8], workers=workers)))
    assert info.value.sample_ids == (2,)
    assert (
        "process.decode_image: cannot decode sample 2: expected a readable PNG, JPEG, GIF, "
        "BMP image. Received: bytes that fail to decode ("
    ) in str(info.value)
    assert calls.tf_failed == 1  # the batch went to TensorFlow first
    tally = Tally("process.decode_image")
    with tallying(tally):
        skipping = process.decode_image(size=[8, 8], on_error="skip", workers=workers)
        [batch] = run(from_arrays(raw).pipe(skipping))
    assert batch.ids.tolist() == [0, 1, 3, 4]
    assert [s.sample_id for s in tally.skipped] == [2]
    np.testing.assert_array_equal(batch.features, DecodeImage(3, (8, 8)).apply(objects(good)))


def test_a_file_that_fails_its_header_check_is_named_without_a_tensorflow_call(
    calls: Calls,
) -> None:
    """A TIFF among JPEGs: refused by the header check, named as before; nothing decoded
    by TensorFlow, and the images before it decoded one at a time as before."""
    tiff = encode(Image.new("RGB", (4, 4)), "TIFF")
    raw = objects([KINDS["jpeg 4:2:0"], tiff, KINDS["png rgb"]])
    with pytest.raises(StageError, match="cannot decode sample 1: .*Received: a TIFF image$"):
        run(from_arrays(raw).pipe(process.decode_image(size=[8, 8])))
    assert (calls.tf, calls.pillow) == ([], 2)


def test_an_image_over_a_calls_memory_budget_is_decoded_alone_with_pillow(
    calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a budget of 1,000 RGB pixels a call: the 37×23 images (851 pixels) go one a
    call, a 40×30 one (1,200) is decoded with Pillow; the pixels are the reference's."""
    monkeypatch.setattr(_image_steps, "_TF_CALL_BYTES", 1000 * _image_steps._TF_BYTES_PER_PIXEL[3])
    large = encode(Image.fromarray(np.full((30, 40, 3), 90, np.uint8)), "PNG")
    raw = objects([KINDS["jpeg 4:2:0"], large, KINDS["png rgb"], KINDS["gif"]])
    [batch] = run(from_arrays(raw).pipe(process.decode_image(size=[12, 12])))
    assert (calls.tf, calls.pillow) == ([1, 1, 1], 1)
    np.testing.assert_array_equal(batch.features, DecodeImage(3, (12, 12)).apply(raw))


def test_without_size_images_of_several_sizes_are_decoded_one_at_a_time(calls: Calls) -> None:
    """They cannot be stacked: no TensorFlow call, and the error names the odd sample."""
    small = encode(Image.new("RGB", (5, 4)), "PNG")
    raw = objects([KINDS["png rgb"], small, KINDS["jpeg gray"]])
    with pytest.raises(StageError, match=r"sample 1: expected images of one size") as info:
        run(from_arrays(raw).pipe(process.decode_image()))
    assert info.value.sample_ids == (1,)
    assert (calls.tf, calls.pillow) == ([], 3)


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its standard output."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tensorflow_is_imported_when_the_stage_runs_not_before() -> None:
    """Building the stage imports no TensorFlow; decoding a batch does."""
    code = (
        "import sys, io\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "from rxpipe.operators import process\n"
        "from rxpipe.testing import collect, from_arrays\n"
        "stage = process.decode_image(size=[2, 2])\n"
        "print('tensorflow' in sys.modules)\n"
        "buffer = io.BytesIO()\n"
        "Image.new('RGB', (3, 3)).save(buffer, 'PNG')\n"
        "raw = np.empty(1, dtype=object)\n"
        "raw[0] = buffer.getvalue()\n"
        "[batch] = collect(from_arrays(raw).pipe(stage))\n"
        "print('tensorflow' in sys.modules, batch.features.shape)\n"
    )
    assert run_python(code).split("\n")[:2] == ["False", "True (1, 2, 2, 3)"]


def test_the_decoder_runs_on_the_host_cpu() -> None:
    """Every op of the batch decoder, the map's body included, is placed on /CPU:0: on a
    machine with a GPU the data work must not take the accelerator the step trains on (tf.data
    runs its map functions on the host too). Without the device scope the ops have none, and
    TensorFlow would put the resize on a GPU."""
    step = DecodeImage(3, (6, 10))  # a configuration no other test uses
    _image_steps._decode_tf(step, [KINDS["png rgb"]])
    graph = _image_steps._TF_DECODERS[step].get_concrete_function().graph
    definition = graph.as_graph_def()
    nodes = [*definition.node, *(n for f in definition.library.function for n in f.node_def)]
    placed = {n.device for n in nodes if n.op not in ("Placeholder", "Identity", "_Arg")}
    assert placed == {"/device:CPU:0"}
    assert any(n.op == "ResizeBilinear" for n in nodes)
