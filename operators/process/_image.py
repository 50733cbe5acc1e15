"""process.decode_image, process.resize, process.grayscale: image steps recorded for serving."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from rxpipe.batch import Batch, DatasetMetadata, Features, FeatureSpec
from rxpipe.errors import BatchError
from rxpipe.flow import OnError, map_batches
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._bad_records import check_on_error
from .._checks import one_of, positive_int, size2
from ._image_steps import DecodeImage, Grayscale, Resize
from ._recording import Recorded

METHODS = ("bilinear", "nearest")


def _image_spec(meta: DatasetMetadata, where: str) -> FeatureSpec:
    spec = meta.feature_spec
    if len(spec.shape) not in (2, 3) or spec.dtype == "object":
        raise BatchError(
            f"{where}: expected decoded images of shape (height, width[, channels]). "
            f"Received: samples of shape {spec.shape}, dtype {spec.dtype}"
            f"{' (decode them first with process.decode_image)' if spec.dtype == 'object' else ''}"
        )
    return spec


def _decode_each(step: DecodeImage, ids: list[Any], datas: list[Any]) -> np.ndarray[Any, Any]:
    """Decode a batch one image at a time (Pillow and numpy); the first failure names its
    sample, and images of another size than the batch's first name theirs."""
    images = []
    for sample_id, data in zip(ids, datas, strict=True):
        try:
            images.append(step.decode(data))
        except ValueError as error:
            raise BatchError(
                f"process.decode_image: cannot decode sample {sample_id!r}: {error}",
                [sample_id],
            ) from None
    odd = [i for i, image in enumerate(images) if image.shape != images[0].shape]
    if odd:  # name the samples unlike the batch's first, not the batch's first ids
        raise BatchError(
            f"process.decode_image: sample {ids[odd[0]]!r}: expected images of one size "
            f"(or set size=[h, w]), {images[0].shape[:2]} as sample {ids[0]!r}. "
            f"Received: {images[odd[0]].shape[:2]}"
            + (f" ({len(odd)} samples of other sizes in this batch)" if len(odd) > 1 else ""),
            [ids[i] for i in odd],
        )
    return np.stack(images)


@plugin("process.decode_image")
def decode_image(
    channels: int = 3,
    size: Sequence[int] | None = None,
    method: str = "bilinear",
    on_error: str = "raise",
    max_skipped: int | None = None,
    workers: int = 1,
) -> Operator[Batch, Batch]:
    """Decode PNG, JPEG, BMP or GIF bytes to uint8 images, resized to ``size`` if given.

    Recorded for serving: the exported model takes raw image bytes and decodes them to
    the same pixels (JPEG with the accurate DCT on both sides). Each batch is decoded
    and resized by that same TensorFlow graph, compiled once (TensorFlow is imported
    when the stage first runs), after a check of each image's header; an image larger
    than a call's memory budget, or a batch with a bad image, is decoded one image at
    a time with Pillow and numpy, to the same pixels. Without ``size`` every image must
    have the size of the first one. A sample that is not a readable image, or is in a
    format serving cannot decode (TIFF, WebP, ...), fails the run, naming the sample
    (the file, for ``collect.image_folder``), or with ``on_error="skip"`` is skipped
    and reported.

    Args:
        channels: 3 (RGB) or 1 (grayscale, ITU-R BT.601 weights).
        size: ``[height, width]`` to resize to (half-pixel bilinear, as ``tf.image.resize``).
        method: ``"bilinear"`` or ``"nearest"``.
        on_error: ``"raise"`` or ``"skip"`` for undecodable samples.
        max_skipped: with ``"skip"``, fail after this many bad samples in a pass.
        workers: decode this many batches at once on threads (the decoders release the
            GIL; TensorFlow also spreads each batch over its own threads).

    Example:
        >>> import io, reactivex
        >>> from PIL import Image
        >>> from rxpipe.testing import collect, from_arrays
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (6, 4)).save(buffer, "PNG")
        >>> raw = np.array([buffer.getvalue()], dtype=object)
        >>> [b] = collect(from_arrays(raw).pipe(decode_image(size=[2, 3])))
        >>> b.features.shape, b.metadata.feature_spec.value_range
        ((1, 2, 3, 3), (0.0, 255.0))
    """
    one_of("process.decode_image", "channels", channels, (1, 3))
    one_of("process.decode_image", "method", method, METHODS)
    shape = None if size is None else size2("process.decode_image", "size", size)
    check_on_error("process.decode_image", on_error, max_skipped)
    positive_int("process.decode_image", "workers", workers)
    step = DecodeImage(channels=channels, size=shape, method=method)

    def spec(meta: DatasetMetadata, features: Features) -> FeatureSpec:
        return FeatureSpec(np.asarray(features).shape[1:], "uint8", (0.0, 255.0))

    record = Recorded(step, spec)
    first_samples: dict[int, object] = {}  # output metadata → the sample that set the size

    def decode(batch: Batch) -> Batch:
        if not isinstance(batch.features, np.ndarray) or batch.features.dtype != object:
            raise BatchError(
                "process.decode_image: expected encoded image bytes (an object array, e.g. "
                "from collect.image_folder). Received: "
                + (
                    f"named features {sorted(batch.features)}"
                    if not isinstance(batch.features, np.ndarray)
                    else f"an array of dtype {batch.features.dtype.name}"
                )
            )
        ids = batch.ids.tolist()
        datas = batch.features.tolist()
        features = step.decode_batch(datas)  # TensorFlow's decoders, the batch at once
        if features is None:  # a bad image, or several sizes: one at a time, naming it
            features = _decode_each(step, ids, datas)
        meta = record.metadata(batch.metadata, features)
        first = first_samples.setdefault(id(meta), ids[0])
        expected = meta.feature_spec.shape
        if features.shape[1:] != expected:  # a later batch, of another size than the first
            raise BatchError(
                f"process.decode_image: sample {ids[0]!r}: expected images of one size (or "
                f"set size=[h, w]), {expected[:2]} as sample {first!r}. "
                f"Received: {features.shape[1:3]}",
                ids,
            )
        return batch.evolve(features=features, metadata=meta)

    return map_batches(
        "process.decode_image",
        decode,
        on_error=cast(OnError, on_error),
        max_skipped=max_skipped,
        workers=workers,
    )


