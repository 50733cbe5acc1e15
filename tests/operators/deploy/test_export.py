"""deploy.export: the self-contained bundle, its model card, and its atomic write."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import attrs
import keras
import numpy as np
import pytest
import reactivex
import tensorflow as tf

import rxpipe
from rxpipe.batch import DatasetMetadata, FeatureSpec
from rxpipe.context import atomic_write
from rxpipe.errors import ConfigError, StageError
from rxpipe.model import TrainedModel
from rxpipe.operators import deploy
from rxpipe.serving import Bundle
from rxpipe.serving.inputs import rows_to_batch
from rxpipe.testing import collect

pytestmark = pytest.mark.slow
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def reference(trained: TrainedModel, raw: Any) -> np.ndarray[Any, Any]:
    """The trained Keras model's scores on raw input, preprocessed with numpy."""
    x = raw
    for step in trained.metadata.preprocessing:
        x = step.apply(x)
    return np.asarray(trained.model(x, training=False))


def png(image: np.ndarray[Any, Any], size: int | None = None, mode: str = "L") -> bytes:
    """A raw digit (values 0–16) as a PNG (0–255), optionally enlarged and in colour."""
    from PIL import Image

    picture = Image.fromarray(np.round(image[..., 0] * (255 / 16)).astype(np.uint8))
    if size is not None:
        picture = picture.resize((size, size)).convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def test_the_bundle_holds_everything_listed_in_its_card(digits_export: rxpipe.RunResult) -> None:
    """SavedModel (model/1), .keras, labels, preprocessing, pipeline, metrics and the card."""
    bundle = Path(digits_export.artifacts["model"])
    card = json.loads((bundle / "model_card.json").read_text())
    expected = {
        "1",
        "labels.json",
        "metrics.json",
        "model.keras",
        "model_card.json",
        "pipeline.toml",
        "preprocessing.json",
    }
    assert {p.name for p in bundle.iterdir()} == expected
    assert set(card["files"]) == expected
    assert (bundle / "1" / "saved_model.pb").is_file()
    assert json.loads((bundle / "labels.json").read_text()) == [str(d) for d in range(10)]
    pipeline = tomllib.loads((bundle / "pipeline.toml").read_text())
    assert pipeline["plugins"][-1]["use"] == "deploy.export"
    assert json.loads((bundle / "metrics.json").read_text()) == json.loads(
        json.dumps(digits_export.metrics)
    )


def test_the_model_card_describes_inputs_outputs_metrics_and_versions(
    digits_export: rxpipe.RunResult,
) -> None:
    """Card: raw input, outputs, labels, test metrics, creation time, rxpipe and TF versions."""
    card = json.loads((Path(digits_export.artifacts["model"]) / "model_card.json").read_text())
    assert card["format"] == "rxpipe.bundle/1"
    assert (card["name"], card["model"], card["task"]) == ("digits", "cnn", "classification")
    assert card["inputs"] == {
        "features": {
            "dtype": "uint8",
            "shape": [None, 8, 8, 1],
            "value_range": [0.0, 16.0],
            "kind": "array",
        }
    }
    assert card["outputs"]["scores"] == {"dtype": "float32", "shape": [None, 10]}
    assert card["outputs"]["class_ids"] == {"dtype": "int64", "shape": [None]}
    assert card["labels"] == [str(d) for d in range(10)]
    assert card["metrics"]["test"]["accuracy"] == digits_export.metrics["test"]["accuracy"]
    assert "per_class" not in card["metrics"]["test"]
    assert card["preprocessing"][0]["name"] == "rescale"
    assert set(card["saved_model"]["signatures"]) == {"serving_default", "serving_images"}
    assert card["versions"]["rxpipe"] == rxpipe.__version__
    assert card["versions"]["tensorflow"] == tf.__version__
    created = dt.datetime.fromisoformat(card["created"])
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(hours=1)
    assert card["run"] == {"run_id": digits_export.run_id, "pipeline": "digits"}
    assert card["training"]["epochs"] == 2


FRESH_PROCESS = """
import sys
import numpy as np
import tensorflow as tf

bundle, raw_path, out_path, *images = sys.argv[1:]
model = tf.saved_model.load(bundle + "/1")
raw = np.load(raw_path)
default = model.signatures["serving_default"](features=tf.constant(raw))
encoded = [open(path, "rb").read() for path in images]
decoded = model.signatures["serving_images"](images=tf.constant(encoded))
np.savez(
    out_path,
    scores=default["scores"].numpy(),
    class_ids=default["class_ids"].numpy(),
    image_scores=decoded["scores"].numpy(),
)
print(sorted({m.split(".")[0] for m in sys.modules} & {"rxpipe", "attrs", "reactivex"}))
"""


