"""CSV column names TensorFlow would rename (``a/b``, ``1st``, ``größe``) export and serve
under the names of the CSV, and two that TensorFlow would merge (``a/b``, ``a_b``) still
export; a column ``process.concat_columns`` leaves out is optional in serving."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rxpipe
from rxpipe.batch import FeatureSpec
from rxpipe.errors import BundleError, PredictionInputError
from rxpipe.operators.deploy._signatures import signature_names
from rxpipe.serving import Bundle
from rxpipe.serving.predict import predict_inputs

pytestmark = pytest.mark.slow
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
NUMERIC = ["a/b", "a_b", "1st", "größe", "x-y"]


def write_csv(path: Path, rows: int = 48) -> Path:
    """A CSV of five numeric columns with names TensorFlow renames, a text column
    ``home city`` and a label ``y`` that depends on ``a/b`` only."""
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*NUMERIC, "home city", "y"])
        for i in range(rows):
            values = rng.normal(size=len(NUMERIC)).round(3)
            writer.writerow([*values, ["Paris", "Lyon"][i % 2], int(values[0] > 0)])
    return path


def train_and_export(folder: Path) -> rxpipe.RunResult:
    """A tiny MLP on :func:`write_csv`'s table but ``x-y``, trained for one epoch and
    exported."""
    from rxpipe.operators import access, collect, deploy, models, process, train

    return rxpipe.Pipeline(
        collect.csv(str(write_csv(folder / "names.csv")), label="y"),
        access.split(train=0.8, validation=0.1, test=0.1, seed=0),
        process.label_encode(),
        process.one_hot(columns=["home city"]),
        process.standardize(),
        process.concat_columns(columns=["a/b", "a_b", "1st", "größe", "home city"]),
        access.batch(16),
        models.mlp(hidden=[4]),
        train.fit(epochs=1),
        deploy.export(),
        name="names",
        runs_dir=folder / "runs",
    ).run(progress=False)


@pytest.fixture(scope="module")
def names_run(tmp_path_factory: pytest.TempPathFactory) -> rxpipe.RunResult:
    """The module's run on columns with unusual names (trains once)."""
    return train_and_export(tmp_path_factory.mktemp("names"))


def rows() -> list[dict[str, Any]]:
    """Two JSON rows keyed by the CSV's column names."""
    return [
        {"a/b": 0.5, "a_b": -1.0, "1st": 0.25, "größe": 2.0, "x-y": -0.5, "home city": "Lyon"},
        {"a/b": -1.5, "a_b": 0.75, "1st": -2.0, "größe": 0.0, "x-y": 1.0, "home city": "Paris"},
    ]


def reference(result: rxpipe.RunResult, batch: dict[str, Any]) -> np.ndarray[Any, Any]:
    """The trained Keras model's scores for raw columns, preprocessed in numpy."""
    trained = result.trained
    assert trained is not None
    x: Any = batch
    for step in trained.metadata.preprocessing:
        x = step.apply(x)
    return np.asarray(trained.model(x, training=False))


