"""Tests for the TensorBoard subscriber: a missing package, and the step axis of the loss."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from rxpipe import Pipeline
from rxpipe.errors import ConfigError
from rxpipe.events import EventBus, TrainProgress
from rxpipe.operators import process
from rxpipe.subscribers import attach_subscribers
from rxpipe.subscribers.tensorboard import TensorBoardWriter, check_available
from rxpipe.testing import from_arrays


@pytest.fixture
def no_tensorboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the tensorboard package look not installed."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)


def test_check_available_passes_when_installed() -> None:
    """With the package installed (the dev extra has it), the check raises nothing."""
    check_available()


@pytest.mark.usefixtures("no_tensorboard")
def test_missing_package_is_a_config_error_naming_the_option_and_the_fix() -> None:
    """Without tensorboard the check names the option, the package to install and what it found."""
    with pytest.raises(ConfigError) as caught:
        check_available("--tensorboard")
    message = str(caught.value)
    assert message.startswith("--tensorboard: expected the tensorboard package to be installed")
    assert "pip install 'rxpipe[tensorboard]'" in message
    assert f"Received: no module named 'tensorboard' in {sys.executable}" in message
    assert caught.value.path == "--tensorboard"


@pytest.mark.usefixtures("no_tensorboard")
def test_attach_subscribers_checks_before_creating_any(tmp_path: Path) -> None:
    """tensorboard=True without the package fails before events.jsonl is even opened."""
    with pytest.raises(ConfigError, match=r"^tensorboard: expected the tensorboard package"):
        attach_subscribers(
            EventBus("r"), tmp_path, progress=False, log_format=None, tensorboard=True
        )
    assert not (tmp_path / "events.jsonl").exists()


@pytest.mark.usefixtures("no_tensorboard")
def test_run_with_tensorboard_but_no_package_raises_a_config_error(runs_dir: Path) -> None:
    """Pipeline.run(tensorboard=True) raises ConfigError, not ModuleNotFoundError."""
    source = from_arrays(np.zeros((8, 2), np.float32), np.zeros(8, np.int64), batch_size=4)
    pipeline = Pipeline(process.normalize(scale=0.5), name="tb", runs_dir=runs_dir, source=source)
    with pytest.raises(ConfigError, match="pip install 'rxpipe.tensorboard.'"):
        pipeline.run(progress=False, tensorboard=True)


def _progress(epoch: int, step: int, global_step: int) -> TrainProgress:
    return TrainProgress(
        run_id="r", seq=0, time=0.0, epoch=epoch, epochs=3, step=step, steps=None, samples=0,
        loss=float(step), global_step=global_step,
    )  # fmt: skip


def _loss_steps(logdir: Path) -> list[tuple[int, float]]:
    """(step, value) of every ``step/loss`` point in ``logdir``'s event files, file by file."""
    import tensorflow as tf

    points = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "step/loss":
                    points.append((event.step, float(tf.make_ndarray(value.tensor))))
    return points


def test_loss_is_plotted_against_the_global_step_across_a_resume(tmp_path: Path) -> None:
    """step/loss uses the run's global step; a resumed run's writer goes on from there."""
    first = TensorBoardWriter(tmp_path)
    for event in [_progress(1, 5, 5), _progress(1, 10, 10), _progress(2, 5, 28)]:
        first(event)
    first.close()
    resumed = TensorBoardWriter(tmp_path)
    resumed(_progress(3, 4, 50))
    resumed.close()
    assert [step for step, _ in _loss_steps(tmp_path)] == [5, 10, 28, 50]
