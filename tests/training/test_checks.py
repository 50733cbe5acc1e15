"""Tests of the label checks: class indices, and one-hot (or soft) rows of class probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxpipe import BatchError, ConfigError, DatasetMetadata, FeatureSpec
from rxpipe.batch import Batch
from rxpipe.training.checks import check_batch, check_class_labels, check_loss, class_indices

NAMES = ("a", "b", "c")
META = DatasetMetadata("tiny", FeatureSpec((2,), "float32"), NAMES)


def batch_of(labels: np.ndarray[Any, Any], first_id: int = 100) -> Batch:
    """A batch of ``labels`` (zero features) whose sample ids start at ``first_id``."""
    ids = np.arange(first_id, first_id + len(labels))
    return Batch(np.zeros((len(labels), 2), "float32"), labels, ids, META, "train")


def one_hot(indices: list[int], dtype: str = "float32", classes: int = 3) -> np.ndarray[Any, Any]:
    """``indices`` as one-hot rows of ``dtype``."""
    return np.eye(classes, dtype=dtype)[indices]


def check(labels: np.ndarray[Any, Any], one_hot: bool | None = None) -> None:
    """check_class_labels of a batch of ``labels`` (ids from 100) for the classes a, b, c."""
    check_class_labels("train.fit", batch_of(labels), labels, NAMES, one_hot)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "uint8", "bool"])
def test_one_hot_rows_of_any_numeric_dtype_pass(dtype: str) -> None:
    """keras.utils.to_categorical's float32 rows, and int, uint8 and bool rows, are classes."""
    labels = one_hot([0, 2, 1, 2], dtype)
    check(labels)
    check(labels, one_hot=True)
    assert class_indices(labels).tolist() == [0, 2, 1, 2]


@settings(max_examples=60, deadline=None)
@given(
    indices=st.lists(st.integers(0, 11), min_size=1, max_size=40),
    extra=st.integers(0, 20),
    smoothing=st.floats(0.0, 0.95),
    dtype=st.sampled_from(["float16", "float32", "float64"]),
)
def test_smoothed_rows_pass_and_keep_their_class(
    indices: list[int], extra: int, smoothing: float, dtype: str
) -> None:
    """Label smoothing (y * (1 - s) + s / classes) keeps rows valid and argmax at the class."""
    classes = max(indices) + 1 + extra
    if classes < 2:
        classes = 2
    names = tuple(str(i) for i in range(classes))
    rows = np.eye(classes)[indices] * (1 - smoothing) + smoothing / classes
    labels = rows.astype(dtype)
    check_class_labels("train.fit", batch_of(labels), labels, names, one_hot=True)
    assert class_indices(labels).tolist() == indices


@pytest.mark.parametrize(
    ("row", "dtype", "shown"),
    [
        ([0.5, 0.5, 0.5], "float32", "[0.5, 0.5, 0.5] (sum 1.5)"),
        ([0.0, 0.0, 0.0], "float32", "[0, 0, 0] (sum 0)"),
        ([1.5, -0.5, 0.0], "float32", "[1.5, -0.5, 0] (sum 1)"),
        ([0.7, 0.2, 0.09], "float32", "(sum 0.99)"),
        ([np.nan, 1.0, 0.0], "float64", "[nan, 1, 0] (sum nan)"),
        ([1, 1, 0], "int64", "[1, 1, 0] (sum 2)"),
        ([2, -1, 0], "int64", "[2, -1, 0] (sum 1)"),
        ([True, True, False], "bool", "[1, 1, 0] (sum 2)"),
    ],
    ids=["sum-1.5", "zeros", "negative", "sum-0.99", "nan", "multi-hot", "int-negative", "bool"],
)
def test_a_row_that_is_not_a_distribution_is_named_by_sample(
    row: list[Any], dtype: str, shown: str
) -> None:
    """Rows must be non-negative and sum to 1; the error shows the row and names its sample."""
    labels = one_hot([0, 1, 2, 0, 1], dtype)
    labels[3] = np.asarray(row, dtype)
    with pytest.raises(BatchError) as info:
        check(labels)
    assert info.value.sample_ids == (103,)
    message = str(info.value)
    assert message.startswith(
        "train.fit: expected one-hot (or soft) labels: rows of 3 non-negative values summing "
        "to 1, one per label name ('a', 'b', 'c'). Received: "
    )
    assert message.endswith(f"{shown} for samples [103]")


def test_float_rows_may_round_a_little_but_not_more() -> None:
    """A float32 row 0.0005 off 1 passes (rounding); 0.002 off fails."""
    labels = np.array([[0.3, 0.3, 0.4005], [0.3, 0.3, 0.402]], "float32")
    with pytest.raises(BatchError) as info:
        check(labels)
    assert info.value.sample_ids == (101,)
    check(labels[:1])


def test_many_bad_rows_show_three_and_name_all() -> None:
    """Error messages stay short: three rows shown, every sample id kept on the error."""
    labels = np.full((6, 3), 0.5, "float32")
    with pytest.raises(BatchError, match=r"\(sum 1\.5\); \.\.\. for samples") as info:
        check(labels)
    assert info.value.sample_ids == tuple(range(100, 106))