@plugin("process.resize")
def resize(size: Sequence[int], method: str = "bilinear") -> Operator[Batch, Batch]:
    """Resize decoded images to ``[height, width]``; recorded for serving.

    Integer images stay integers (rounded); float images stay floats. Resizing follows
    ``tf.image.resize`` (half-pixel centres), on numpy here and in TF when serving.

    Args:
        size: ``[height, width]``.
        method: ``"bilinear"`` or ``"nearest"``.

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> [b] = collect(from_arrays(np.zeros((2, 8, 8, 1), "uint8")).pipe(resize([4, 4])))
        >>> b.features.shape
        (2, 4, 4, 1)
    """
    shape = size2("process.resize", "size", size)
    one_of("process.resize", "method", method, METHODS)

    def spec(meta: DatasetMetadata, features: Features) -> FeatureSpec:
        value_range = _image_spec(meta, "process.resize").value_range
        return FeatureSpec(
            np.asarray(features).shape[1:], np.asarray(features).dtype.name, value_range
        )

    record = Recorded(Resize(shape, method), spec)

    def apply(batch: Batch) -> Batch:
        _image_spec(batch.metadata, "process.resize")
        return record(batch)

    return map_batches("process.resize", apply)


@plugin("process.grayscale")
def grayscale() -> Operator[Batch, Batch]:
    """RGB images (h, w, 3) → grayscale (h, w, 1) with ITU-R BT.601 weights; recorded.

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> [b] = collect(from_arrays(np.zeros((2, 4, 4, 3), "uint8")).pipe(grayscale()))
        >>> b.features.shape
        (2, 4, 4, 1)
    """

    def spec(meta: DatasetMetadata, features: Features) -> FeatureSpec:
        value_range = _image_spec(meta, "process.grayscale").value_range
        return FeatureSpec(
            np.asarray(features).shape[1:], np.asarray(features).dtype.name, value_range
        )

    record = Recorded(Grayscale(), spec)

    def apply(batch: Batch) -> Batch:
        spec = _image_spec(batch.metadata, "process.grayscale")
        if spec.shape[-1:] != (3,):
            raise BatchError(
                "process.grayscale: expected RGB images of shape (height, width, 3). "
                f"Received: samples of shape {spec.shape}"
            )
        return record(batch)

    return map_batches("process.grayscale", apply)
