"""Tests of evaluate.classification: its metrics, on class indices and one-hot labels, and its
input checks (a trained model, labels in range)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex

import rxpipe
from rxpipe import BatchError, DatasetMetadata, FeatureSpec, StageError
from rxpipe.batch import Split
from rxpipe.context import RunContext
from rxpipe.model import TrainedModel
from rxpipe.operators import access, evaluate, models, train
from rxpipe.operators.evaluate._classification import classification_metrics
from rxpipe.testing import collect, from_arrays

META = DatasetMetadata("tiny", FeatureSpec((4,), "float32"), ("a", "b", "c"))


def trained_on(labels: np.ndarray[Any, Any]) -> TrainedModel:
    """An untrained three-class Dense model with test batches of 8 holding ``labels``."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    features = np.zeros((len(labels), 4), "float32")
    data = from_arrays(features, labels, batch_size=8, split="test", metadata=META)
    return TrainedModel("tiny", model, data, META)


@pytest.mark.parametrize("label", [5, -1])
def test_a_test_label_out_of_range_is_named_by_sample(label: int) -> None:
    """A label outside the label names fails the evaluation, naming its sample (no wrap-around)."""
    labels = np.arange(24) % 3
    labels[10] = label
    with pytest.raises(StageError) as info:
        collect(reactivex.just(trained_on(labels)).pipe(evaluate.classification()))
    assert (info.value.stage, info.value.sample_ids) == ("evaluate.classification", (10,))
    assert isinstance(info.value.cause, BatchError)
    assert "expected class indices from 0 to 2 (one per label name: 'a', 'b', 'c'). " in str(
        info.value
    )
    assert f"Received: {label} for samples [10]" in str(info.value)


@pytest.mark.parametrize("stage", [evaluate.classification, evaluate.regression])
def test_batches_instead_of_a_trained_model_are_a_batch_error(stage: Any) -> None:
    """Behind a custom stage (where the order check stops), evaluate names what it got."""
    source = from_arrays(np.zeros((4, 4), "float32"), np.arange(4) % 3, split="test")
    with pytest.raises(StageError) as info:
        collect(source.pipe(stage()))
    assert str(info.value).endswith("expected a TrainedModel from a train.* stage. Received: Batch")


def independent_metrics(
    classes: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any], n: int
) -> Any:
    """Accuracy, confusion matrix, macro and weighted averages (scikit-learn's default labels:
    the classes in the labels or the predictions) and per-class precision, recall, F1 and
    support, by scikit-learn."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(n))
    precision, recall, f1, support = precision_recall_fscore_support(
        classes, predicted, labels=labels, zero_division=0
    )
    averages = {
        average: precision_recall_fscore_support(
            classes, predicted, average=average, zero_division=0
        )[:3]
        for average in ("macro", "weighted")
    }
    return {
        "samples": len(classes),
        "accuracy": pytest.approx(accuracy_score(classes, predicted)),
        **{
            f"{average}_{name}": pytest.approx(value)
            for average, values in averages.items()
            for name, value in zip(("precision", "recall", "f1"), values, strict=True)
        },
        "confusion_matrix": confusion_matrix(classes, predicted, labels=labels).tolist(),
        "per_class": [
            pytest.approx([p, r, f, s])
            for p, r, f, s in zip(precision, recall, f1, support, strict=True)
        ],
    }


def comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    """evaluate.classification's metrics in :func:`independent_metrics`'s form."""
    keys = (
        "samples",
        "accuracy",
        *(f"{a}_{m}" for a in ("macro", "weighted") for m in ("precision", "recall", "f1")),
    )
    return {
        **{k: metrics[k] for k in keys},
        "confusion_matrix": metrics["confusion_matrix"],
        "per_class": [
            [c["precision"], c["recall"], c["f1"], c["support"]]
            for c in metrics["per_class"].values()
        ],
    }


@pytest.mark.parametrize(
    ("classes", "predicted"),
    [
        ([0, 0, 0, 1, 1, 1], [0, 2, 0, 1, 2, 1]),  # class 2 predicted, absent from the labels
        ([0, 0, 1, 1], [0, 1, 1, 1]),  # class 2 absent from both: left out
        ([2, 2, 2, 2], [0, 1, 2, 2]),  # one true class, three predicted
        ([0, 1, 2, 0, 1, 2, 2], [1, 1, 1, 1, 1, 1, 1]),  # one class predicted for all
    ],
    ids=["predicted-not-true", "absent", "one-true-class", "one-predicted-class"],
)
def test_averages_count_the_classes_scikit_learn_counts(
    classes: list[int], predicted: list[int]
) -> None:
    """Macro averages over the classes in the labels or the predictions, weighted averages by
    support: scikit-learn's average="macro" and "weighted" on the same predictions."""
    confusion = np.zeros((3, 3), np.int64)
    np.add.at(confusion, (classes, predicted), 1)
    metrics = classification_metrics(confusion, ("a", "b", "c"))
    expected = independent_metrics(np.array(classes), np.array(predicted), 3)
    assert comparable(metrics) == expected