@pytest.mark.parametrize("width", [2, 4])
def test_rows_of_the_wrong_width_name_every_sample_of_the_batch(width: int) -> None:
    """One-hot rows need one column per label name."""
    labels = np.eye(width, dtype="float32")[[0, 1, 1]]
    with pytest.raises(BatchError) as info:
        check(labels)
    assert info.value.sample_ids == (100, 101, 102)
    assert str(info.value).endswith(
        "one per label name ('a', 'b', 'c'). Received: labels of shape "
        f"(3, {width}) for samples [100, 101, 102]"
    )


def test_text_rows_are_rejected_with_their_dtype() -> None:
    """Rows of strings are no class probabilities."""
    labels = np.array([["1", "0", "0"]] * 2)
    with pytest.raises(
        BatchError, match=r"Received: labels of dtype <U1 \(first \['1', '0', '0'\]"
    ):
        check(labels)


def test_labels_of_more_axes_are_neither_indices_nor_rows() -> None:
    """Per-pixel labels and the like are named for what they are, not trained on."""
    labels = np.zeros((2, 3, 3), "float32")
    with pytest.raises(BatchError) as info:
        check(labels)
    assert info.value.sample_ids == (100, 101)
    assert str(info.value) == (
        "train.fit: expected one label per sample: a class index (shape (n,)) or a row of 3 "
        "class probabilities (shape (n, 3)). Received: labels of shape (2, 3, 3) for samples "
        "[100, 101]"
    )


@pytest.mark.parametrize(
    ("labels", "one_hot", "message"),
    [
        (np.array([0, 1]), True, "expected one-hot labels of width 3, as in the first batch. "),
        (one_hot([0, 1]), False, "expected class indices, as in the first batch. "),
    ],
    ids=["indices-after-one-hot", "one-hot-after-indices"],
)
def test_a_batch_in_another_format_than_the_first_is_a_batch_error(
    labels: np.ndarray[Any, Any], one_hot: bool, message: str
) -> None:
    """Training steps are traced for one label shape: a change is named, not a graph error."""
    with pytest.raises(BatchError) as info:
        check(labels, one_hot=one_hot)
    assert message + f"Received: labels of shape {labels.shape} for samples [100, 101]" in str(
        info.value
    )
    assert info.value.sample_ids == (100, 101)


def test_class_indices_keep_their_checks_and_column_shape() -> None:
    """Class indices (n,) and (n, 1), whole floats too, pass; out of range still fails."""
    check(np.array([0, 2, 1]), one_hot=False)
    check(np.array([[0], [2]]), one_hot=False)
    check(np.array([0.0, 2.0]))
    assert class_indices(np.array([[2], [0]])).tolist() == [2, 0]
    assert class_indices(np.array([2.0, 1.0])).dtype == np.int64
    with pytest.raises(BatchError, match="expected class indices from 0 to 2"):
        check(np.array([0, 3]), one_hot=False)


def test_check_batch_finds_non_finite_one_hot_rows_first() -> None:
    """A NaN in a one-hot row is named by the finite-labels check, like any NaN label."""
    labels = one_hot([0, 1, 2])
    labels[1, 1] = np.inf
    batch = batch_of(labels)
    with pytest.raises(BatchError, match="expected finite labels. .* for samples \\[101\\]"):
        check_batch("train.fit", batch, batch.features, labels, False, one_hot=True)


def test_check_loss_takes_categorical_losses_for_one_hot_rows() -> None:
    """One-hot rows: categorical losses pass; sparse and a model of another width do not."""
    labels = one_hot([0, 1, 2, 0])
    for loss in ("categorical_crossentropy", "categorical_focal_crossentropy", "kl_divergence"):
        check_loss(loss, NAMES, labels, 3, "train.fit.loss")
    with pytest.raises(ConfigError, match="for one-hot labels, set 'categorical_crossentropy'"):
        check_loss(None, NAMES, labels, 3, "train.fit.loss")
    with pytest.raises(ConfigError) as info:
        check_loss("categorical_crossentropy", NAMES, labels, 1, "train.fit.loss")
    assert str(info.value) == (
        "train.fit.loss: expected a model with one score per class (3) for one-hot labels of "
        "width 3. Received: 'categorical_crossentropy', for a model with 1 output(s) per sample "
        "(for a model loaded with models.load, models.load(new_head=True) gives it an output "
        "layer of 3 scores)"
    )


def test_a_model_of_other_classes_is_pointed_to_a_new_head() -> None:
    """A 10-class model on 3 classes (e.g. models.load) hints new_head=True, not regression."""
    indices = np.array([0, 1, 2, 0])
    with pytest.raises(ConfigError) as info:
        check_loss(None, NAMES, indices, 10, "train.fit.loss")
    message = str(info.value)
    assert message.startswith(
        "train.fit.loss: expected a model with one score per class (3) for "
        "'sparse_categorical_crossentropy'. Received: None (the default, "
        "'sparse_categorical_crossentropy'), for a model with 10 output(s) per sample"
    )
    assert "a model made for 10 classes? " in message
    assert "models.load(new_head=True) gives it an output layer of 3 scores" in message
    assert "head='regression'" not in message
    with pytest.raises(ConfigError, match=r"models\.load\(new_head=True\)") as info:
        check_loss(None, NAMES, one_hot([0, 1, 2], classes=3), 10, "train.fit.loss")
    with pytest.raises(ConfigError) as info:
        check_loss(None, NAMES, indices, 1, "train.fit.loss")
    assert "(with head='regression', set a regression loss such as 'mse'; " in str(info.value)
    assert "models.load(new_head=True)" in str(info.value)
