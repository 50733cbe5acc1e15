"""Tests for the rich progress bar subscriber."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from rxpipe.events import EpochEnded, EventBus, RunCompleted, TrainProgress
from rxpipe.subscribers import ProgressBar


@pytest.mark.usefixtures("no_thread_leak")
def test_progress_bar_shows_epochs_and_stops_its_thread() -> None:
    """The bar prints a line per epoch and its refresh thread ends with the run."""
    output = io.StringIO()
    bar = ProgressBar(Console(file=output, force_terminal=True, color_system=None, width=120))
    bus = EventBus("r")
    bus.events.subscribe(bar)
    for step in range(1, 4):
        bus.publish(
            TrainProgress,
            epoch=1,
            epochs=2,
            step=step,
            steps=None,
            samples=step * 8,
            loss=1.0 / step,
        )
    bus.publish(
        EpochEnded,
        epoch=1,
        epochs=2,
        logs={"loss": 0.5, "val_loss": 0.6},
        duration_s=1.0,
        samples_per_s=24.0,
    )
    bus.publish(RunCompleted, duration_s=1.0)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.getvalue())
    assert "epoch 1/2  loss=0.5000  val_loss=0.6000  (24 samples/s)" in text
