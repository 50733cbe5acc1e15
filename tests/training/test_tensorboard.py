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


def test_step_loss_is_at_the_global_training_step(small_digits: Any) -> None:
    """A real run's ``step/loss`` points sit at (epoch - 1) * steps_per_epoch + step."""
    import json
    import time

    import keras
    import tensorflow as tf

    class Slow(keras.callbacks.Callback):
        """Slows each step so that training reports progress a few times per epoch."""

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            time.sleep(0.06)

    result = small_digits(epochs=2, callbacks=[Slow()]).run(progress=False, tensorboard=True)
    lines = (result.run_dir / "events.jsonl").read_text().splitlines()
    progress = [e for e in map(json.loads, lines) if e["event"] == "train_progress"]
    steps_per_epoch = result.trained.stats["steps_per_epoch"]
    assert {e["epoch"] for e in progress} == {1, 2}
    expected = [(e["epoch"] - 1) * steps_per_epoch + e["step"] for e in progress]
    assert [e["global_step"] for e in progress] == expected
    logged = [
        event.step
        for path in (result.run_dir / "tensorboard").glob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
        if value.tag == "step/loss"
    ]
    assert logged == expected
    assert max(logged) > steps_per_epoch  # the second epoch's points come after the first's
