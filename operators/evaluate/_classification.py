"""evaluate.classification: accuracy, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import numpy as np
from reactivex import operators as ops

from rxpipe.batch import Batch
from rxpipe.context import current_run
from rxpipe.errors import BatchError, QualityGateError
from rxpipe.events import EvaluationCompleted
from rxpipe.flow import iterate, map_batches
from rxpipe.model import TrainedModel, is_binary
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import fraction, positive_int
from ._splits import evaluated_split

PLUGIN = "evaluate.classification"


def classification_metrics(
    confusion: np.ndarray[Any, Any], label_names: tuple[str, ...]
) -> dict[str, Any]:
    """Metrics from a confusion matrix (rows: true class, columns: predicted class).

    Macro averages are the plain mean over the classes present in the split's labels or
    predictions (scikit-learn's default ``labels``); weighted averages weight each class
    by its support (its number of true samples).

    Example:
        >>> m = classification_metrics(np.array([[3, 1], [0, 4]]), ("a", "b"))
        >>> m["accuracy"], m["per_class"]["a"]["recall"], m["weighted_recall"]
        (0.875, 0.75, 0.875)
    """
    total = int(confusion.sum())
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    actual = confusion.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(actual > 0, true_positive / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (actual > 0) | (predicted > 0)
    support = actual.sum()

    def macro(values: np.ndarray[Any, Any]) -> float:
        return float(values[present].mean()) if present.any() else 0.0

    def weighted(values: np.ndarray[Any, Any]) -> float:
        return float((values * actual).sum() / support) if support else 0.0

    return {
        "samples": total,
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "weighted_precision": weighted(precision),
        "weighted_recall": weighted(recall),
        "weighted_f1": weighted(f1),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(actual[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion.astype(int).tolist(),
        "labels": list(label_names),
    }


@plugin("evaluate.classification")
def classification(
    split: str = "test", min_accuracy: float | None = None, prefetch: int = 4
) -> Operator[TrainedModel, TrainedModel]:
    """Evaluate a classifier on ``split``; write ``metrics.json`` in the run directory.

    Metrics: ``accuracy``; ``macro_precision``, ``macro_recall`` and ``macro_f1``, the
    mean over the classes that occur in the split's labels or predictions (a class
    predicted but absent from the labels counts, with precision 0; a class absent from
    both does not), as scikit-learn's ``average="macro"`` computes them;
    ``weighted_precision``, ``weighted_recall`` and ``weighted_f1``, the classes' values
    weighted by their support (``average="weighted"``); per-class precision, recall, F1
    and support; and the confusion matrix (rows: true class, columns: predicted).

    Labels are class indices, or one-hot (or soft) rows of one value per class summing
    to 1 (as ``train.fit`` with ``loss="categorical_crossentropy"`` takes them); a row's
    class is the column of its highest value (the first one on a tie), so one-hot labels
    give the same metrics as the class indices they encode. The predicted class is the
    column of the model's highest score.

    Args:
        split: the split to evaluate on: ``"test"``, ``"validation"`` or ``"train"``.
        min_accuracy: fail the run with :class:`~rxpipe.QualityGateError` below this.
        prefetch: batches read ahead of the model.

    Raises:
        ConfigError: for a split that cannot be evaluated, ``min_accuracy`` outside
            [0, 1], or ``prefetch`` below 1.
        BatchError: (as the stage's error) for labels that are neither class indices in
            range nor one-hot rows of the data set's classes, naming the samples at
            fault; or a model without one score per class.

    Example:
        >>> classification(min_accuracy=0.9).params["split"]
        'test'
    """
    which = evaluated_split(PLUGIN, split)
    if min_accuracy is not None:
        fraction(PLUGIN, "min_accuracy", min_accuracy)
    positive_int(PLUGIN, "prefetch", prefetch)

    def evaluate(trained: TrainedModel) -> TrainedModel:
        from rxpipe.training.checks import check_class_labels, class_indices
        from rxpipe.training.steps import predict_fn

        if not isinstance(trained, TrainedModel):
            raise BatchError(
                "evaluate.classification: expected a TrainedModel from a train.* stage. "
                f"Received: {type(trained).__name__}"
            )
        label_names = trained.metadata.label_names
        if label_names is None:
            raise BatchError(
                "evaluate.classification: expected a classification data set with label "
                "names. Received: none (use a regression evaluator)"
            )
        n = len(label_names)
        confusion = np.zeros((n, n), dtype=np.int64)
        predict = None
        # a binary classifier of one output: the second class past 0.5 (a logit past 0)
        threshold = (
            (0.0 if trained.logits else 0.5) if is_binary(trained.model, label_names) else None
        )

        def wanted(batch: Batch) -> bool:
            return batch.split is which

        data = trained.data.pipe(ops.filter(wanted))
        with closing(iterate(data, prefetch, name="rxpipe-evaluate-feed")) as batches:
            for batch in batches:
                if batch.labels is None:
                    raise BatchError(
                        "evaluate.classification: expected labelled samples. Received: no "
                        f"labels (samples {batch.ids[:4].tolist()}...)"
                    )
                check_class_labels("evaluate.classification", batch, batch.labels, label_names)
                if predict is None:
                    predict = predict_fn(trained.model, batch.features)  # type: ignore[arg-type]
                scores = np.asarray(predict(batch.features))
                if threshold is not None and scores.shape == (batch.size, 1):
                    predicted = (scores[:, 0] > threshold).astype(np.int64)
                elif scores.shape == (batch.size, n):
                    predicted = scores.argmax(axis=1)
                else:
                    raise BatchError(
                        f"evaluate.classification: expected the model to give one score per "
                        f"class ({n}) for each sample. Received: outputs of shape "
                        f"{scores.shape} for a batch of {batch.size}"
                    )
                np.add.at(confusion, (class_indices(batch.labels), predicted), 1)
        if predict is None:
            raise BatchError(
                f"evaluate.classification: expected batches with split {split!r}. "
                "Received: none (does access.split give it a share?)"
            )
        metrics = classification_metrics(confusion, label_names)
        run = current_run()
        run.metrics[split] = metrics
        run.save_json("metrics.json", run.metrics)
        run.publish(EvaluationCompleted, split=split, metrics=metrics)
        if min_accuracy is not None and metrics["accuracy"] < min_accuracy:
            raise QualityGateError(
                "evaluate.classification",
                f"expected accuracy >= {min_accuracy} on {split!r}. "
                f"Received: {metrics['accuracy']:.4f}",
            )
        return trained.evolve(metrics={**trained.metrics, split: metrics})

    return map_batches("evaluate.classification", evaluate)