def columns(samples: list[dict[str, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """Rows as one array per column: float32 numbers, object strings."""
    return {
        name: np.array([row[name] for row in samples], "object" if name == "home city" else "f4")
        for name in samples[0]
    }


def test_signature_names_are_unique_names_tensorflow_keeps() -> None:
    """Names TensorFlow keeps stay; others are made ASCII identifiers, never two alike."""
    spec = FeatureSpec((), "float32")
    names = signature_names(dict.fromkeys(["a_b", "a/b", "a-b", "", "7", "ok"], spec))
    assert names == {
        "a_b": "a_b",
        "a/b": "a_b_2",
        "a-b": "a_b_3",
        "": "input_",
        "7": "input_7",
        "ok": "ok",
    }


def test_columns_tensorflow_would_merge_export_and_serve_under_their_csv_names(
    names_run: rxpipe.RunResult,
) -> None:
    """``a/b`` and ``a_b`` no longer fail the export; the bundle takes the CSV's names and
    answers what the trained model answers (no column swapped for another)."""
    bundle = Bundle.load(names_run.run_dir)
    assert set(bundle.inputs) == {*NUMERIC, "home city"}
    card = bundle.card["inputs"]
    assert set(card) == set(bundle.inputs)
    assert card["a/b"]["signature_input"] == "a_b_2"
    assert "signature_input" not in card["a_b"]
    saved = bundle.card["saved_model"]["signatures"]["serving_default"]["inputs"]
    assert {c.get("signature_input", n) for n, c in card.items()} == set(saved)
    steps = json.loads((bundle.path / "preprocessing.json").read_text())
    assert set(steps["inputs"]) == set(steps["raw"]) == set(bundle.inputs)
    batch = columns(rows())
    np.testing.assert_allclose(
        bundle.predict(batch)["scores"], reference(names_run, batch), **TOLERANCE
    )


def test_rxpipe_predict_takes_rows_keyed_by_the_csv_names(names_run: rxpipe.RunResult) -> None:
    """A JSON row with the CSV's column names is read and answered as by the model."""
    bundle = Bundle.load(names_run.run_dir)
    [answer] = predict_inputs(bundle, [json.dumps(rows()[0])], k=2)
    scores = reference(names_run, columns(rows()[:1]))[0]
    expected = {label: float(s) for label, s in zip(bundle.labels or (), scores, strict=True)}
    assert {p["label"]: p["score"] for p in answer.top_k} == pytest.approx(expected, rel=1e-5)
    renamed = {("a_b_2" if k == "a/b" else k): v for k, v in rows()[0].items()}
    with pytest.raises(PredictionInputError, match="a_b_2"):
        list(predict_inputs(bundle, [json.dumps(renamed)]))


def test_a_bundle_without_recorded_names_serves_the_saved_models_names(
    names_run: rxpipe.RunResult, tmp_path: Path
) -> None:
    """A card without ``signature_input`` (a bundle exported before) loads, its inputs named
    as the SavedModel names them; a card naming an input the SavedModel lacks is refused."""
    old = shutil.copytree(Path(names_run.artifacts["model"]), tmp_path / "model")
    card = json.loads((old / "model_card.json").read_text())
    served = {}
    for name, entry in card["inputs"].items():
        served[entry.pop("signature_input", name)] = entry
    card["inputs"] = served
    (old / "model_card.json").write_text(json.dumps(card))
    bundle = Bundle.load(old)
    assert set(bundle.inputs) == set(served)
    batch = columns(rows())
    assert names_run.trained is not None
    names = signature_names(names_run.trained.metadata.raw_features)
    renamed = {names[name]: value for name, value in batch.items()}
    np.testing.assert_allclose(
        bundle.predict(renamed)["scores"], reference(names_run, batch), **TOLERANCE
    )
    card["inputs"]["a_b_2"]["signature_input"] = "nope"
    (old / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match=r"expected signature_input names.*nope"):
        Bundle.load(old)


def test_a_column_the_model_does_not_use_may_be_left_out(names_run: rxpipe.RunResult) -> None:
    """``x-y``, which concat_columns leaves out, is optional: the card says so, and rows
    without it (or with it, null or not) answer what the trained model answers."""
    bundle = Bundle.load(names_run.run_dir)
    assert bundle.card["inputs"]["x-y"]["optional"] is True
    assert [name for name, spec in bundle.inputs.items() if spec.optional] == ["x-y"]
    steps = json.loads((bundle.path / "preprocessing.json").read_text())
    assert steps["inputs"]["x-y"]["optional"] is True
    batch = columns(rows())
    expected = reference(names_run, batch)
    without = {name: value for name, value in batch.items() if name != "x-y"}
    np.testing.assert_allclose(bundle.predict(without)["scores"], expected, **TOLERANCE)
    np.testing.assert_allclose(bundle.predict(batch)["scores"], expected, **TOLERANCE)
    sent = [{k: v for k, v in rows()[0].items() if k != "x-y"}, {**rows()[1], "x-y": None}]
    answers = list(predict_inputs(bundle, [json.dumps(sent)], k=2))
    for answer, scores in zip(answers, expected, strict=True):
        labels = {label: float(s) for label, s in zip(bundle.labels or (), scores, strict=True)}
        assert {p["label"]: p["score"] for p in answer.top_k} == pytest.approx(labels, rel=1e-5)
    with pytest.raises(PredictionInputError) as info:
        bundle.predict({name: value for name, value in without.items() if name != "a/b"})
    assert str(info.value).endswith("Received: a mapping that lacks 'a/b'")
    assert "(and optionally ['x-y'], which the model does not use)" in str(info.value)


def test_a_column_only_marked_for_missing_numbers_stays_unused() -> None:
    """collect.csv's missing_numbers step touches every float column; a column that
    concat_columns then leaves out is still one the model does not use."""
    from rxpipe.operators.collect._missing_numbers import MissingNumbers
    from rxpipe.operators.deploy._signatures import unused_inputs
    from rxpipe.operators.process._tabular_steps import ConcatColumns

    raw = {"a": FeatureSpec((), "float32"), "b": FeatureSpec((), "float32")}
    steps = [MissingNumbers((-999.0,), ("a", "b")), ConcatColumns(("a",), (1,))]
    assert unused_inputs(raw, steps) == {"b"}