def test_plain_tensorflow_in_a_fresh_process_gives_the_trained_models_predictions(
    digits_export: rxpipe.RunResult, raw_digits: np.ndarray[Any, Any], tmp_path: Path
) -> None:
    """tf.saved_model.load alone (no rxpipe imported) answers raw digits and PNGs like the model."""
    trained = digits_export.trained
    assert trained is not None
    np.save(tmp_path / "raw.npy", raw_digits)
    images = []
    for index, (size, mode) in enumerate([(None, "L"), (None, "L"), (32, "RGB")]):
        path = tmp_path / f"digit{index}.png"
        path.write_bytes(png(raw_digits[index], size, mode))
        images.append(str(path))
    bundle = digits_export.artifacts["model"]
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PROCESS,
            bundle,
            str(tmp_path / "raw.npy"),
            str(tmp_path / "out.npz"),
            *images,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"  # nothing of rxpipe was imported
    answers = np.load(tmp_path / "out.npz")
    expected = reference(trained, raw_digits)
    np.testing.assert_allclose(answers["scores"], expected, **TOLERANCE)
    assert answers["class_ids"].tolist() == expected.argmax(-1).tolist()
    # 8×8 gray PNGs decode back to the very same raw digits.
    np.testing.assert_allclose(answers["image_scores"][:2], expected[:2], **TOLERANCE)
    # A 32×32 colour image is resized and converted: it still gets a distribution.
    assert answers["image_scores"][2].sum() == pytest.approx(1.0, abs=1e-5)


def test_bundle_loader_answers_like_the_trained_model(
    digits_export: rxpipe.RunResult, raw_digits: np.ndarray[Any, Any]
) -> None:
    """Bundle.load reads the card and runs the SavedModel on checked JSON rows."""
    trained = digits_export.trained
    assert trained is not None
    bundle = Bundle.load(Path(digits_export.artifacts["model"]).parent)
    assert (bundle.name, bundle.version, bundle.labels) == (
        "digits",
        "1",
        tuple(str(d) for d in range(10)),
    )
    assert bundle.accepts_images
    assert not bundle.accepts_text
    batch = rows_to_batch(raw_digits[:5].tolist(), bundle.inputs)
    np.testing.assert_allclose(
        bundle.predict(batch)["scores"], reference(trained, raw_digits[:5]), **TOLERANCE
    )
    scores = bundle.predict_images([png(raw_digits[0])])["scores"]
    np.testing.assert_allclose(scores, reference(trained, raw_digits[:1]), **TOLERANCE)


@attrs.frozen
class Exploding:
    """A preprocessing step whose TensorFlow side cannot be traced."""

    name: str = "exploding"

    def apply(self, features: Any) -> Any:
        return features

    def apply_tf(self, features: Any) -> Any:
        raise RuntimeError("no TensorFlow version of this step")

    def to_config(self) -> dict[str, Any]:
        return {}


def _tiny(meta: DatasetMetadata) -> TrainedModel:
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    return TrainedModel("tiny", model, reactivex.empty(), meta)


def test_a_failed_export_leaves_the_previous_bundle_whole(tmp_path: Path) -> None:
    """An export that fails midway leaves no partial directory and the old bundle intact."""
    target = tmp_path / "bundle"
    meta = DatasetMetadata("toy", FeatureSpec((3,), "float32"), ("a", "b"))
    good = _tiny(meta)
    collect(reactivex.just(good).pipe(deploy.export(path=str(target))))
    before = sorted(p.name for p in target.iterdir())
    bad = _tiny(meta.evolve(preprocessing=(Exploding(),)))
    with pytest.raises(StageError, match="no TensorFlow version of this step"):
        collect(reactivex.just(bad).pipe(deploy.export(path=str(target))))
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no .partial left behind


