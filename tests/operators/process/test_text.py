"""Tests of process.vectorize: a vocabulary fitted on the training split, served in TF."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("output", ["int", "multi_hot"])
def test_nul_characters_do_not_cut_the_served_text_short(output: str) -> None:
    """A NUL does not end the text in TF, whose lowercase alone would stop at it."""
    import tensorflow as tf

    step = TextVectorize(("cat", "ran", "the", "a\x00b"), sequence_length=6, output=output)
    sample = texts(["The\x00 CAT ran", "A\x00B the", "\x00", "x\x00\x00THE cat"])
    mine = step.apply(sample)
    theirs = step.apply_tf(tf.constant([s.encode() for s in sample])).numpy()
    np.testing.assert_array_equal(mine, theirs)
    if output == "int":
        assert mine[1].tolist()[:2] == [5, 4]  # 'a\x00b' is a token, lowercased as a whole


def test_multi_hot_keeps_its_width_in_a_serving_graph() -> None:
    """In a graph over a batch of unknown size the width is known (export needs it)."""
    import tensorflow as tf

    step = TextVectorize(("cat", "dog"), output="multi_hot")
    graph = tf.function(step.apply_tf, input_signature=[tf.TensorSpec([None], tf.string)])
    assert graph.get_concrete_function().structured_outputs.shape.as_list() == [None, 4]


@pytest.mark.parametrize(
    ("value", "received"),
    [
        (7, r"7 \(int\)"),
        (float("nan"), r"nan \(float\)"),
        (b"caf\xe9 au lait", r"bytes that are not UTF-8 \('invalid continuation byte' at byte 3\)"),
        ("caf\udce9", r"a str with the lone surrogate '\\udce9' at character 3"),
    ],
)
def test_a_sample_that_is_no_text_is_named(value: object, received: str) -> None:
    """Numbers, NaN, bytes that are not UTF-8 and lone surrogates fail naming the sample."""
    features = texts(["a good film", "bad"])
    features[1] = value
    source = from_arrays(features, np.array([1, 0]), split="train")
    with pytest.raises(StageError) as caught:
        collect(source.pipe(process.vectorize()))
    assert caught.value.sample_ids == (1,)
    assert re.search(
        r"process\.vectorize: expected a text \(str, UTF-8 bytes, or None for no text\) per "
        rf"sample\. Received: {received} for sample 1$",
        str(caught.value.cause),
    )


def test_missing_texts_are_empty() -> None:
    """None is an empty text, as an empty CSV cell is."""
    features = texts(["the cat", ""])
    features[1] = None
    [batch] = collect(
        from_arrays(features, np.array([1, 0]), split="train").pipe(
            process.vectorize(sequence_length=3)
        )
    )
    assert batch.features.tolist() == [[3, 2, 0], [0, 0, 0]]


@pytest.mark.parametrize(
    ("train", "min_count", "received"),
    [
        (["", "  ", "?!"], 1, r"no tokens in 3 texts \(all empty, spaces or punctuation\)"),
        (TRAIN, 5, r"7 distinct tokens, the most frequent 'cat' seen 2 times"),
    ],
)
def test_an_empty_vocabulary_is_an_error(train: list[str], min_count: int, received: str) -> None:
    """No training token seen min_count times: every text would vectorize alike, so it fails."""
    source = from_arrays(texts(train), np.zeros(len(train), "int64"), split="train")
    with pytest.raises(StageError) as caught:
        collect(source.pipe(process.vectorize(min_count=min_count)))
    assert re.search(
        rf"process\.vectorize: expected a training token seen at least min_count={min_count} "
        rf"times, for a vocabulary\. Received: {received} in the 'train' split$",
        str(caught.value.cause),
    )
