"""End to end: the digits demo pipeline, composed in Python and run from the CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import rxpipe
from rxpipe.testing import EventRecorder

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def load_example() -> ModuleType:
    """Import examples/digits.py as a module."""
    spec = importlib.util.spec_from_file_location("digits_example", ROOT / "examples" / "digits.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[rxpipe.RunResult, EventRecorder]:
    """The Python digits pipeline at 3 epochs, with its events recorded."""
    pipeline = load_example().build(
        epochs=3, runs_dir=str(tmp_path_factory.mktemp("runs")), min_accuracy=None
    )
    recorder = EventRecorder()
    pipeline.events.subscribe(recorder)
    return pipeline.run(progress=False), recorder


def test_events_arrive_in_order(demo_run: tuple[rxpipe.RunResult, EventRecorder]) -> None:
    """Run, epoch, evaluation and artifact events arrive in pipeline order with rising seq."""
    _, recorder = demo_run
    kinds = [
        k
        for k in recorder.kinds()
        if k
        in {"run_started", "epoch_ended", "evaluation_completed", "artifact_saved", "run_completed"}
    ]
    assert kinds == [
        "run_started",
        "epoch_ended",
        "epoch_ended",
        "epoch_ended",
        "artifact_saved",
        "evaluation_completed",
        "artifact_saved",
        "run_completed",
    ]
    seqs = [e.seq for e in recorder.events]
    assert seqs == sorted(seqs) == list(range(len(seqs)))
    epochs = recorder.of_type(rxpipe.EpochEnded)
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert set(epochs[0].logs) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert epochs[-1].logs["loss"] < epochs[0].logs["loss"]


def test_history_and_metrics_are_in_the_result(
    demo_run: tuple[rxpipe.RunResult, EventRecorder],
) -> None:
    """The result holds the epoch history and test metrics of a model that learned."""
    result, _ = demo_run
    assert len(result.history) == 3
    test = result.metrics["test"]
    assert test["accuracy"] > 0.8
    assert test["samples"] == sum(row for rows in test["confusion_matrix"] for row in rows)


def test_metrics_json_is_written(demo_run: tuple[rxpipe.RunResult, EventRecorder]) -> None:
    """metrics.json holds accuracy, per-class scores and the confusion matrix."""
    result, _ = demo_run
    assert result.run_dir is not None
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["test"]
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}
    assert {"precision", "recall", "f1", "support"} <= set(metrics["per_class"]["3"])
    assert len(metrics["confusion_matrix"]) == 10
    assert metrics["accuracy"] == result.metrics["test"]["accuracy"]


def test_exported_saved_model_predicts_like_the_trained_model(
    demo_run: tuple[rxpipe.RunResult, EventRecorder],
) -> None:
    """The SavedModel takes raw uint8 images and matches the in-memory model on normalized ones."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    result, _ = demo_run
    model_dir = Path(result.artifacts["model"])
    raw = load_digits().images[:32].astype(np.uint8)[..., None]
    expected = result.model(raw.astype("float32") / 16.0, training=False).numpy()  # type: ignore[misc]
    loaded = tf.saved_model.load(str(model_dir / "1"))
    served = loaded.signatures["serving_default"](features=tf.constant(raw))
    np.testing.assert_allclose(served["scores"].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(served["class_ids"].numpy(), expected.argmax(axis=-1))
    assert json.loads((model_dir / "labels.json").read_text()) == [str(d) for d in range(10)]


def test_keras_file_reloads(demo_run: tuple[rxpipe.RunResult, EventRecorder]) -> None:
    """The .keras file reloads into a model with the same weights."""
    import keras

    result, _ = demo_run
    reloaded = keras.models.load_model(Path(result.artifacts["model"]) / "model.keras")
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), result.model.predict(x, verbose=0))  # type: ignore[union-attr]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the rxpipe command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "rxpipe", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_cli_demo_reaches_the_accuracy_goal(tmp_path: Path) -> None:
    """`rxpipe run examples/digits.toml` (what `make demo` runs) exits 0 with accuracy >= 0.95."""
    out = run_cli(
        "run", str(ROOT / "examples" / "digits.toml"), "--runs-dir", str(tmp_path), cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    accuracy = float(out.stdout.split("test accuracy: ")[1].split()[0])
    assert accuracy >= 0.95
    assert "model saved to: " in out.stdout
    assert "epoch_ended" in out.stderr  # log lines when stderr is not a terminal