def test_export_never_deletes_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    """A path holding other files is rejected when the plugin is built; they stay."""
    (tmp_path / "thesis.txt").write_text("precious")
    with pytest.raises(ConfigError, match=r"deploy\.export\.path: .*holds thesis\.txt"):
        deploy.export(path=str(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"deploy\.export\.path: expected a folder"):
        deploy.export(path=str(tmp_path / "file"))
    assert (tmp_path / "thesis.txt").read_text() == "precious"


def test_export_of_something_not_trained_is_a_batch_error() -> None:
    """Data batches reaching deploy.export (after a custom stage) fail naming what it needs."""
    batches = reactivex.just(object()).pipe(deploy.export())
    with pytest.raises(StageError, match=r"expected a TrainedModel from a train\.\* stage"):
        collect(batches)


def test_named_tabular_inputs_become_named_signature_inputs(tmp_path: Path) -> None:
    """Raw tabular rows (one spec per column) are served as named inputs."""
    columns = {"age": keras.Input((1,), name="age"), "income": keras.Input((1,), name="income")}
    joined = keras.layers.Concatenate()([columns["age"], columns["income"]])
    model = keras.Model(columns, keras.layers.Dense(3, activation="softmax")(joined))
    meta = DatasetMetadata(
        "table",
        {"age": FeatureSpec((1,), "float32"), "income": FeatureSpec((1,), "float32")},
        ("low", "mid", "high"),
    )
    trained = TrainedModel("table", model, reactivex.empty(), meta)
    with atomic_write(tmp_path / "model") as target:
        deploy.write_bundle(trained, target, name="table")
    bundle = Bundle.load(tmp_path)
    assert set(bundle.inputs) == {"age", "income"}
    rows = [{"age": [30.0], "income": [1.5]}, {"age": [62.0], "income": [0.2]}]
    batch = rows_to_batch(rows, bundle.inputs)
    expected = model({k: np.asarray(v, "float32") for k, v in batch.items()}, training=False)
    np.testing.assert_allclose(bundle.predict(batch)["scores"], expected, **TOLERANCE)
    assert bundle.card["inputs"]["age"]["kind"] == "array"
    assert not bundle.accepts_images


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_models_export_and_serve_float32_scores(
    precision: str, tmp_path: Path, raw_digits: np.ndarray[Any, Any], digits_exporter: Any
) -> None:
    """A model trained in 16 bits exports, and its bundle answers in float32 like others."""
    result = digits_exporter(tmp_path, epochs=1, precision=precision)
    bundle = Bundle.load(Path(result.artifacts["model"]).parent)
    card = json.loads((Path(result.artifacts["model"]) / "model_card.json").read_text())
    signature = card["saved_model"]["signatures"]["serving_default"]
    assert signature["outputs"]["scores"]["dtype"] == "float32"
    scores = bundle.predict(rows_to_batch(raw_digits[:3].tolist(), bundle.inputs))["scores"]
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-2)
    assert keras.config.dtype_policy().name == "float32"


def _bundle_of(trained: TrainedModel, folder: Path) -> Bundle:
    """``trained`` written by deploy.write_bundle into ``folder / "model"``, loaded back."""
    with atomic_write(folder / "model") as target:
        deploy.write_bundle(trained, target, name="model")
    return Bundle.load(folder)


WINE_LIKE = DatasetMetadata("wine", FeatureSpec((3,), "float32"), ("a", "b", "c"))


def test_a_regression_head_on_data_with_label_names_exports_a_regressor(tmp_path: Path) -> None:
    """One output for three label names (head='regression' on class indices): the card says
    regression, with no labels and no class_ids; the scores are the model's values."""
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    trained = TrainedModel("mlp", model, reactivex.empty(), WINE_LIKE)
    assert trained.task == "regression"
    bundle = _bundle_of(trained, tmp_path)
    assert (bundle.card["task"], bundle.card["labels"], bundle.labels) == ("regression", None, None)
    assert bundle.is_regression
    assert not (tmp_path / "model" / "labels.json").exists()
    assert set(bundle.card["outputs"]) == {"scores"}
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    out = bundle.predict({"features": x})
    assert set(out) == {"scores"}
    np.testing.assert_allclose(out["scores"], model(x), **TOLERANCE)


