"""process.augment: random flips, rotations, shifts and brightness, for training only."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

from rxpipe.batch import Batch, Split
from rxpipe.config import check_seed
from rxpipe.context import current_epoch, current_run
from rxpipe.errors import BatchError, ConfigError
from rxpipe.flow import transform
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import fraction, non_negative_int, one_of

FLIPS = ("none", "horizontal", "vertical", "both")


@attrs.frozen
class Augmentation:
    """What to randomise (see :func:`augment`)."""

    flip: str = "none"
    rotation: float = 0.0
    crop_padding: int = 0
    brightness: float = 0.0

    def images(self, x: np.ndarray[Any, Any], rng: np.random.Generator, span: float) -> Any:
        """Augment a batch of images (n, h, w[, c]); same shape and dtype."""
        n = len(x)
        out = x
        if self.flip in ("horizontal", "both"):
            out = _flip(out, rng.random(n) < 0.5, axis=2)
        if self.flip in ("vertical", "both"):
            out = _flip(out, rng.random(n) < 0.5, axis=1)
        if self.rotation or self.crop_padding:
            angles = np.radians(rng.uniform(-self.rotation, self.rotation, n))
            p = self.crop_padding
            shifts = rng.integers(-p, p + 1, size=(n, 2)) if p else np.zeros((n, 2), np.int64)
            out = _warp(out, angles, shifts)
        if self.brightness:
            delta = rng.uniform(-self.brightness, self.brightness, n) * span
            out = _brighten(out, delta)
        return out


def _flip(x: np.ndarray[Any, Any], which: np.ndarray[Any, Any], axis: int) -> Any:
    if not which.any():
        return x
    out = x.copy()
    out[which] = np.flip(x[which], axis=axis)
    return out


def _warp(x: np.ndarray[Any, Any], angles: Any, shifts: Any) -> Any:
    """Rotate each image about its centre and shift it (nearest neighbour, zero fill)."""
    n, h, w = x.shape[:3]
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    cos = np.cos(angles)[:, None, None]
    sin = np.sin(angles)[:, None, None]
    dy = shifts[:, 0][:, None, None]
    dx = shifts[:, 1][:, None, None]
    source_y = np.rint(cy + cos * (yy - cy) - sin * (xx - cx) - dy).astype(np.int64)
    source_x = np.rint(cx + sin * (yy - cy) + cos * (xx - cx) - dx).astype(np.int64)
    inside = (source_y >= 0) & (source_y < h) & (source_x >= 0) & (source_x < w)
    batch = np.arange(n)[:, None, None]
    out = x[batch, np.clip(source_y, 0, h - 1), np.clip(source_x, 0, w - 1)]
    mask = inside.reshape(inside.shape + (1,) * (x.ndim - 3))
    return np.where(mask, out, np.zeros((), x.dtype))


def _brighten(x: np.ndarray[Any, Any], delta: Any) -> Any:
    shaped = delta.reshape((-1,) + (1,) * (x.ndim - 1)).astype(np.float32)
    out = x.astype(np.float32) + shaped
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(x.dtype)
    return out.astype(x.dtype)


def _clip(x: np.ndarray[Any, Any], value_range: tuple[float, float]) -> Any:
    """``x`` clipped to ``value_range`` (for integers, the integers within it); same dtype."""
    low, high = value_range
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        low, high = max(math.ceil(low), info.min), min(math.floor(high), info.max)
    return np.clip(x, np.asarray(low, x.dtype), np.asarray(high, x.dtype))


class _Augmenter:
    def __init__(self, augmentation: Augmentation, seed: int) -> None:
        self._augmentation = augmentation
        epoch = current_epoch()
        self._training = epoch > 0  # train.fit reads its epochs' passes in in_epoch(1, 2, ...)
        self._rng = np.random.default_rng([seed, epoch])

    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        if batch.split is not Split.TRAIN:
            return (batch,)
        x = batch.features
        if not isinstance(x, np.ndarray) or x.ndim not in (3, 4) or x.dtype == object:
            raise BatchError(
                "process.augment: expected decoded images of shape (height, width[, channels])."
                f" Received: {_describe(x)}"
            )
        if not self._training:  # e.g. evaluate.classification(split="train"): as they are
            return (batch,)
        value_range = getattr(batch.metadata.features, "value_range", None)
        if value_range is not None:
            span = value_range[1] - value_range[0]
        else:
            span = 255.0 if np.issubdtype(x.dtype, np.integer) else 1.0
        out = self._augmentation.images(x, self._rng, span)
        if value_range is not None:  # the declared range, not just the dtype's (uint8 0-16)
            out = _clip(out, value_range)
        return (batch.evolve(features=out),)

    def on_end(self) -> Iterable[Batch]:
        return ()


def _describe(x: Any) -> str:
    if not isinstance(x, np.ndarray):
        return f"named features {sorted(x)}"
    return f"samples of shape {x.shape[1:]}, dtype {x.dtype.name}"


@plugin("process.augment")
def augment(
    flip: str = "none",
    rotation: float = 0.0,
    crop_padding: int = 0,
    brightness: float = 0.0,
    seed: int | None = None,
) -> Operator[Batch, Batch]:
    """Randomly flip, rotate, shift and brighten the images ``train.fit`` trains on.

    Only the training split's batches change, and only in the passes that train reads
    in its epochs: other splits, and the training split read outside training (by
    ``evaluate.classification(split="train")``, or a chain run outside
    :func:`rxpipe.context.in_epoch`), pass as they are. Draws are seeded by (seed,
    epoch): every epoch sees new variations, and a rerun (or a resumed run) the same
    ones. Not recorded for serving (augmentation is for training only). Put it after
    ``access.cache``, so each epoch gets fresh draws.

    Args:
        flip: ``"none"``, ``"horizontal"``, ``"vertical"`` or ``"both"`` (each with
            probability 1/2 per image).
        rotation: the largest rotation, in degrees either way (nearest neighbour, zeros
            outside).
        crop_padding: shift images by up to this many pixels each way (the same as
            padding and cropping back to size, with zero padding).
        brightness: add up to this fraction of the value range, either way (clipped
            to the data set's declared value range, else to the dtype's).
        seed: random seed; defaults to the run's seed.

    Example:
        >>> from rxpipe.context import in_epoch
        >>> from rxpipe.testing import collect, from_arrays
        >>> images = np.arange(2 * 4 * 4, dtype="uint8").reshape(2, 4, 4, 1)
        >>> source = from_arrays(images, split="train")
        >>> with in_epoch(1):  # as train.fit reads its first epoch
        ...     [b] = collect(source.pipe(augment(brightness=0.5, seed=0)))
        >>> b.features.shape, b.features.dtype.name, bool((b.features != images).any())
        ((2, 4, 4, 1), 'uint8', True)
    """
    if seed is not None:
        seed = check_seed(seed, "process.augment.seed")
    one_of("process.augment", "flip", flip, FLIPS)
    if isinstance(rotation, bool) or not 0.0 <= rotation <= 180.0:
        raise ConfigError(
            f"expected degrees between 0 and 180. Received: {rotation!r}",
            "process.augment.rotation",
        )
    non_negative_int("process.augment", "crop_padding", crop_padding)
    fraction("process.augment", "brightness", brightness)
    augmentation = Augmentation(flip, float(rotation), crop_padding, float(brightness))

    def make() -> _Augmenter:
        return _Augmenter(augmentation, current_run().seed if seed is None else seed)

    return transform("process.augment", make)
