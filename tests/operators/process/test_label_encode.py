"""Tests of process.label_encode."""

from __future__ import annotations

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, ConfigError, StageError
from rxpipe.flow._tally import Tally, tallying
from rxpipe.operators import process
from rxpipe.testing import collect, make_metadata


def batches(train: list[object], test: list[object]) -> reactivex.Observable[Batch]:
    """A train batch and a test batch with the given labels."""
    meta = make_metadata(np.zeros((1, 1)))
    x = np.zeros((len(train) + len(test), 1))
    return reactivex.of(
        Batch(x[: len(train)], np.array(train, dtype=object), np.arange(len(train)), meta, "train"),
        Batch(
            x[len(train) :],
            np.array(test, dtype=object),
            np.arange(len(train), len(x)),
            meta,
            "test",
        ),
    )


def test_classes_are_learned_from_the_training_split() -> None:
    """Sorted training labels become the label names; every split is encoded with them."""
    train, test = collect(batches(["dog", "cat", "dog"], ["cat"]).pipe(process.label_encode()))
    assert train.labels.tolist() == [1, 0, 1]
    assert test.labels.tolist() == [0]
    assert train.metadata.label_names == ("cat", "dog")
    assert train.metadata is test.metadata


def test_numbers_sort_numerically_and_given_names_win() -> None:
    """Numeric labels sort as numbers; label_names fixes the order."""
    [train, _] = collect(batches([10, 9, 100], [9]).pipe(process.label_encode()))
    assert train.metadata.label_names == ("9", "10", "100")
    [train, _] = collect(batches(["b", "a"], ["a"]).pipe(process.label_encode(["b", "a"])))
    assert train.labels.tolist() == [0, 1]


def test_an_unknown_label_fails_naming_the_sample_or_is_skipped() -> None:
    """A test label unseen in training names the sample; under skip it is reported."""
    with pytest.raises(StageError, match=r"sample 2: expected a label among \['a', 'b'\]"):
        collect(batches(["a", "b"], ["z"]).pipe(process.label_encode()))
    tally = Tally("process.label_encode")
    with tallying(tally):
        stage = process.label_encode(on_error="skip")
        out = collect(batches(["a", "b"], ["a", "z"]).pipe(stage))
    assert [b.ids.tolist() for b in out] == [[0, 1], [2]]
    assert [s.sample_id for s in tally.skipped] == [3]


def test_nan_labels_are_missing_not_classes() -> None:
    """NaN labels (empty cells of a float column) are no class; they fail like None."""
    meta = make_metadata(np.zeros((1, 1)))
    labels = np.array([2.0, np.nan, 1.0, 3.0, 1.0, np.nan])
    batch = Batch(np.zeros((6, 1)), labels, np.arange(6), meta, "train")
    tally = Tally("process.label_encode")
    with tallying(tally):
        [out] = collect(reactivex.of(batch).pipe(process.label_encode(on_error="skip")))
    assert out.metadata.label_names == ("1", "2", "3")
    assert out.labels.tolist() == [1, 0, 2, 0]
    assert sorted(s.sample_id for s in tally.skipped) == [1, 5]
    with pytest.raises(StageError) as info:
        collect(reactivex.of(batch).pipe(process.label_encode()))
    assert str(info.value).endswith(
        "process.label_encode: sample 1: expected a label among ['1', '2', '3']. "
        "Received: a missing label (None or NaN)"
    )
    assert info.value.sample_ids == (1,)


def test_text_labels_are_classes_without_surrounding_spaces() -> None:
    """ " yes" (a CSV written "a, b, yes") and "yes " are the class "yes"."""
    train, test = collect(
        batches([" yes", "no ", "yes", "\tno"], ["yes\n"]).pipe(process.label_encode())
    )
    assert train.metadata.label_names == ("no", "yes")
    assert train.labels.tolist() == [1, 0, 1, 0]
    assert test.labels.tolist() == [1]
    [train, _] = collect(batches([" b", "a"], ["a"]).pipe(process.label_encode(["b", "a"])))
    assert train.labels.tolist() == [0, 1]
    with pytest.raises(ConfigError, match=r"label_names: expected names distinct without"):
        process.label_encode(["a", " a"])
