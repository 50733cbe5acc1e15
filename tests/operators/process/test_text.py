"""Tests of process.vectorize: a vocabulary fitted on the training split, served in TF."""

from __future__ import annotations

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, ConfigError, StageError
from rxpipe.operators import process
from rxpipe.operators.process._text_steps import OOV, TextVectorize
from rxpipe.testing import collect, from_arrays, make_metadata

TRAIN = ["the cat sat", "the dog ran", "a cat ran fast"]
TEST = ["a zebra sat", "THE CAT!"]


def texts(values: list[str]) -> np.ndarray:  # type: ignore[type-arg]
    """An object array of str."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def stream() -> reactivex.Observable[Batch]:
    """Training texts, then test texts (one batch each)."""
    meta = make_metadata(texts(TRAIN))
    train = Batch(texts(TRAIN), np.array([0, 1, 0]), np.arange(3), meta, "train")
    test = Batch(texts(TEST), np.array([0, 0]), np.arange(3, 5), meta, "test")
    return reactivex.of(train, test)


def test_vocabulary_comes_from_the_training_split_only() -> None:
    """Tokens seen only in test ('zebra') map to the out-of-vocabulary id."""
    train, test = collect(stream().pipe(process.vectorize(sequence_length=4)))
    [step] = train.metadata.preprocessing
    assert isinstance(step, TextVectorize)
    assert "zebra" not in step.vocabulary
    assert step.vocabulary[:3] == ("cat", "ran", "the")  # most frequent first, ties A→Z
    zebra = test.features[0][1]
    assert zebra == OOV
    assert test.features[1].tolist()[:2] == train.features[0].tolist()[:2]  # 'the cat'
    assert train.metadata.feature_spec.value_range == (0.0, float(step.size - 1))


def test_multi_hot_and_max_tokens() -> None:
    """multi_hot gives bag-of-words vectors; max_tokens bounds the vocabulary."""
    train, _ = collect(stream().pipe(process.vectorize(max_tokens=4, output="multi_hot")))
    assert train.features.shape == (3, 4)
    assert train.features.dtype == np.float32
    assert set(np.unique(train.features)) <= {0.0, 1.0}


@pytest.mark.parametrize("output", ["int", "multi_hot"])
def test_numpy_and_tensorflow_vectorize_alike(output: str) -> None:
    """The serving path (TF ops, raw strings) gives the same ids as the data path."""
    import tensorflow as tf

    step = TextVectorize(("cat", "ran", "the", "it's"), sequence_length=5, output=output)
    sample = texts(["The cat, the CAT.", "", "ran\tfast\nit's", "  spaces   only  ", "ünïcode cat"])
    mine = step.apply(sample)
    theirs = step.apply_tf(tf.constant([s.encode() for s in sample])).numpy()
    np.testing.assert_array_equal(mine, theirs)


def test_non_text_features_are_explained() -> None:
    """Numbers instead of texts fail with what was expected."""
    source = from_arrays(np.zeros((3, 2), "float32"), split="train")
    with pytest.raises(StageError, match="expected one text per sample"):
        collect(source.pipe(process.vectorize()))


def test_bad_parameters() -> None:
    """Sizes and output modes are checked at construction."""
    with pytest.raises(ConfigError, match=r"process\.vectorize\.max_tokens: expected an int >= 3"):
        process.vectorize(max_tokens=2)
    with pytest.raises(ConfigError, match=r"process\.vectorize\.output"):
        process.vectorize(output="tfidf")
