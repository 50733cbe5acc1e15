"""Tests of evaluate.regression: MAE, RMSE, R², and its pass thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rxpipe import ConfigError, Pipeline, QualityGateError
from rxpipe.operators import access, collect, evaluate, models, process, train
from rxpipe.operators.evaluate._regression import RegressionTotals


def test_metrics_match_scikit_learn() -> None:
    """Streaming totals give scikit-learn's MAE, RMSE and R², however the data is cut."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(0)
    y = rng.normal(100.0, 30.0, 97)
    p = y + rng.normal(0.0, 10.0, 97)
    totals = RegressionTotals()
    for start in range(0, 97, 10):
        totals.add(y[start : start + 10], p[start : start + 10, None])
    metrics = totals.metrics()
    assert metrics["samples"] == 97
    assert metrics["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, p)))
    assert metrics["r2"] == pytest.approx(r2_score(y, p))


def pipeline(runs_dir: Path, **gate: float) -> Pipeline:
    """Diabetes → standardize → MLP regression, two epochs."""
    return Pipeline(
        collect.diabetes(),
        access.split(0.7, 0.1, 0.2, seed=0),
        process.standardize(),
        access.batch(64),
        models.mlp(hidden=[16], dropout=0.0),
        train.fit(epochs=2, learning_rate=0.01, metrics=["mae"]),
        evaluate.regression(**gate),  # type: ignore[arg-type]
        name="regression",
        runs_dir=str(runs_dir),
    )


@pytest.mark.slow
def test_a_trained_regressor_is_evaluated_and_gated(tmp_path: Path) -> None:
    """Metrics land in the run result and metrics.json; a missed threshold fails the run."""
    result = pipeline(tmp_path).run(progress=False)
    metrics = result.metrics["test"]
    assert set(metrics) == {"samples", "mae", "mse", "rmse", "r2"}
    assert metrics["rmse"] >= metrics["mae"] > 0
    assert json.loads((result.run_dir / "metrics.json").read_text())["test"]["r2"] == metrics["r2"]  # type: ignore[operator]
    with pytest.raises(QualityGateError, match=r"expected MAE <= 0\.5 .* on 'test'"):
        pipeline(tmp_path, max_mae=0.5).run(progress=False)


def test_bad_thresholds_are_config_errors() -> None:
    """Negative error bounds and unknown splits are rejected at construction."""
    with pytest.raises(ConfigError, match=r"evaluate\.regression\.max_mae"):
        evaluate.regression(max_mae=-1.0)
    with pytest.raises(ConfigError, match=r"evaluate\.regression\.split"):
        evaluate.regression(split="holdout")
