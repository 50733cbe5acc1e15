"""Write the event stream's scalars for TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rxpipe.events import EpochEnded, EvaluationCompleted, Event, TrainProgress


class TensorBoardWriter:
    """Scalars from events: per-epoch logs (``epoch/loss``, ``epoch/val_accuracy``, ...),
    training throughput (``epoch/samples_per_s``), the running loss (``step/loss``) and
    evaluation metrics (``evaluation/<split>/accuracy``).

    ``tensorboard --logdir <run dir>/tensorboard`` shows them. TensorFlow is imported
    when the writer is created.

    Args:
        logdir: where the event files go.
    """

    def __init__(self, logdir: Path) -> None:
        import importlib.util

        import tensorflow as tf

        if importlib.util.find_spec("tensorboard") is None:
            raise ModuleNotFoundError(
                "tensorboard=True: expected the tensorboard package (TensorFlow no longer "
                "ships it). Received: not installed; pip install 'rxpipe[tensorboard]'"
            )

        self._tf = tf
        self._writer: Any = tf.summary.create_file_writer(str(logdir))
        self._step = 0

    def _scalar(self, name: str, value: float, step: int) -> None:
        with self._writer.as_default():
            self._tf.summary.scalar(name, value, step=step)

    def __call__(self, event: Event) -> None:
        if isinstance(event, EpochEnded):
            for key, value in event.logs.items():
                self._scalar(f"epoch/{key}", value, event.epoch)
            self._scalar("epoch/samples_per_s", event.samples_per_s, event.epoch)
            self._writer.flush()
        elif isinstance(event, TrainProgress):
            self._step += 1
            self._scalar("step/loss", event.loss, self._step)
        elif isinstance(event, EvaluationCompleted):
            for key, value in event.metrics.items():
                if isinstance(value, float):
                    self._scalar(f"evaluation/{event.split}/{key}", value, 0)
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event files."""
        self._writer.close()