CLASSES = np.array([0, 1, 2, 2, 1, 0, 0, 1, 2, 1, 1, 0, 2, 0, 1, 2, 2, 2, 0, 1, 0, 1, 2, 0, 1])
"""25 test labels: batches of 8 leave a last batch of one sample."""

SMOOTHED = np.eye(3)[CLASSES] * 0.9 + 0.1 / 3


@pytest.mark.parametrize(
    "labels",
    [
        CLASSES,
        CLASSES[:, np.newaxis],
        CLASSES.astype("float32"),
        np.eye(3, dtype="float32")[CLASSES],
        np.eye(3, dtype="uint8")[CLASSES],
        np.eye(3, dtype="bool")[CLASSES],
        SMOOTHED.astype("float32"),
    ],
    ids=["indices", "index-column", "float-indices", "one-hot", "one-hot-uint8", "bool", "soft"],
)
def test_every_label_format_gives_the_metrics_of_its_classes(
    labels: np.ndarray[Any, Any], run_context: RunContext
) -> None:
    """Indices, one-hot and soft rows of the same classes: the metrics scikit-learn computes
    from the model's predictions, in metrics.json too."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    features = np.random.default_rng(0).normal(0, 3, (len(CLASSES), 4)).astype("float32")
    data = from_arrays(features, labels, batch_size=8, split="test", metadata=META)
    [evaluated] = collect(
        reactivex.just(TrainedModel("tiny", model, data, META)).pipe(evaluate.classification())
    )
    predicted = np.asarray(model(features)).argmax(axis=1)
    assert len(set(predicted.tolist())) == 3  # the comparison covers every class
    metrics = evaluated.metrics["test"]
    assert comparable(metrics) == independent_metrics(CLASSES, predicted, 3)
    assert metrics["labels"] == ["a", "b", "c"]
    assert run_context.run_dir is not None
    saved = json.loads((run_context.run_dir / "metrics.json").read_text())
    assert saved["test"] == json.loads(json.dumps(metrics))
    assert {"weighted_precision", "weighted_recall", "weighted_f1"} <= set(saved["test"])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([0.5, 0.5, 0.5], "Received: [0.5, 0.5, 0.5] (sum 1.5) for samples [10]"),
        ([np.nan, 1.0, 0.0], "Received: [nan, 1, 0] (sum nan) for samples [10]"),
        ([1.5, -0.5, 0.0], "Received: [1.5, -0.5, 0] (sum 1) for samples [10]"),
    ],
    ids=["sum", "nan", "negative"],
)
def test_a_test_row_that_is_not_a_distribution_is_named_by_sample(
    row: list[float], message: str
) -> None:
    """One-hot test labels are checked like training labels, naming the sample at fault."""
    labels = np.eye(3, dtype="float32")[np.arange(24) % 3]
    labels[10] = row
    with pytest.raises(StageError) as info:
        collect(reactivex.just(trained_on(labels)).pipe(evaluate.classification()))
    assert (info.value.stage, info.value.sample_ids) == ("evaluate.classification", (10,))
    assert isinstance(info.value.cause, BatchError)
    assert (
        "evaluate.classification: expected one-hot (or soft) labels: rows of 3 non-negative "
        "values summing to 1, one per label name ('a', 'b', 'c'). " + message
    ) in str(info.value)


def test_one_hot_test_labels_of_the_wrong_width_name_the_batch() -> None:
    """Rows of 4 values for 3 classes: the first batch's samples, and the shape."""
    labels = np.eye(4, dtype="float32")[np.arange(24) % 4]
    with pytest.raises(StageError) as info:
        collect(reactivex.just(trained_on(labels)).pipe(evaluate.classification()))
    assert info.value.sample_ids == tuple(range(8))
    assert "Received: labels of shape (8, 4) for samples [0, 1, 2, 3, 4, 5, 6, 7]" in str(
        info.value
    )


