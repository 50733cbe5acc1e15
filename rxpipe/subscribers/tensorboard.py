"""Write the event stream's scalars for TensorBoard."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from rxpipe.errors import ConfigError
from rxpipe.events import EpochEnded, EvaluationCompleted, Event, TrainProgress

__all__ = ["TensorBoardWriter", "check_available"]


def check_available(option: str = "tensorboard") -> None:
    """Raise unless the tensorboard package is installed; cheap (imports nothing).

    TensorFlow no longer ships TensorBoard, and its ``tf.summary`` writers need it. Call
    this before loading a pipeline or starting TensorFlow, so ``--tensorboard`` fails at
    once rather than after the run has started.

    Args:
        option: the option that asked for TensorBoard, named in the error
            (``"--tensorboard"`` from the command line).

    Raises:
        ConfigError: when the package is not installed.

    Example:
        >>> check_available("--tensorboard")  # installed with rxpipe[tensorboard]
    """
    try:
        found = importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        found = False
    if not found:
        raise ConfigError(
            "expected the tensorboard package to be installed (TensorFlow no longer ships "
            "it): pip install 'rxpipe[tensorboard]' (or pip install tensorboard). Received: "
            f"no module named 'tensorboard' in {sys.executable}",
            option,
        )


class TensorBoardWriter:
    """Scalars from events: per-epoch logs (``epoch/loss``, ``epoch/val_accuracy``, ...),
    training throughput (``epoch/samples_per_s``), the running loss (``step/loss``) and
    evaluation metrics (``evaluation/<split>/accuracy``).

    ``step/loss`` is plotted against the run's global training step (the progress
    events' ``global_step``), so a resumed run's curve continues where the interrupted
    one stopped.

    ``tensorboard --logdir <run dir>/tensorboard`` shows them. TensorFlow is imported
    when the writer is created.

    Args:
        logdir: where the event files go.

    Raises:
        ConfigError: when the tensorboard package is not installed.

    Example:
        >>> import tempfile
        >>> writer = TensorBoardWriter(Path(tempfile.mkdtemp()))
        >>> writer(TrainProgress(run_id="r", seq=0, time=0.0, epoch=2, epochs=3, step=4,
        ...                      steps=10, samples=128, loss=0.5, global_step=14))
        >>> writer.close()
    """

    def __init__(self, logdir: Path) -> None:
        check_available()
        import tensorflow as tf

        self._tf = tf
        self._writer: Any = tf.summary.create_file_writer(str(logdir))

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
            self._scalar("step/loss", event.loss, event.global_step)
        elif isinstance(event, EvaluationCompleted):
            for key, value in event.metrics.items():
                if isinstance(value, float):
                    self._scalar(f"evaluation/{event.split}/{key}", value, 0)
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event files."""
        self._writer.close()
