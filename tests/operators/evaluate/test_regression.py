"""Tests of evaluate.regression: MAE, RMSE, R², and its pass thresholds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex

from rxpipe import (
    BatchError,
    ConfigError,
    DatasetMetadata,
    FeatureSpec,
    Pipeline,
    QualityGateError,
)
from rxpipe.context import RunContext
from rxpipe.model import TrainedModel
from rxpipe.operators import access, collect, evaluate, models, process, train
from rxpipe.operators.evaluate._regression import RegressionTotals
from rxpipe.testing import collect as run_stage
from rxpipe.testing import from_arrays


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


def streamed(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any], batch: int = 16) -> Any:
    """RegressionTotals' metrics of ``y`` and ``p`` added ``batch`` rows at a time."""
    totals = RegressionTotals()
    for start in range(0, len(y), batch):
        totals.add(y[start : start + batch], p[start : start + batch])
    return totals.metrics()


RNG = np.random.default_rng(1)
_PRICE_RATING = np.c_[RNG.normal(300_000, 50_000, 200), RNG.normal(3, 1, 200)]
_MEANS_0_100 = np.c_[RNG.normal(0, 1, 200), RNG.normal(100, 1, 200)]
_LARGE = 1e8 + RNG.normal(0, 1, 1000)
CASES = {
    # the second target is predicted worse than its mean: pooled R² said 0.99
    "different-scales": (
        _PRICE_RATING,
        _PRICE_RATING + np.c_[RNG.normal(0, 25_000, 200), RNG.normal(0, 1.5, 200)],
    ),
    # both targets worse than their means: pooled R² counted the gap between the means
    "means-0-and-100": (_MEANS_0_100, _MEANS_0_100 + RNG.normal(0, 1.2, (200, 2))),
    # sum(y²) - sum(y)²/n cancels catastrophically around 1e8
    "large-offset": (_LARGE, _LARGE + RNG.normal(0, 0.5, 1000)),
    "constant-exact": (np.full(50, 7.0), np.full(50, 7.0)),
    "constant-missed": (np.full(50, 7.0), np.full(50, 7.5)),
    "constant-and-varying": (
        np.c_[np.full(40, 0.1), np.arange(40.0)],
        np.c_[np.full(40, 0.1), np.arange(40.0) + RNG.normal(0, 3, 40)],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_metrics_match_scikit_learns_uniform_average(case: str) -> None:
    """Several targets, large values with a small spread and constant targets: R², MAE,
    MSE and RMSE per target, averaged over targets, as scikit-learn computes them."""
    from sklearn import metrics as skm

    y, p = CASES[case]
    metrics = streamed(y, p)
    assert metrics["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-9, abs=1e-9)
    assert metrics["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert metrics["mse"] == pytest.approx(skm.mean_squared_error(y, p))
    assert metrics["rmse"] == pytest.approx(skm.root_mean_squared_error(y, p))
    raw = skm.r2_score(y, p, multioutput="raw_values")
    assert [t["r2"] for t in metrics["per_target"]] == pytest.approx(list(np.atleast_1d(raw)))
    assert metrics["targets"] == len(metrics["per_target"]) == (1 if y.ndim == 1 else 2)


def test_a_constant_target_has_no_variance_whatever_its_rounding() -> None:
    """0.1 repeated has a mean that rounds off 0.1, so a naive total sum of squares is a tiny
    positive number and R² of a miss comes out near -1e31 (scikit-learn gives that); a
    constant target has none: R² is 0 for a miss, 1 for an exact prediction."""
    y = np.full(50, 0.1)
    assert streamed(y, np.full(50, 0.3))["r2"] == 0.0
    assert streamed(y, y.copy())["r2"] == 1.0


def test_the_result_does_not_depend_on_batching() -> None:
    """The same values cut into batches of 1, 7 or all at once give the same metrics."""
    y, p = CASES["means-0-and-100"]
    whole = streamed(y, p, batch=len(y))
    for size in (1, 7):
        cut = streamed(y, p, batch=size)
        assert cut["r2"] == pytest.approx(whole["r2"], rel=1e-12)
        assert cut["rmse"] == pytest.approx(whole["rmse"], rel=1e-12)


def test_labels_of_another_width_than_before_are_a_batch_error() -> None:
    """A batch with three targets after batches with two names both counts."""
    totals = RegressionTotals()
    totals.add(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(BatchError, match=r"expected 2 target\(s\) per sample, .* Received: 3"):
        totals.add(np.zeros((4, 3)), np.zeros((4, 3)))


def test_labels_that_are_not_finite_are_a_batch_error_naming_the_samples() -> None:
    """A NaN label in the evaluated split would make every metric NaN: it is named instead."""
    totals = RegressionTotals()
    labels = np.array([[1.0], [np.nan], [2.0], [np.inf]])
    with pytest.raises(BatchError, match=r"expected finite labels.* samples \[11, 13\]") as info:
        totals.add(labels, np.zeros((4, 1)), np.array([10, 11, 12, 13]))
    assert info.value.sample_ids == (11, 13)
    assert totals.samples == 0


def mean_predictor(means: list[float]) -> Any:
    """A Keras model that ignores its input and predicts ``means``: R² 0 on every target."""
    import keras

    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(
                len(means),
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant(means),
            ),
        ]
    )


def test_a_useless_model_of_two_targets_fails_the_r2_gate(run_context: RunContext) -> None:
    """Targets around 0 and 100, each predicted by its mean: R² is about 0, not 0.9999, and
    min_r2=0.5 fails the run."""
    rng = np.random.default_rng(0)
    y = np.c_[rng.normal(0, 1, 64), rng.normal(100, 1, 64)].astype("float32")
    features = rng.normal(size=(64, 5)).astype("float32")
    meta = DatasetMetadata("two", FeatureSpec((5,), "float32"))
    model = mean_predictor([float(y[:, 0].mean()), float(y[:, 1].mean())])
    data = from_arrays(features, y, batch_size=16, split="test", metadata=meta)
    trained = TrainedModel("two", model, data, meta)
    [evaluated] = run_stage(reactivex.just(trained).pipe(evaluate.regression()))
    metrics = evaluated.metrics["test"]
    assert metrics["r2"] == pytest.approx(0.0, abs=1e-5)
    assert [t["r2"] for t in metrics["per_target"]] == pytest.approx([0.0, 0.0], abs=1e-5)
    with pytest.raises(QualityGateError, match=r"expected R² >= 0\.5 \(got -?0\.0000\)"):
        run_stage(reactivex.just(trained).pipe(evaluate.regression(min_r2=0.5)))


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
    assert set(metrics) == {"samples", "targets", "mae", "mse", "rmse", "r2", "per_target"}
    assert metrics["targets"] == 1
    assert metrics["per_target"] == [{k: metrics[k] for k in ("mae", "mse", "rmse", "r2")}]
    assert metrics["rmse"] >= metrics["mae"] > 0
    assert json.loads((result.run_dir / "metrics.json").read_text())["test"]["r2"] == metrics["r2"]  # type: ignore[operator]
    with pytest.raises(QualityGateError, match=r"expected MAE <= 0\.5 .* on 'test'"):
        pipeline(tmp_path, max_mae=0.5).run(progress=False)


def test_bad_thresholds_are_config_errors() -> None:
    """Negative error bounds, an R² above 1 and unknown splits are rejected at construction."""
    with pytest.raises(ConfigError, match=r"evaluate\.regression\.max_mae"):
        evaluate.regression(max_mae=-1.0)
    with pytest.raises(ConfigError, match=r"evaluate\.regression\.split"):
        evaluate.regression(split="holdout")
    with pytest.raises(
        ConfigError, match=r"evaluate\.regression\.min_r2: expected .*<= 1\.0\. Received: 5\.0"
    ):
        evaluate.regression(min_r2=5.0)
    assert evaluate.regression(min_r2=1.0).params["min_r2"] == 1.0


@pytest.mark.parametrize("stage", [evaluate.regression, evaluate.classification])
@pytest.mark.parametrize("split", ["unsplit", "predict"])
def test_splits_without_labelled_held_out_data_are_config_errors(stage: Any, split: str) -> None:
    """'unsplit' (never trained on) and 'predict' (no labels) fail when built, not after
    training, listing the splits that can be evaluated."""
    name = stage.__name__
    with pytest.raises(ConfigError) as info:
        stage(split=split)
    assert str(info.value) == (
        f"evaluate.{name}.split: expected one of 'train', 'validation', 'test'. Received: {split!r}"
    )


@pytest.mark.parametrize("stage", [evaluate.regression, evaluate.classification])
def test_prefetch_below_one_is_a_config_error(stage: Any) -> None:
    """prefetch=0 fails when built (it failed with a raw ValueError after training)."""
    with pytest.raises(
        ConfigError, match=rf"evaluate\.{stage.__name__}\.prefetch: expected an int >= 1"
    ):
        stage(prefetch=0)