def test_the_task_follows_the_models_head() -> None:
    """One score per label name is a classifier; another width, a rescaled (regression) head
    or no label names make a regressor; an explicit task is checked."""

    def dense(width: int, rescale: bool = False) -> Any:
        layers = [keras.Input((3,)), keras.layers.Dense(width)]
        return keras.Sequential(layers + ([keras.layers.Rescaling(2.0)] if rescale else []))

    def task(model: Any, meta: DatasetMetadata = WINE_LIKE) -> str:
        return TrainedModel("m", model, reactivex.empty(), meta).task

    assert task(dense(3)) == "classification"
    assert task(dense(1)) == "regression"
    assert task(dense(3, rescale=True)) == "regression"  # one-hot targets, regression head
    assert task(dense(3), attrs.evolve(WINE_LIKE, label_names=None)) == "regression"
    explicit = TrainedModel("m", dense(3), reactivex.empty(), WINE_LIKE, task="regression")
    assert explicit.evolve(metrics={"test": {}}).task == "regression"
    with pytest.raises(ValueError, match=r"expected one of \('classification', 'regression'\)"):
        TrainedModel("m", dense(3), reactivex.empty(), WINE_LIKE, task="ranking")
    with pytest.raises(ValueError, match="expected label names in the metadata of a classifier"):
        TrainedModel(
            "m",
            dense(1),
            reactivex.empty(),
            attrs.evolve(WINE_LIKE, label_names=None),
            task="classification",
        )


@pytest.mark.parametrize("name", ["", "a/b", "..", "my model", "x:predict"])
def test_a_name_that_cannot_be_served_is_a_config_error(name: str) -> None:
    """Empty names (served under the run id), slashes and colons (broken routes) fail when
    the plugin is built."""
    with pytest.raises(ConfigError) as info:
        deploy.export(name=name)
    assert str(info.value) == (
        "deploy.export.name: expected a non-empty name of letters, digits, '-', '_' and '.', "
        f"not only dots (it names the model in the serving routes). Received: {name!r}"
    )
    assert deploy.export(name="digits-v1.2_b").params["name"] == "digits-v1.2_b"


def test_a_model_on_a_saved_model_is_exported_without_a_keras_file(tmp_path: Path) -> None:
    """A TFSMLayer (models.load of a SavedModel) has no self-contained .keras form: the bundle
    leaves model.keras out, the card says why, and the SavedModel serves the whole model."""
    inner_in = keras.Input((3,), name="features")
    inner = keras.Model(inner_in, keras.layers.Dense(4, activation="relu")(inner_in))
    inner.export(str(tmp_path / "base"), verbose=False)
    inputs = keras.Input((3,), name="features")
    base = keras.layers.TFSMLayer(str(tmp_path / "base"), call_endpoint="serving_default")
    features = base(inputs)
    if isinstance(features, dict):
        features = next(iter(features.values()))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(features))
    meta = DatasetMetadata("toy", FeatureSpec((3,), "float32"), ("a", "b"))
    with atomic_write(tmp_path / "out" / "model") as target:
        deploy.write_bundle(TrainedModel("loaded", model, reactivex.empty(), meta), target)
    shutil.rmtree(tmp_path / "base")  # the bundle needs nothing outside it
    bundle = Bundle.load(tmp_path / "out")
    folder = tmp_path / "out" / "model"
    assert not (folder / "model.keras").exists()
    assert "model.keras" not in bundle.card["files"]
    skipped = bundle.card["keras_model"]
    assert skipped["path"] is None
    assert f"the SavedModel at {str(tmp_path / 'base')!r} through a TFSMLayer" in skipped["reason"]
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    np.testing.assert_allclose(bundle.predict({"features": x})["scores"], model(x), **TOLERANCE)


def test_the_card_names_the_keras_file(digits_export: rxpipe.RunResult) -> None:
    """A self-contained model's card points at its model.keras."""
    card = json.loads((Path(digits_export.artifacts["model"]) / "model_card.json").read_text())
    assert card["keras_model"] == {"path": "model.keras"}


def test_a_regression_head_on_wine_is_served_as_a_regressor(runs_dir: Path) -> None:
    """models.mlp(head='regression') on wine (label names, class index targets) trains,
    exports and serves values, not class ids: the audit's end-to-end case."""
    from rxpipe.operators import access, collect, evaluate, models, process, train

    result = rxpipe.Pipeline(
        collect.wine(),
        access.split(seed=0),
        process.standardize(),
        access.batch(16),
        models.mlp(hidden=[8], head="regression"),
        train.fit(epochs=2, loss="mse"),
        evaluate.regression(),
        deploy.export(),
        name="wine_reg",
        runs_dir=runs_dir,
    ).run(progress=False)
    assert result.trained is not None
    assert result.trained.task == "regression"
    bundle = Bundle.load(result.run_dir)
    assert (bundle.card["task"], bundle.labels) == ("regression", None)
    from sklearn.datasets import load_wine

    x = load_wine().data[:8].astype("float32")
    out = bundle.predict({"features": x})
    assert set(out) == {"scores"}
    assert out["scores"].shape == (8, 1)
