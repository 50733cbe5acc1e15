"""evaluate.regression: mean absolute error, root mean squared error and R²."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import numpy as np
from reactivex import operators as ops

from rxpipe.batch import Batch
from rxpipe.context import current_run
from rxpipe.errors import BatchError, ConfigError, QualityGateError, format_ids
from rxpipe.events import EvaluationCompleted
from rxpipe.flow import iterate, map_batches
from rxpipe.model import TrainedModel
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import positive_int
from ..process._standardize import Moments
from ._splits import evaluated_split


class RegressionTotals:
    """Running per-target sums for regression metrics, as scikit-learn averages them.

    Each target (each column of the labels) is measured on its own, then the targets'
    metrics are averaged with equal weight (scikit-learn's ``multioutput=
    "uniform_average"``): a well-predicted target cannot hide a useless one, however
    different their means or scales. The labels' variance is accumulated with Chan et
    al.'s parallel formula (:class:`~rxpipe.operators.process._standardize.Moments`),
    so targets with large values and a small spread (1e8 ± 1) keep their precision and
    the result does not depend on how the data is cut into batches.

    Example:
        >>> totals = RegressionTotals()
        >>> totals.add(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
        >>> m = totals.metrics()
        >>> m["mae"], m["r2"]
        (0.3333333333333333, 0.5)
    """

    def __init__(self) -> None:
        self.samples = 0
        self.targets: int | None = None
        self.labels = Moments()
        self.low: Any = np.inf
        self.high: Any = -np.inf
        self.sum_abs: Any = 0.0
        self.sum_sq: Any = 0.0

    def add(
        self,
        labels: np.ndarray[Any, Any],
        predictions: np.ndarray[Any, Any],
        ids: np.ndarray[Any, Any] | None = None,
    ) -> None:
        """Add a batch (labels and predictions of the same number of values per sample).

        Raises:
            BatchError: for labels that are not finite (naming their samples, from
                ``ids``), predictions of another width than the labels, or labels of
                another width than the earlier batches'.
        """
        y = np.asarray(labels, np.float64).reshape(len(labels), -1)
        p = np.asarray(predictions, np.float64).reshape(len(labels), -1)
        bad = ~np.isfinite(y).all(axis=1)
        if bad.any():
            named = (np.arange(len(y)) if ids is None else np.asarray(ids))[bad].tolist()
            raise BatchError(
                "evaluate.regression: expected finite labels. Received: NaN or infinite "
                f"labels for samples {format_ids(named)}",
                named,
            )
        if y.shape != p.shape:
            raise BatchError(
                f"evaluate.regression: expected {y.shape[1]} prediction(s) per sample, one per "
                f"target. Received: {p.shape[1]}"
            )
        if self.targets is not None and y.shape[1] != self.targets:
            raise BatchError(
                f"evaluate.regression: expected {self.targets} target(s) per sample, as in "
                f"the earlier batches. Received: {y.shape[1]}"
            )
        self.targets = y.shape[1]
        if not len(y):
            return
        error = p - y
        self.samples += len(y)
        self.labels.add(y)
        self.low = np.minimum(self.low, y.min(axis=0))
        self.high = np.maximum(self.high, y.max(axis=0))
        self.sum_abs = self.sum_abs + np.abs(error).sum(axis=0)
        self.sum_sq = self.sum_sq + (error**2).sum(axis=0)

    def per_target(self) -> dict[str, np.ndarray[Any, Any]]:
        """``mae``, ``mse``, ``rmse`` and ``r2`` of each target (arrays, one value each).

        R² is ``1 - residual / total sum of squares``; for a constant target (no
        variance) it is 1 when it is predicted exactly and 0 otherwise, as in
        scikit-learn.
        """
        if not self.samples:
            return dict.fromkeys(("mae", "mse", "rmse", "r2"), np.zeros(self.targets or 0))
        ss_res = np.asarray(self.sum_sq, np.float64)
        ss_tot = np.where(self.low == self.high, 0.0, self.labels.m2)  # exactly 0 if constant
        ratio = np.divide(ss_res, ss_tot, out=np.zeros_like(ss_res), where=ss_tot > 0)
        mse = ss_res / self.samples
        return {
            "mae": np.asarray(self.sum_abs, np.float64) / self.samples,
            "mse": mse,
            "rmse": np.sqrt(mse),
            "r2": np.where(ss_tot > 0, 1.0 - ratio, np.where(ss_res == 0, 1.0, 0.0)),
        }

    def metrics(self) -> dict[str, Any]:
        """``samples``, ``targets``, the mean over targets of ``mae``, ``mse``, ``rmse``
        and ``r2``, and ``per_target``: those four for each target, in column order."""
        each = self.per_target()
        names = ("mae", "mse", "rmse", "r2")
        return {
            "samples": self.samples,
            "targets": self.targets or 0,
            **{k: float(each[k].mean()) if len(each[k]) else 0.0 for k in names},
            "per_target": [{k: float(each[k][i]) for k in names} for i in range(self.targets or 0)],
        }


def _check(
    name: str, value: float | None, low: float | None = None, high: float | None = None
) -> None:
    if value is not None and (
        not np.isfinite(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        bounds = " and ".join(
            f"{op} {bound}" for op, bound in ((">=", low), ("<=", high)) if bound is not None
        )
        raise ConfigError(
            f"expected None or a finite number{f' {bounds}' if bounds else ''}. "
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
    1 is perfect, 0 is no better than predicting the target's mean, below 0 worse),
    computed for each target (each label column) and averaged over the targets with
    equal weight, as scikit-learn's ``multioutput="uniform_average"`` does: a target
    predicted no better than its mean pulls R² down however well the others are
    predicted. ``per_target`` holds the four metrics of each target, ``targets`` their
    number. A constant target's R² is 1 when it is predicted exactly, else 0.
    Any threshold given fails the run with :class:`~rxpipe.QualityGateError` when missed.

    Args:
        split: the split to evaluate on: ``"test"``, ``"validation"`` or ``"train"``.
        max_mae: fail when the MAE is above this.
        max_rmse: fail when the RMSE is above this.
        min_r2: fail when R² is below this (at most 1, a perfect fit).
        prefetch: batches read ahead of the model.

    Raises:
        ConfigError: for a split that cannot be evaluated, negative error bounds,
            ``min_r2`` above 1, or ``prefetch`` below 1.

    Example:
        >>> regression(min_r2=0.3).params["min_r2"]
        0.3
    """
    which = evaluated_split("evaluate.regression", split)
    _check("max_mae", max_mae, low=0.0)
    _check("max_rmse", max_rmse, low=0.0)
    _check("min_r2", min_r2, high=1.0)
    positive_int("evaluate.regression", "prefetch", prefetch)

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
                totals.add(batch.labels, np.asarray(predict(batch.features)), batch.ids)
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
