"""evaluate.regression: mean absolute error, root mean squared error and R²."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import numpy as np
from reactivex import operators as ops

from rxpipe.batch import Batch, Split
from rxpipe.context import current_run
from rxpipe.errors import BatchError, ConfigError, QualityGateError
from rxpipe.events import EvaluationCompleted
from rxpipe.flow import iterate, map_batches
from rxpipe.model import TrainedModel
from rxpipe.registry import plugin
from rxpipe.stage import Operator


class RegressionTotals:
    """Running sums for regression metrics, over every target value.

    Example:
        >>> totals = RegressionTotals()
        >>> totals.add(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
        >>> m = totals.metrics()
        >>> m["mae"], m["r2"]
        (0.3333333333333333, 0.5)
    """

    def __init__(self) -> None:
        self.samples = 0
        self.count = 0
        self.sum_y = 0.0
        self.sum_y2 = 0.0
        self.sum_abs = 0.0
        self.sum_sq = 0.0

    def add(self, labels: np.ndarray[Any, Any], predictions: np.ndarray[Any, Any]) -> None:
        """Add a batch (labels and predictions of the same number of values)."""
        y = np.asarray(labels, np.float64).reshape(len(labels), -1)
        p = np.asarray(predictions, np.float64).reshape(len(labels), -1)
        if y.shape != p.shape:
            raise BatchError(
                f"evaluate.regression: expected {y.shape[1]} prediction(s) per sample, one per "
                f"target. Received: {p.shape[1]}"
            )
        error = p - y
        self.samples += len(y)
        self.count += y.size
        self.sum_y += float(y.sum())
        self.sum_y2 += float((y**2).sum())
        self.sum_abs += float(np.abs(error).sum())
        self.sum_sq += float((error**2).sum())

    def metrics(self) -> dict[str, Any]:
        """``samples``, ``mae``, ``mse``, ``rmse``, ``r2`` (1 - residual / total variance)."""
        n = max(self.count, 1)
        total = self.sum_y2 - self.sum_y**2 / n
        mse = self.sum_sq / n
        return {
            "samples": self.samples,
            "mae": self.sum_abs / n,
            "mse": mse,
            "rmse": float(np.sqrt(mse)),
            "r2": 1.0 - self.sum_sq / total if total > 0 else 0.0,
        }


def _check(name: str, value: float | None, low: float | None = None) -> None:
    if value is not None and (not np.isfinite(value) or (low is not None and value < low)):
        raise ConfigError(
            f"expected None or a finite number{f' >= {low}' if low is not None else ''}. "
            f"Received: {value!r}",
            f"evaluate.regression.{name}",
        )


@plugin("evaluate.regression")
def regression(
    split: str = "test",
    max_mae: float | None = None,
    max_rmse: float | None = None,
    min_r2: float | None = None,
    prefetch: int = 4,
) -> Operator[TrainedModel, TrainedModel]:
    """Evaluate a regression model on ``split``; write ``metrics.json`` in the run directory.

    Metrics: ``mae``, ``mse``, ``rmse`` and ``r2`` (the coefficient of determination:
    1 is perfect, 0 is no better than predicting the mean), over every target value.
    Any threshold given fails the run with :class:`~rxpipe.QualityGateError` when missed.

    Args:
        split: the split to evaluate on.
        max_mae: fail when the MAE is above this.
        max_rmse: fail when the RMSE is above this.
        min_r2: fail when R² is below this.
        prefetch: batches read ahead of the model.

    Example:
        >>> regression(min_r2=0.3).params["min_r2"]
        0.3
    """
    try:
        which = Split(split)
    except ValueError:
        raise ConfigError(
            f"expected one of {[s.value for s in Split]}. Received: {split!r}",
            "evaluate.regression.split",
        ) from None
    _check("max_mae", max_mae, 0.0)
    _check("max_rmse", max_rmse, 0.0)
    _check("min_r2", min_r2)
    if prefetch < 1:
        raise ConfigError(
            f"expected an int >= 1. Received: {prefetch!r}", "evaluate.regression.prefetch"
        )

    def evaluate(trained: TrainedModel) -> TrainedModel:
        from rxpipe.training.steps import predict_fn

        if not isinstance(trained, TrainedModel):
            raise BatchError(
                "evaluate.regression: expected a TrainedModel from a train.* stage. "
                f"Received: {type(trained).__name__}"
            )
        totals = RegressionTotals()
        predict = None

        def wanted(batch: Batch) -> bool:
            return batch.split is which

        data = trained.data.pipe(ops.filter(wanted))
        with closing(iterate(data, prefetch, name="rxpipe-evaluate-feed")) as batches:
            for batch in batches:
                if batch.labels is None:
                    raise BatchError(
                        "evaluate.regression: expected labelled samples. Received: no labels "
                        f"(samples {batch.ids[:4].tolist()}...)"
                    )
                if predict is None:
                    predict = predict_fn(trained.model, batch.features)  # type: ignore[arg-type]
                totals.add(batch.labels, np.asarray(predict(batch.features)))
        if predict is None:
            raise BatchError(
                f"evaluate.regression: expected batches with split {split!r}. "
                "Received: none (does access.split give it a share?)"
            )
        metrics = totals.metrics()
        run = current_run()
        run.metrics[split] = metrics
        run.save_json("metrics.json", run.metrics)
        run.publish(EvaluationCompleted, split=split, metrics=metrics)
        failed = [
            f"{name} {op} {limit} (got {metrics[key]:.4f})"
            for name, key, op, limit, missed in (
                ("MAE", "mae", "<=", max_mae, max_mae is not None and metrics["mae"] > max_mae),
                (
                    "RMSE",
                    "rmse",
                    "<=",
                    max_rmse,
                    max_rmse is not None and metrics["rmse"] > max_rmse,
                ),
                ("R²", "r2", ">=", min_r2, min_r2 is not None and metrics["r2"] < min_r2),
            )
            if missed
        ]
        if failed:
            raise QualityGateError(
                "evaluate.regression",
                f"expected {'; '.join(failed)} on {split!r}. "
                f"Received: MAE {metrics['mae']:.4f}, RMSE {metrics['rmse']:.4f}, "
                f"R² {metrics['r2']:.4f}",
            )
        return trained.evolve(metrics={**trained.metrics, split: metrics})

    return map_batches("evaluate.regression", evaluate)
