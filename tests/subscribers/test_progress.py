"""Tests for the rich progress bar subscriber."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from rxpipe.events import (
    ArtifactSaved,
    EpochEnded,
    EventBus,
    RunCompleted,
    StageRate,
    StageStalled,
    ThroughputSnapshot,
    TrainProgress,
)
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


def _snapshot(seq: int) -> ThroughputSnapshot:
    names = ["collect.digits", "access.split", "access.shuffle", "access.batch", "train.fit"]
    rates = tuple(StageRate(n, 10, 640, 100.0, 26000.0, 0.5, None) for n in names)
    return ThroughputSnapshot(
        run_id="r", seq=seq, time=0.0, elapsed_s=5, interval_s=5, stages=rates
    )


def _progress(seq: int) -> TrainProgress:
    return TrainProgress(
        run_id="r", seq=seq, time=0.0, epoch=3, epochs=15, step=10, steps=23, samples=640, loss=0.3
    )


TIME = r"\d+:\d\d:\d\d"


def _check_display(lines: list[str], width: int) -> None:
    training, epoch, stages = lines
    assert re.fullmatch(rf"training +━+╸? +2/15 +{TIME} -:--:--", training.rstrip())
    assert re.fullmatch(rf"epoch 3/15 ━+ +10/23 loss 0\.3000 {TIME} -:--:--", epoch.rstrip())
    assert stages.startswith("stages collect.digits 26,000/s (busy 50%) · ")
    assert stages.rstrip().endswith("…")
    assert len(stages) <= width


@pytest.mark.parametrize("width", [80, 120])
def test_columns_stay_when_a_stage_summary_arrives(width: int) -> None:
    """A long stage summary is cut to the width on its own line; every bar column stays."""
    bar = ProgressBar(Console(file=io.StringIO(), width=width, force_terminal=True))
    bar(_progress(0))
    bar(_snapshot(1))
    output = io.StringIO()
    Console(file=output, width=width, force_terminal=True, color_system=None).print(bar)
    bar.close()
    _check_display(output.getvalue().splitlines(), width)


@pytest.mark.usefixtures("no_thread_leak")
def test_the_terminal_shows_every_column_after_a_stage_summary() -> None:
    """What the live display last drew on the terminal has the bars' columns and the summary."""
    output = io.StringIO()
    bar = ProgressBar(Console(file=output, width=80, force_terminal=True, color_system=None))
    bar(_progress(0))
    bar(_snapshot(1))
    bar.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.getvalue())
    _check_display([line for line in text.splitlines() if line.strip()][-3:], 80)


def test_paths_and_metric_names_are_printed_as_they_are() -> None:
    """Brackets in a path or a metric's name are printed, never read as rich markup."""
    output = io.StringIO()
    bar = ProgressBar(Console(file=output, width=120, color_system=None))
    bar(ArtifactSaved(run_id="r", seq=0, time=0.0, name="model", path="runs[/old]/[bold]x/model"))
    logs = {"loss": 0.5, "top[k]": 0.25}
    bar(EpochEnded(run_id="r", seq=1, time=0.0, epoch=1, epochs=2, logs=logs, duration_s=1.0,
                   samples_per_s=24.0))  # fmt: skip
    bar.close()
    assert "saved model: runs[/old]/[bold]x/model" in output.getvalue()
    assert "loss=0.5000  top[k]=0.2500" in output.getvalue()


def test_a_resumed_run_shows_the_epochs_already_trained() -> None:
    """A run resumed at epoch 3 of 4 shows 2/4 epochs done, not 0/4."""
    bar = ProgressBar(Console(file=io.StringIO(), width=100, force_terminal=True))
    bar(TrainProgress(run_id="r", seq=40, time=0.0, epoch=3, epochs=4, step=2, steps=16,
                      samples=32, loss=0.5, global_step=34))  # fmt: skip
    output = io.StringIO()
    Console(file=output, width=100, force_terminal=True, color_system=None).print(bar)
    bar.close()
    training, epoch = output.getvalue().splitlines()
    assert re.fullmatch(rf"training +━+ +2/4 +{TIME} -:--:--", training.rstrip())
    assert epoch.startswith("epoch 3/4 ")


def test_a_long_path_is_printed_on_one_line_on_a_narrow_console() -> None:
    """A saved artifact's path is never cut into lines: it stays whole for copying."""
    output = io.StringIO()
    bar = ProgressBar(Console(file=output, width=40, color_system=None))
    path = "runs/digits/20261205T164201Z-41977d/metrics.json"
    bar(ArtifactSaved(run_id="r", seq=0, time=0.0, name="metrics.json", path=path))
    bar.close()
    assert output.getvalue() == f"saved metrics.json: {path}\n"


def test_a_stalled_stage_is_printed_as_a_warning() -> None:
    """The terminal shows a stalled stage's warning, whole, naming the stage."""
    output = io.StringIO()
    bar = ProgressBar(Console(file=output, width=60, color_system=None))
    bar(StageStalled(run_id="r", seq=0, time=0.0, stage="custom.swallow", pass_index=0,
                     input_end="completed", input_ended_s=60.0, silent_s=60.0))  # fmt: skip
    bar.close()
    assert output.getvalue().startswith("warning: custom.swallow: expected on_completed after")
    assert "for 60 s since its input completed" in output.getvalue()
    assert output.getvalue().count("\n") == 1
