"""The example pipelines (examples/*.toml) run end to end at tiny sizes, and serve raw input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rxpipe import Pipeline, RunResult

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, runs_dir: Path, overrides: Sequence[str]) -> RunResult:
    """Run examples/<name>.toml with overrides, from the repository root's view."""
    settings = [f'pipeline.runs_dir="{runs_dir}"', *overrides]
    return Pipeline.from_file(EXAMPLES / f"{name}.toml", settings).run(progress=False)


def serve(result: RunResult, raw: object) -> np.ndarray:  # type: ignore[type-arg]
    """Class ids (or scores) from the exported SavedModel, given raw input."""
    import tensorflow as tf

    bundle = tf.saved_model.load(str(Path(result.artifacts["model"]) / "1"))
    out = bundle.signatures["serving_default"](features=tf.constant(raw))
    return np.asarray(out["class_ids"] if "class_ids" in out else out["scores"])


def test_image_folder_example(digit_folder: Path, tmp_path: Path) -> None:
    """PNG folder → decoded, cached, augmented → CNN; the bundle takes PNG bytes."""
    result = run_example(
        "image_folder",
        tmp_path,
        [
            f'collect.image_folder.path="{digit_folder}"',
            "train.epochs=2",
            "evaluate.min_accuracy=0.0",
        ],
    )
    assert result.metrics["test"]["samples"] > 0
    files = sorted(digit_folder.glob("*/*.png"))[:6]
    served = serve(result, [f.read_bytes() for f in files])
    assert served.shape == (6,)
    assert result.model is not None
    from rxpipe.operators.process._image_steps import DecodeImage

    pixels = DecodeImage(1, (16, 16)).apply(np.array([f.read_bytes() for f in files], object))
    direct = result.model.predict(pixels.astype("float32") / 255.0, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(served, direct)


def test_text_example(tmp_path: Path) -> None:
    """The topics corpus → label_encode → vectorize → text classifier; the bundle takes text."""
    result = run_example("text", tmp_path, ["train.epochs=2", "evaluate.min_accuracy=0.0"])
    assert result.metrics["test"]["samples"] == 60
    assert result.metrics["test"]["labels"] == ["cooking", "sports", "technology", "weather"]
    served = serve(result, ["The chef bakes bread", "Heavy rain swept through the coast"])
    assert served.shape == (2,)


def test_wine_example(tmp_path: Path) -> None:
    """Wine → stratified split → standardize → MLP; the bundle takes raw measurements."""
    from sklearn.datasets import load_wine

    result = run_example("wine", tmp_path, ["train.epochs=3", "evaluate.min_accuracy=0.0"])
    assert result.metrics["test"]["samples"] == 36
    raw = load_wine().data[:5].astype("float32")
    assert serve(result, raw).shape == (5,)


def test_diabetes_example(tmp_path: Path) -> None:
    """Diabetes → standardize → MLP regression → MAE/RMSE/R²."""
    result = run_example("diabetes", tmp_path, ["train.epochs=3", "evaluate.min_r2=-100.0"])
    assert {"mae", "rmse", "r2"} <= set(result.metrics["test"])
    from sklearn.datasets import load_diabetes

    scores = serve(result, load_diabetes(scaled=False).data[:4].astype("float32"))
    assert scores.shape == (4, 1)
    assert 0 < float(scores.mean()) < 400


def test_my_model_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Your own Keras model by import path (from the repository root), a Keras loss config
    with from_logits: the bundle serves probabilities."""
    import tensorflow as tf

    monkeypatch.chdir(EXAMPLES.parent)
    result = run_example("my_model", tmp_path, ["train.epochs=2", "evaluate.min_accuracy=0.0"])
    assert result.model is not None
    assert result.model.name == "my_cnn"
    assert "val_top2" in result.history[-1]
    from sklearn.datasets import load_digits

    raw = load_digits().images[:3, :, :, np.newaxis].astype("uint8")
    bundle = tf.saved_model.load(str(Path(result.artifacts["model"]) / "1"))
    scores = np.asarray(bundle.signatures["serving_default"](features=tf.constant(raw))["scores"])
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
