"""Tests of process.augment: random, seeded, for the training split only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reactivex
from reactivex import Observable
from reactivex import operators as ops

from rxpipe import Batch, ConfigError, DatasetMetadata, FeatureSpec, Split, StageError
from rxpipe.context import in_epoch
from rxpipe.operators import process
from rxpipe.testing import collect, from_arrays

IMAGES = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)


def augmented(split: str, epoch: int = 1, **options: object) -> np.ndarray:  # type: ignore[type-arg]
    """The images after process.augment on one split, in one epoch."""
    stage = process.augment(seed=5, **options)  # type: ignore[arg-type]
    with in_epoch(epoch):
        batches = collect(from_arrays(IMAGES, split=split, batch_size=5).pipe(stage))
    return np.concatenate([b.features for b in batches])


def test_only_the_training_split_changes() -> None:
    """Validation and test images pass unchanged; training images change."""
    options = {"flip": "both", "rotation": 20.0, "crop_padding": 2, "brightness": 0.2}
    np.testing.assert_array_equal(augmented("validation", **options), IMAGES)
    np.testing.assert_array_equal(augmented("test", **options), IMAGES)
    out = augmented("train", **options)
    assert out.shape == IMAGES.shape
    assert out.dtype == np.uint8
    assert not np.array_equal(out, IMAGES)


def test_the_training_split_passes_unchanged_outside_training() -> None:
    """Read outside train.fit's epochs (epoch 0: evaluate on "train"), images are as they are."""
    options = {"flip": "both", "rotation": 20.0, "crop_padding": 2, "brightness": 0.2}
    np.testing.assert_array_equal(augmented("train", 0, **options), IMAGES)
    assert not np.array_equal(augmented("train", 1, **options), IMAGES)


def test_features_that_are_not_images_fail_in_any_pass() -> None:
    """A table reaching augment fails naming it, in training or not."""
    for epoch in (0, 1):
        with (
            in_epoch(epoch),
            pytest.raises(StageError, match=r"process\.augment: expected decoded"),
        ):
            collect(from_arrays(np.zeros((4, 3), "float32"), split="train").pipe(process.augment()))


def test_draws_depend_on_seed_and_epoch() -> None:
    """The same epoch repeats the same draws; another epoch draws new ones."""
    options = {"rotation": 15.0, "brightness": 0.1}
    np.testing.assert_array_equal(
        augmented("train", 1, **options), augmented("train", 1, **options)
    )
    assert not np.array_equal(augmented("train", 1, **options), augmented("train", 2, **options))


def test_flips_only_mirror() -> None:
    """A horizontal flip mirrors each image or leaves it as it was."""
    out = augmented("train", flip="horizontal")
    for before, after in zip(IMAGES, out, strict=True):
        assert np.array_equal(after, before) or np.array_equal(after, before[:, ::-1])


def test_brightness_stays_in_the_value_range() -> None:
    """Float images with a declared value range are clipped to it."""
    x = np.random.default_rng(1).random((6, 4, 4, 1)).astype("float32")
    meta = DatasetMetadata("t", FeatureSpec((4, 4, 1), "float32", (0.0, 1.0)))
    source = from_arrays(x, split=Split.TRAIN, metadata=meta)
    with in_epoch(1):
        batches = collect(source.pipe(process.augment(brightness=0.5)))
    out = np.concatenate([b.features for b in batches])
    assert out.min() >= 0.0
    assert out.max() <= 1.0
    assert not np.array_equal(out, x)


def test_brightness_keeps_integer_images_in_their_declared_range() -> None:
    """The digits (uint8, declared 0-16) stay within 0-16, not just within uint8."""
    from rxpipe.operators import access
    from rxpipe.operators import collect as sources

    stages = [
        sources.digits(),
        access.split(1.0, 0.0, 0.0, seed=0),
        process.augment(brightness=0.5, seed=0),
    ]
    with in_epoch(1):
        out = collect(reactivex.empty().pipe(*stages))
        normalized = collect(reactivex.empty().pipe(*stages, process.normalize()))
    x = np.concatenate([b.features for b in out])
    assert out[0].metadata.feature_spec.value_range == (0.0, 16.0)
    assert x.dtype == np.uint8
    assert x.max() == 16
    assert x.min() == 0
    assert max(float(b.features.max()) for b in normalized) == 1.0


def test_bad_parameters() -> None:
    """Flip modes and ranges are checked at construction."""
    with pytest.raises(ConfigError, match=r"process\.augment\.flip: expected one of"):
        process.augment(flip="diagonal")
    with pytest.raises(ConfigError, match=r"process\.augment\.rotation"):
        process.augment(rotation=400.0)
    with pytest.raises(ConfigError, match=r"process\.augment\.brightness"):
        process.augment(brightness=2.0)
    for seed in (-1, 2**32):
        with pytest.raises(
            ConfigError, match=r"^process\.augment\.seed: expected an integer from 0 to 2\*\*32"
        ):
            process.augment(seed=seed)


@pytest.mark.slow
def test_evaluating_the_training_split_sees_the_images_unaugmented(tmp_path: Path) -> None:
    """evaluate.classification(split="train") scored augmented images (rotated up to 180°)."""
    import rxpipe
    from rxpipe.context import current_epoch
    from rxpipe.operators import access, evaluate, models, train
    from rxpipe.operators import collect as sources

    seen: dict[int, list[np.ndarray]] = {}  # type: ignore[type-arg]

    def spy(source: Observable[Batch]) -> Observable[Batch]:
        def record(batch: Batch) -> Batch:
            if batch.split is Split.TRAIN:
                seen.setdefault(current_epoch(), []).append(batch.features)
            return batch

        return source.pipe(ops.map(record))

    front = [sources.digits(), access.split(0.8, 0.1, 0.1, seed=0), access.batch(512)]
    strong = process.augment(flip="both", rotation=180.0, brightness=0.5)
    pipeline = rxpipe.Pipeline(
        *front,
        strong,
        spy,
        models.mlp(hidden=(8,)),
        train.fit(epochs=1, checkpoint=False),
        evaluate.classification(split="train"),
        name="augment-eval",
        runs_dir=str(tmp_path),
    )
    pipeline.run()
    batches = collect(reactivex.empty().pipe(*front))
    raw = np.concatenate([b.features for b in batches if b.split is Split.TRAIN])
    evaluated = np.concatenate(seen[0])[-len(raw) :]  # after train.fit's peek at batch 1
    trained = np.concatenate(seen[1])
    np.testing.assert_array_equal(evaluated, raw)  # the evaluation pass: as they are
    assert not np.array_equal(trained, raw)  # the training epoch: augmented
