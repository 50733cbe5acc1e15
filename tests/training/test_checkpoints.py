"""Checkpoints and resume, in process and after a real SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rxpipe
from rxpipe.testing import EventRecorder

pytestmark = pytest.mark.slow


def test_each_epoch_is_checkpointed(small_digits: Any) -> None:
    """After a run, state.json names the last epoch's checkpoint and holds the history."""
    result = small_digits(epochs=2).run(progress=False)
    state = json.loads((result.run_dir / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2
    assert state["history"] == list(result.history)
    assert (result.run_dir / "checkpoints" / f"{state['checkpoint']}.index").exists()


def test_resume_continues_after_the_last_checkpoint(small_digits: Any) -> None:
    """Resuming with more epochs trains only the missing ones, from the saved weights."""
    import keras

    class Slow(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            time.sleep(0.05)

    first = small_digits(epochs=2).run(progress=False)
    recorder = EventRecorder()
    again = small_digits(epochs=4, callbacks=[Slow()])
    resumed = again.run(progress=False, resume_from=first.run_dir, subscribers=[recorder])
    assert resumed.run_dir == first.run_dir
    ended = recorder.of_type(rxpipe.EpochEnded)
    assert [e.epoch for e in ended] == [3, 4]
    lines = (first.run_dir / "events.jsonl").read_text().splitlines()
    before = next(json.loads(line) for line in lines if '"epoch_ended"' in line)
    assert before["steps"] == 10  # 317 training samples of 400, batches of 32
    assert {(e.steps, e.samples) for e in ended} == {(before["steps"], before["samples"])}
    # the epoch length comes back with the checkpoint: the first resumed epoch knows it
    progress = [p for p in recorder.of_type(rxpipe.TrainProgress) if p.epoch == 3]
    assert progress  # the slow callback makes the epoch long enough to report progress
    assert all(p.steps == before["steps"] for p in progress)
    assert len(resumed.history) == 4
    assert resumed.history[:2] == first.history
    assert resumed.history[3]["loss"] < first.history[0]["loss"]
    lines = (first.run_dir / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(len(lines)))


def test_a_resumed_run_with_dropout_ends_as_an_uninterrupted_one(small_digits: Any) -> None:
    """With a seed and deterministic ops, 2 epochs then a resume to 3 equal 3 epochs straight."""
    options = {"deterministic": True, "dropout": 0.5}
    straight = small_digits(epochs=3, **options).run(progress=False)
    part = small_digits(epochs=2, **options).run(progress=False)
    resumed = rxpipe.Pipeline.resume(part.run_dir, ["train.fit.epochs=3"], progress=False)
    assert resumed.history == straight.history
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_resume_of_a_finished_run_trains_nothing_more(small_digits: Any) -> None:
    """A run that already finished all its epochs resumes to the same model."""
    first = small_digits(epochs=1).run(progress=False)
    again = rxpipe.Pipeline.resume(first.run_dir, progress=False)
    assert again.history == first.history
    for a, b in zip(first.model.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_with_fewer_epochs_than_trained_is_refused(small_digits: Any) -> None:
    """A resume asking for fewer epochs than the run trained fails, leaving the run's files."""
    first = small_digits(epochs=2).run(progress=False)
    toml = (first.run_dir / "pipeline.toml").read_text()
    with pytest.raises(rxpipe.StageError) as info:
        small_digits(epochs=1).run(progress=False, resume_from=first.run_dir)
    assert isinstance(info.value.__cause__, rxpipe.ConfigError) or "ConfigError" in str(info.value)
    assert "train.fit.epochs: expected at least the 2 epochs the checkpoint in " in str(info.value)
    assert str(info.value).endswith("Received: epochs=1")
    assert (first.run_dir / "pipeline.toml").read_text() == toml


def test_a_run_directory_in_use_cannot_be_resumed(small_digits: Any) -> None:
    """While a run goes on, a second process resuming its directory is turned away."""
    import fcntl

    first = small_digits(epochs=1).run(progress=False)
    with open(first.run_dir / ".lock", "a") as lock:  # as the process of a running run holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        script = (
            "import rxpipe, sys\n"
            "try:\n"
            f"    rxpipe.Pipeline.resume({str(first.run_dir)!r}, progress=False)\n"
            "except rxpipe.ConfigError as error:\n"
            "    print(error); sys.exit(2)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stdout.startswith("resume_from: expected a run directory no other process is")
    again = rxpipe.Pipeline.resume(first.run_dir, progress=False)  # free again: it resumes
    assert again.history == first.history


def test_resume_needs_a_run_directory(tmp_path: Path) -> None:
    """Resuming something that is not a run directory is a config error saying what is missing."""
    with pytest.raises(
        rxpipe.ConfigError,
        match=r"^run_dir: expected the directory of an earlier run .* holds no run\.json and no "
        r"pipeline\.toml$",
    ):
        rxpipe.Pipeline.resume(tmp_path)


SLOW_PIPELINE = """
[pipeline]
name = "killme"
seed = 0

[[plugins]]
use = "collect.digits"

[[plugins]]
use = "access.split"

[[plugins]]
use = "access.batch"
size = 8

[[plugins]]
use = "process.normalize"

[[plugins]]
use = "models.cnn"
filters = [16]
dense = 32

[[plugins]]
use = "train.fit"
epochs = 6
learning_rate = 0.005
"""


def _epochs_in(events: Path) -> list[int]:
    if not events.exists():
        return []
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return [e["epoch"] for e in lines if e["event"] == "epoch_ended"]


def test_sigkilled_run_resumes_from_its_last_epoch(tmp_path: Path) -> None:
    """A run killed with SIGKILL mid-training resumes and ends with all requested epochs."""
    path = tmp_path / "slow.toml"
    path.write_text(SLOW_PIPELINE)
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "rxpipe", "run", "--no-progress"]
    process = subprocess.Popen(
        [*command, str(path), "--runs-dir", str(runs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        run_dir = None
        while time.monotonic() < deadline and process.poll() is None:
            found = list((runs / "killme").glob("*/checkpoints/state.json"))
            if found and json.loads(found[0].read_text())["epoch"] >= 2:
                run_dir = found[0].parent.parent
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert run_dir is not None
    killed_at = json.loads((run_dir / "checkpoints" / "state.json").read_text())["epoch"]
    assert 2 <= killed_at < 6
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    resumed = subprocess.run(
        [*command, "--resume", str(run_dir)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    epochs = _epochs_in(run_dir / "events.jsonl")
    assert epochs[-(6 - killed_at) :] == list(range(killed_at + 1, 7))
    seqs = [json.loads(line)["seq"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert seqs == list(range(len(seqs)))  # one sequence across the kill
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 6
    assert len(state["history"]) == 6
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"


STOP_EARLY = {"patience": 2, "monitor": "loss", "min_delta": 100.0, "deterministic": True}
"""Early stopping that sees no improvement after epoch 1: it stops after epoch 3 and ends
with epoch 1's weights."""


def _same_weights(a: Any, b: Any) -> bool:
    """Whether two runs' models hold equal weights."""
    pairs = zip(a.model.get_weights(), b.model.get_weights(), strict=True)
    return all(np.array_equal(x, y) for x, y in pairs)


def test_early_stopping_goes_on_across_a_resume(small_digits: Any) -> None:
    """Killed after epoch 2 and resumed, early stopping still stops after epoch 3 (its wait
    is kept) and ends with epoch 1's weights (kept beside the checkpoints), as straight."""
    straight = small_digits(epochs=30, **STOP_EARLY).run(progress=False)
    assert len(straight.history) == 3
    part = small_digits(epochs=2, **STOP_EARLY).run(progress=False)
    resumed = small_digits(epochs=30, **STOP_EARLY).run(progress=False, resume_from=part.run_dir)
    assert resumed.history == straight.history
    assert _same_weights(resumed, straight)
    state = json.loads((part.run_dir / "checkpoints" / "state.json").read_text())
    assert (state["stopped"], state["best_epoch"]) == (True, 1)
    assert [p.name for p in (part.run_dir / "checkpoints").glob("best-*.npz")] == ["best-1.npz"]


def test_a_run_that_stopped_early_resumes_to_its_result(small_digits: Any) -> None:
    """Resuming a run early stopping ended trains no more and ends with its best weights."""
    first = small_digits(epochs=30, **STOP_EARLY).run(progress=False)
    recorder = EventRecorder()
    again = small_digits(epochs=30, **STOP_EARLY).run(
        progress=False, resume_from=first.run_dir, subscribers=[recorder]
    )
    assert not recorder.of_type(rxpipe.EpochEnded)
    assert again.history == first.history
    assert _same_weights(again, first)


def test_steps_per_epoch_resumes_inside_the_pass(small_digits: Any) -> None:
    """With steps_per_epoch a pass spans epochs; a resume goes on from the same batch of
    the same (seeded, shuffled) pass, and ends as a straight run."""
    options = {"steps_per_epoch": 4, "deterministic": True, "validate": False}
    recorder = EventRecorder()
    straight = small_digits(epochs=5, **options).run(progress=False, subscribers=[recorder])
    assert [e.steps for e in recorder.of_type(rxpipe.EpochEnded)] == [4, 4, 2, 4, 4]
    part = small_digits(epochs=2, **options).run(progress=False)
    resumed = rxpipe.Pipeline.resume(part.run_dir, ["train.fit.epochs=5"], progress=False)
    assert resumed.history == straight.history
    assert _same_weights(resumed, straight)


def test_the_global_step_goes_on_after_a_resume(small_digits: Any) -> None:
    """The step counter (named in a NaN error) is checkpointed: 10 steps an epoch."""
    first = small_digits(epochs=1).run(progress=False)
    state_file = first.run_dir / "checkpoints" / "state.json"
    assert json.loads(state_file.read_text())["step"] == 10
    rxpipe.Pipeline.resume(first.run_dir, ["train.fit.epochs=2"], progress=False)
    assert json.loads(state_file.read_text())["step"] == 20


@pytest.mark.parametrize(
    ("override", "path", "message"),
    [
        (
            "models.cnn.dense=32",
            "models.cnn",
            "Received: weight 'dense",
        ),
        ("train.fit.optimizer=sgd", "train.fit.optimizer", "was saved with, Adam. Received: SGD"),
        (
            "train.fit.precision=mixed_float16",
            "train.fit.precision",
            "Received: LossScaleOptimizer(Adam)",
        ),
    ],
    ids=["model", "optimizer", "precision"],
)
def test_resuming_with_another_model_or_optimizer_names_the_option(
    small_digits: Any, override: str, path: str, message: str
) -> None:
    """A checkpoint of another model or optimizer is a ConfigError naming the option; the
    run's own files are left as they were, so it resumes with its own options after."""
    first = small_digits(epochs=1).run(progress=False)
    files = {name: (first.run_dir / name).read_text() for name in ("run.json", "pipeline.toml")}
    with pytest.raises(rxpipe.StageError) as info:
        rxpipe.Pipeline.resume(first.run_dir, [override, "train.fit.epochs=2"], progress=False)
    cause = info.value.cause
    assert isinstance(cause, rxpipe.ConfigError)
    assert cause.path == path
    assert "expected the " in str(cause)
    assert message in str(cause)
    assert {name: (first.run_dir / name).read_text() for name in files} == files
    again = rxpipe.Pipeline.resume(first.run_dir, ["train.fit.epochs=2"], progress=False)
    assert len(again.history) == 2


def test_a_checkpoint_that_does_not_fit_is_a_config_error(small_digits: Any) -> None:
    """Without the record of the model (an older state.json), the restore's own mismatch is
    a ConfigError naming resume_from, not TensorFlow's error."""
    first = small_digits(epochs=1).run(progress=False)
    state_file = first.run_dir / "checkpoints" / "state.json"
    state = json.loads(state_file.read_text())
    del state["model"]
    state_file.write_text(json.dumps(state))
    with pytest.raises(rxpipe.StageError) as info:
        rxpipe.Pipeline.resume(first.run_dir, ["models.cnn.dense=32"], progress=False)
    cause = info.value.cause
    assert isinstance(cause, rxpipe.ConfigError)
    assert cause.path == "resume_from"
    assert "expected a checkpoint of this run's model and optimizer. Received: " in str(cause)


def test_resuming_with_another_seed_is_refused(small_digits: Any) -> None:
    """Another seed splits the data otherwise: refused before anything is trained."""
    first = small_digits(epochs=1).run(progress=False)
    with pytest.raises(rxpipe.ConfigError, match=r"^pipeline\.seed: expected the seed"):
        rxpipe.Pipeline.resume(first.run_dir, ["pipeline.seed=7"], progress=False)


def test_a_resume_with_another_learning_rate_trains_with_it(small_digits: Any) -> None:
    """--set train.fit.learning_rate=... on resume replaces the restored rate; the same
    rate as before leaves the restored optimizer as it was."""
    import keras

    class Rate(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.rates: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.rates.append(float(self.model.optimizer.learning_rate))

    first = small_digits(epochs=1, learning_rate=0.01).run(progress=False)
    lower = Rate()
    small_digits(epochs=2, learning_rate=0.001, callbacks=[lower]).run(
        progress=False, resume_from=first.run_dir
    )
    assert lower.rates == [pytest.approx(0.001)]
    same = Rate()
    small_digits(epochs=3, learning_rate=0.001, callbacks=[same]).run(
        progress=False, resume_from=first.run_dir
    )
    assert same.rates == [pytest.approx(0.001)]
