"""Write the event stream's scalars for TensorBoard."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from rxpipe.errors import ConfigError
from rxpipe.events import EpochEnded, EvaluationCompleted, Event, TrainProgress

__all__ = ["STEPS_FILE", "TensorBoardWriter", "check_available"]

STEPS_FILE = "rxpipe-steps-per-epoch.json"
"""Kept in the log directory: the epoch length, so a resumed run's first epoch knows it."""


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


def _read_steps_per_epoch(path: Path) -> int | None:
    try:
        value = json.loads(path.read_text())["steps_per_epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


class TensorBoardWriter:
    """Scalars from events: per-epoch logs (``epoch/loss``, ``epoch/val_accuracy``, ...),
    training throughput (``epoch/samples_per_s``), the running loss (``step/loss``) and
    evaluation metrics (``evaluation/<split>/accuracy``).

    ``step/loss`` is plotted against the global training step,
    ``(epoch - 1) * steps_per_epoch + step``, so a resumed run's curve continues where
    the interrupted one stopped. The epoch length comes with the progress events from
    the second epoch on; it is kept in ``<logdir>/rxpipe-steps-per-epoch.json`` for a
    resumed run. Until it is known (the first epoch of a resumed run whose earlier attempt
    never reported it), a resumed epoch's points wait; if the run ends first, they are
    written with the longest step seen standing in for the epoch length.

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
        ...                      steps=10, samples=128, loss=0.5))  # global step 14
        >>> writer.close()
    """

    def __init__(self, logdir: Path) -> None:
        check_available()
        import tensorflow as tf

        self._tf = tf
        self._writer: Any = tf.summary.create_file_writer(str(logdir))
        self._steps_file = Path(logdir) / STEPS_FILE
        self._steps_per_epoch = _read_steps_per_epoch(self._steps_file)
        self._pending: list[TrainProgress] = []  # waiting for the epoch length
        self._longest_step = 0

    def _scalar(self, name: str, value: float, step: int) -> None:
        with self._writer.as_default():
            self._tf.summary.scalar(name, value, step=step)

    def _learn_steps_per_epoch(self, steps: int) -> None:
        if steps != self._steps_per_epoch:
            self._steps_per_epoch = steps
            self._steps_file.write_text(json.dumps({"steps_per_epoch": steps}))
        pending, self._pending = self._pending, []
        for event in pending:
            self._step_loss(event, steps)

    def _step_loss(self, event: TrainProgress, steps_per_epoch: int) -> None:
        step = (event.epoch - 1) * steps_per_epoch + event.step
        self._scalar("step/loss", event.loss, step)

    def __call__(self, event: Event) -> None:
        if isinstance(event, EpochEnded):
            for key, value in event.logs.items():
                self._scalar(f"epoch/{key}", value, event.epoch)
            self._scalar("epoch/samples_per_s", event.samples_per_s, event.epoch)
            self._writer.flush()
        elif isinstance(event, TrainProgress):
            self._longest_step = max(self._longest_step, event.step)
            if event.steps is not None:
                self._learn_steps_per_epoch(event.steps)
            if event.epoch == 1:
                self._step_loss(event, 0)
            elif self._steps_per_epoch is None:
                self._pending.append(event)
            else:
                self._step_loss(event, self._steps_per_epoch)
        elif isinstance(event, EvaluationCompleted):
            for key, value in event.metrics.items():
                if isinstance(value, float):
                    self._scalar(f"evaluation/{event.split}/{key}", value, 0)
            self._writer.flush()

    def close(self) -> None:
        """Write what still waits for the epoch length, then flush and close the files."""
        for event in self._pending:
            self._step_loss(event, self._longest_step)
        self._pending = []
        self._writer.close()
