"""process.vectorize: texts → token ids (or bags of words), vocabulary fitted on train."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from rxpipe.batch import Batch, DatasetMetadata, Features, FeatureSpec
from rxpipe.errors import BatchError, ConfigError
from rxpipe.flow import fitted
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import one_of, positive_int
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
    for row, value in enumerate(features):
        problem = _not_text(value)
        if problem:
            [sample] = batch.ids[row : row + 1].tolist()
            raise BatchError(
                "process.vectorize: expected a text (str, UTF-8 bytes, or None for no text) "
                f"per sample. Received: {problem} for sample {sample!r}",
                [sample],
            )
    return features


def _not_text(value: object) -> str:
    """What makes ``value`` no text that training and serving read alike; ``""`` if none.

    A str must encode as UTF-8 (the exported model takes UTF-8): a lone surrogate, such
    as ``"\\udcff"`` from ``errors="surrogateescape"``, cannot.

    Example:
        >>> _not_text("café"), _not_text(None), _not_text(3.5)
        ('', '', '3.5 (float)')
        >>> _not_text(b"caf\\xe9 au lait")
        "bytes that are not UTF-8 ('invalid continuation byte' at byte 3)"
    """
    if value is None:
        return ""
    if isinstance(value, str):
        if value.isascii():
            return ""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return (
                f"a str with the lone surrogate {value[error.start : error.end]!r} at "
                f"character {error.start}"
            )
        return ""
    if isinstance(value, bytes):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as error:
            return f"bytes that are not UTF-8 ({error.reason!r} at byte {error.start})"
        return ""
    return f"{value!r} ({type(value).__name__})"


class _Vocabulary:
    def __init__(
        self, lowercase: bool, strip_punctuation: bool, max_tokens: int, min_count: int
    ) -> None:
        self.counts: Counter[str] = Counter()
        self._options = (lowercase, strip_punctuation)
        self._sizes = (max_tokens, min_count)
        self._texts = 0

    def update(self, batch: Batch) -> None:
        for text in texts_of(_text_array(batch)):
            self.counts.update(tokenize(text, *self._options))
            self._texts += 1

    def result(self) -> tuple[str, ...]:
        vocabulary = fit_vocabulary(self.counts, *self._sizes)
        if not vocabulary:  # every text would become the same sequence of unknown tokens
            if self.counts:
                [token] = fit_vocabulary(self.counts, max_tokens=3, min_count=1)
                count = self.counts[token]
                got = (
                    f"{len(self.counts)} distinct tokens, the most frequent {token!r} seen "
                    f"{count} time{'' if count == 1 else 's'}"
                )
            else:
                got = f"no tokens in {self._texts} texts (all empty, spaces or punctuation)"
            raise BatchError(
                "process.vectorize: expected a training token seen at least "
                f"min_count={self._sizes[1]} times, for a vocabulary. Received: {got} in the "
                "'train' split"
            )
        return vocabulary


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
    ``models.mlp``. Recorded for serving: the exported model takes raw text. A sample's
    text is a str, UTF-8 bytes or ``None`` (no text); anything else fails naming the
    sample, and so does a training split without a token seen ``min_count`` times.

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

    def make_apply(vocabulary: tuple[str, ...]) -> Callable[[Batch], Batch]:
        step = TextVectorize(
            vocabulary=vocabulary,
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
        "process.vectorize",
        lambda: _Vocabulary(lowercase, strip_punctuation, max_tokens, min_count),
        make_apply,
    )
