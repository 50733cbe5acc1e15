"""Tests of evaluate.classification's input checks: a trained model, labels in range."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import reactivex

from rxpipe import BatchError, DatasetMetadata, FeatureSpec, StageError
from rxpipe.model import TrainedModel
from rxpipe.operators import evaluate
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