def test_a_model_without_one_score_per_class_is_a_batch_error() -> None:
    """Two outputs for three classes would put predictions in the wrong confusion cells."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    data = from_arrays(np.zeros((8, 4), "float32"), np.arange(8) % 3, split="test", metadata=META)
    with pytest.raises(StageError) as info:
        collect(
            reactivex.just(TrainedModel("tiny", model, data, META)).pipe(evaluate.classification())
        )
    assert str(info.value).endswith(
        "evaluate.classification: expected the model to give one score per class (3) for "
        "each sample. Received: outputs of shape (8, 2) for a batch of 8"
    )


DIGIT_NAMES = tuple(str(d) for d in range(10))


def digit_labels(kind: str) -> np.ndarray[Any, Any]:
    """scikit-learn's 1,797 digit classes as ``kind`` labels."""
    from sklearn.datasets import load_digits

    classes = load_digits().target
    if kind == "indices":
        return classes.astype("int64")
    if kind == "soft":  # label smoothing 0.1
        return (np.eye(10)[classes] * 0.9 + 0.01).astype("float32")
    return np.eye(10, dtype=kind)[classes]  # keras.utils.to_categorical gives float32


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["float32", "int64", "soft", "indices"])
def test_a_model_trained_on_one_hot_digits_is_evaluated_on_its_predictions(
    kind: str, runs_dir: Path
) -> None:
    """Digits with one-hot (or soft) labels and categorical cross-entropy learn, and the
    evaluation equals scikit-learn's metrics of the model's predictions on the test split."""
    from sklearn.datasets import load_digits

    features = (load_digits().data / 16.0).astype("float32")
    labels = digit_labels(kind)
    meta = DatasetMetadata("digits", FeatureSpec((64,), "float32"), DIGIT_NAMES)
    loss = None if kind == "indices" else "categorical_crossentropy"
    pipeline = rxpipe.Pipeline(
        access.split(train=0.7, validation=0.15, test=0.15),
        models.mlp(hidden=(32,), dropout=0.0),
        train.fit(epochs=5, learning_rate=0.01, loss=loss),
        evaluate.classification(),
        source=from_arrays(features, labels, batch_size=64, metadata=meta),
        name="digits",
        runs_dir=runs_dir,
    )
    result = pipeline.run(progress=False)
    assert result.history[-1]["val_accuracy"] > 0.8  # chance is 0.1
    assert result.trained is not None
    assert result.model is not None
    test = [b for b in collect(result.trained.data) if b.split is Split.TEST]
    ids = np.concatenate([b.ids for b in test])
    predicted = np.asarray(result.model(features[ids])).argmax(axis=1)
    metrics = result.metrics["test"]
    assert comparable(metrics) == independent_metrics(load_digits().target[ids], predicted, 10)
    assert metrics["accuracy"] > 0.8
