"""process.vectorize: texts → token ids (or bags of words), vocabulary fitted on train."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from rxpipe.batch import Batch, DatasetMetadata, Features, FeatureSpec
from rxpipe.errors import BatchError, ConfigError
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import one_of, positive_int
from .._fitting import fitted
from ._recording import Recorded
from ._text_steps import TextVectorize, fit_vocabulary, texts_of, tokenize

OUTPUTS = ("int", "multi_hot")


def _text_array(batch: Batch) -> np.ndarray[Any, Any]:
    features = batch.features
    if not isinstance(features, np.ndarray) or features.dtype != object or features.ndim != 1:
        got = (
            f"named features {sorted(features)}"
            if not isinstance(features, np.ndarray)
            else f"an array of dtype {features.dtype.name}, shape {features.shape[1:]}"
        )
        raise BatchError(
            "process.vectorize: expected one text per sample (an object array of str, e.g. "
            f"from collect.text_folder or collect.text_csv). Received: {got}"
        )
    return features


class _Vocabulary:
    def __init__(self, lowercase: bool, strip_punctuation: bool) -> None:
        self.counts: Counter[str] = Counter()
        self._options = (lowercase, strip_punctuation)

    def update(self, batch: Batch) -> None:
        for text in texts_of(_text_array(batch)):
            self.counts.update(tokenize(text, *self._options))

    def result(self) -> Counter[str]:
        return self.counts


@plugin("process.vectorize")
def vectorize(
    max_tokens: int = 20_000,
    sequence_length: int = 64,
    output: str = "int",
    min_count: int = 1,
    lowercase: bool = True,
    strip_punctuation: bool = True,
) -> Operator[Batch, Batch]:
    """Turn texts into token-id sequences with a vocabulary fitted on the training split.

    Texts are lowercased, stripped of ASCII punctuation and split on whitespace. The
    vocabulary holds the ``max_tokens - 2`` most frequent training tokens (seen at least
    ``min_count`` times); id 0 pads, id 1 stands for any other token. ``"int"`` gives
    int32 sequences of ``sequence_length`` (truncated or padded at the end), for
    ``models.text_classifier``; ``"multi_hot"`` gives float32 bag-of-words vectors, for
    ``models.mlp``. Recorded for serving: the exported model takes raw text.

    Args:
        max_tokens: vocabulary size, padding and out-of-vocabulary ids included.
        sequence_length: tokens per sample, for ``"int"``.
        output: ``"int"`` or ``"multi_hot"``.
        min_count: the least number of training occurrences of a vocabulary token.
        lowercase: lowercase texts first.
        strip_punctuation: remove ASCII punctuation first.

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> texts = np.array(["a good film", "a bad film", "good"], dtype=object)
        >>> source = from_arrays(texts, np.array([1, 0, 1]), split="train")
        >>> [b] = collect(source.pipe(vectorize(sequence_length=3)))
        >>> b.features.tolist(), b.metadata.feature_spec.value_range
        ([[2, 4, 3], [2, 5, 3], [4, 0, 0]], (0.0, 5.0))
    """
    positive_int("process.vectorize", "max_tokens", max_tokens)
    if max_tokens < 3:
        raise ConfigError(
            f"expected an int >= 3 (padding, unknown and one token). Received: {max_tokens}",
            "process.vectorize.max_tokens",
        )
    positive_int("process.vectorize", "sequence_length", sequence_length)
    one_of("process.vectorize", "output", output, OUTPUTS)
    positive_int("process.vectorize", "min_count", min_count)

    def make_apply(counts: Counter[str]) -> Callable[[Batch], Batch]:
        step = TextVectorize(
            vocabulary=fit_vocabulary(counts, max_tokens, min_count),
            sequence_length=sequence_length,
            output=output,
            lowercase=lowercase,
            strip_punctuation=strip_punctuation,
        )

        def spec(meta: DatasetMetadata, features: Features) -> FeatureSpec:
            if output == "int":
                return FeatureSpec((sequence_length,), "int32", (0.0, float(step.size - 1)))
            return FeatureSpec((step.size,), "float32", (0.0, 1.0))

        record = Recorded(step, spec)

        def apply(batch: Batch) -> Batch:
            _text_array(batch)
            return record(batch)

        return apply

    return fitted(
        "process.vectorize", lambda: _Vocabulary(lowercase, strip_punctuation), make_apply
    )
