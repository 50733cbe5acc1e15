"""The TensorBoard subscriber writes the event stream's scalars."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_tensorboard_scalars_are_written(small_digits: Any) -> None:
    """Epoch losses, metrics and throughput land in TensorBoard event files."""
    import tensorflow as tf

    result = small_digits(epochs=2).run(progress=False, tensorboard=True)
    files = list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert files
    tags: dict[str, list[int]] = {}
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags["epoch/loss"] == [1, 2]
    assert {"epoch/val_accuracy", "epoch/samples_per_s"} <= set(tags)
