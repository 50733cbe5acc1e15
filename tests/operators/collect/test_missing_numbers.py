"""Tests of MissingNumbers, the step collect.csv records for its numeric missing strings."""

from __future__ import annotations

import numpy as np

from rxpipe.operators.collect._missing_numbers import MissingNumbers, missing_numbers


def test_missing_numbers_are_the_float32_values_of_the_numeric_strings() -> None:
    """Only strings that read as finite float32 numbers count, rounded to float32, once
    each; NaN, infinities, overflowing and space-padded strings do not."""
    tokens = ["", "NA", "?", "-999", "-999.0", "-9.99e2", "0.1", "nan", "-inf", "1e39", " 5 "]
    assert missing_numbers(tokens) == (-999.0, float(np.float32(0.1)))
    assert missing_numbers(["", "NA", "N/A", "NaN", "nan", "null", "None"]) == ()


def test_marked_values_are_nan_in_numpy_and_tensorflow_alike() -> None:
    """Float columns (float32 and float64) get NaN where a value equals a missing number,
    compared in their dtype; integer and text columns pass unchanged."""
    import tensorflow as tf

    step = MissingNumbers((-999.0, 0.1), ("a", "b", "n", "t"))
    columns = {
        "a": np.array([1.5, -999.0, 0.1, -999.5, np.nan], np.float32),
        "b": np.array([0.1, -999.0, 0.1000000001, 2.0, 3.0], np.float64),
        "n": np.array([-999, 1, 2, 3, 4], np.int64),
        "t": np.array(["-999", "a", "b", "c", "d"], dtype=object),
    }
    mine = step.apply(columns)
    theirs = step.apply_tf({k: tf.constant(v.tolist()) for k, v in columns.items()})
    a = [1.5, np.nan, np.nan, -999.5, np.nan]
    np.testing.assert_array_equal(mine["a"], np.array(a, np.float32))
    assert np.isnan(mine["b"]).tolist() == [False, True, False, False, False]  # 0.1 as float32
    assert mine["n"].tolist() == [-999, 1, 2, 3, 4]
    assert mine["t"].tolist() == ["-999", "a", "b", "c", "d"]
    theirs_a = tf.cast(theirs["a"], tf.float32).numpy()
    np.testing.assert_array_equal(mine["a"], theirs_a)
    assert theirs["n"].numpy().tolist() == [-999, 1, 2, 3, 4]
    assert [t.decode() for t in theirs["t"].numpy().tolist()] == ["-999", "a", "b", "c", "d"]


def test_one_array_and_the_config() -> None:
    """Without columns the step marks the one array; its config is JSON-ready."""
    import tensorflow as tf

    step = MissingNumbers((-1.0,))
    x = np.array([[-1.0, 2.0], [3.0, -1.0]], np.float32)
    expected = [[True, False], [False, True]]
    assert np.isnan(step.apply(x)).tolist() == expected
    assert np.isnan(step.apply_tf(tf.constant(x)).numpy()).tolist() == expected
    assert step.to_config() == {"values": [-1.0], "columns": None}
    assert MissingNumbers(["-999"], ["x"]).to_config() == {"values": [-999.0], "columns": ["x"]}
