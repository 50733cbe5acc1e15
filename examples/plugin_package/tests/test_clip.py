"""Tests of process.clip, written with rxpipe.testing (fake sources, capturing sinks)."""

from __future__ import annotations

import numpy as np
import pytest
import reactivex
from rxpipe_example_plugins import Clip, clip

from rxpipe import ConfigError, StageError, registry
from rxpipe.testing import check_contract, collect, fail_on, from_arrays


def test_clip_limits_values_and_records_the_step() -> None:
    """Values end in [low, high] and the metadata records the Clip step for serving."""
    source = from_arrays(np.array([[-2.0], [0.25], [9.0]], "float32"), batch_size=2)
    batches = collect(source.pipe(clip(0.0, 1.0)))
    assert np.concatenate([b.features for b in batches]).ravel().tolist() == [0.0, 0.25, 1.0]
    assert batches[0].metadata.preprocessing == (Clip(0.0, 1.0),)


def test_clip_is_registered_and_validates_its_parameters() -> None:
    """The registry finds the plugin; bad parameters fail at construction."""
    assert "process.clip" in registry.names()
    with pytest.raises(ConfigError, match="expected low < high"):
        clip(1.0, 0.0)
    with pytest.raises(ConfigError, match=r"^plugins\[2\]\.high: expected low < high"):
        registry.create("process.clip", {"low": 1.0, "high": 0.0}, "plugins[2]")


def test_upstream_errors_pass_through_unchanged() -> None:
    """An error before the stage reaches the subscriber as it was raised."""
    source = from_arrays(np.zeros((4, 1), "float32"), batch_size=2).pipe(fail_on(3))
    with pytest.raises(StageError, match="boom"):
        collect(source.pipe(clip()))
    assert collect(reactivex.empty().pipe(clip())) == []


def test_clip_keeps_the_plugin_contract() -> None:
    """It completes, passes errors on, keeps order, disposes its upstream, leaks no thread."""
    check_contract(lambda: clip(0.0, 1.0))


def test_the_serving_side_clips_like_the_data_pipeline() -> None:
    """Clip.apply (numpy) and Clip.apply_tf (TensorFlow) agree, so serving sees training's data."""
    tf = pytest.importorskip("tensorflow")
    features = np.array([[-2.0, 0.25], [9.0, 1.0]], "float32")
    step = Clip(0.0, 1.0)
    assert np.array_equal(step.apply(features), step.apply_tf(tf.constant(features)).numpy())
