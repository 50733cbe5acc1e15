"""Text vectorization with a fitted vocabulary, in numpy and in TensorFlow ops.

Standardization is lowercasing and removing ASCII punctuation; tokens are separated by
ASCII whitespace. Token ids: 0 is padding, 1 an out-of-vocabulary token, 2 and up the
vocabulary in order (most frequent first). The TensorFlow side looks tokens up by a
64-bit fingerprint in a sorted constant (no lookup-table resource), so the exported
serving signature needs nothing but constants.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

__all__ = ["OOV", "PAD", "TextVectorize", "fit_vocabulary", "tokenize"]

PAD, OOV = 0, 1
PUNCTUATION = r"""[!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']"""
"""ASCII punctuation removed during standardization (as Keras's TextVectorization)."""

_PUNCTUATION = re.compile(PUNCTUATION)
_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")
_BUCKETS = 1 << 62


def tokenize(text: str, lowercase: bool = True, strip_punctuation: bool = True) -> list[str]:
    """Standardize and split one text.

    Example:
        >>> tokenize("Hello, World!  It's ok.")
        ['hello', 'world', 'its', 'ok']
    """
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        text = _PUNCTUATION.sub("", text)
    return [t for t in _WHITESPACE.split(text) if t]


def fit_vocabulary(counts: Counter[str], max_tokens: int, min_count: int) -> tuple[str, ...]:
    """The ``max_tokens - 2`` most frequent tokens seen ``min_count`` times (ties: A→Z).

    Example:
        >>> fit_vocabulary(Counter({"b": 2, "a": 2, "c": 1}), max_tokens=4, min_count=1)
        ('a', 'b')
    """
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return tuple(ranked[: max_tokens - 2])


def texts_of(features: Any) -> Iterable[str]:
    """The texts of an object array of str (bytes are read as UTF-8; ``None`` is empty)."""
    for value in np.asarray(features, dtype=object).ravel():
        if isinstance(value, bytes):
            yield value.decode("utf-8")
        elif value is None:
            yield ""
        elif isinstance(value, str):
            yield value
        else:
            raise ValueError(f"expected text (str or UTF-8 bytes). Received: {value!r}")


def _lower_tf(texts: Any) -> Any:
    """``str.lower`` of each UTF-8 text, in TensorFlow ops.

    ``tf.strings.lower(encoding="utf-8")`` lowercases as Python does (ICU's full case
    mapping; only the 40 capitals new in Unicode 14, which TensorFlow's ICU predates, stay
    as they are) but ends each text at its first NUL character, so the pieces between
    NULs are lowercased one by one and joined again (a NUL ``separator`` would be cut
    short in the same way, so each piece but the last gets its NUL back as a tensor).
    """
    import tensorflow as tf

    pieces = tf.strings.split(texts, "\x00")
    lowered = tf.strings.lower(pieces.flat_values, encoding="utf-8")
    ends = tf.strings.join([lowered, tf.fill(tf.shape(lowered), tf.constant("\x00"))])
    joined = tf.strings.reduce_join(pieces.with_flat_values(ends), axis=-1)
    length = tf.strings.length(joined)
    return tf.strings.substr(joined, tf.zeros_like(length), length - 1)  # the last NUL


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


@attrs.frozen
class TextVectorize:
    """Texts → token-id sequences (``"int"``) or bag-of-words vectors (``"multi_hot"``).

    Example:
        >>> step = TextVectorize(("good", "bad"), sequence_length=4)
        >>> step.apply(np.array(["Good, good movie", "bad"], dtype=object)).tolist()
        [[2, 2, 1, 0], [3, 0, 0, 0]]
    """

    vocabulary: tuple[str, ...] = attrs.field(converter=_strings)
    sequence_length: int = 64
    output: str = "int"
    lowercase: bool = True
    strip_punctuation: bool = True
    name: str = "vectorize"
    _index: dict[str, int] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        index = {token: i + 2 for i, token in enumerate(self.vocabulary)}
        object.__setattr__(self, "_index", index)

    @property
    def size(self) -> int:
        """Number of token ids, padding and out-of-vocabulary included."""
        return len(self.vocabulary) + 2

    def ids(self, text: str) -> list[int]:
        """The token ids of one text (unpadded, untruncated)."""
        index = self._index
        return [index.get(t, OOV) for t in tokenize(text, self.lowercase, self.strip_punctuation)]

    def apply(self, features: Any) -> Any:
        texts = list(texts_of(features))
        if self.output == "multi_hot":
            out = np.zeros((len(texts), self.size), dtype=np.float32)
            for row, text in enumerate(texts):
                out[row, self.ids(text)] = 1.0
            return out
        seq = np.zeros((len(texts), self.sequence_length), dtype=np.int32)
        for row, text in enumerate(texts):
            ids = self.ids(text)[: self.sequence_length]
            seq[row, : len(ids)] = ids
        return seq

    def apply_tf(self, features: Any) -> Any:
        import tensorflow as tf

        x = tf.reshape(features, [-1])
        if self.lowercase:
            x = _lower_tf(x)
        if self.strip_punctuation:
            x = tf.strings.regex_replace(x, PUNCTUATION, "")
        tokens = tf.strings.split(tf.strings.regex_replace(x, r"[ \t\n\r\f\v]+", " "), " ")
        flat = tokens.flat_values
        if self.vocabulary:
            keys = tf.strings.to_hash_bucket_fast(tf.constant(self.vocabulary), _BUCKETS)
            order = tf.argsort(keys)
            sorted_keys = tf.gather(keys, order)
            sorted_ids = tf.gather(tf.range(2, self.size, dtype=tf.int64), order)
            wanted = tf.strings.to_hash_bucket_fast(flat, _BUCKETS)
            at = tf.minimum(tf.searchsorted(sorted_keys, wanted), len(self.vocabulary) - 1)
            found = tf.equal(tf.gather(sorted_keys, at), wanted)
            ids = tf.where(found, tf.gather(sorted_ids, at), tf.constant(OOV, tf.int64))
        else:
            ids = tf.fill(tf.shape(flat), tf.constant(OOV, tf.int64))
        ids = tf.where(tf.equal(flat, ""), tf.constant(-1, tf.int64), ids)
        ragged = tokens.with_flat_values(ids)
        ragged = tf.ragged.boolean_mask(ragged, ragged >= 0)  # drop empty tokens
        if self.output == "multi_hot":
            counts = tf.math.bincount(
                tf.cast(ragged, tf.int32),
                minlength=self.size,
                maxlength=self.size,
                binary_output=True,
                axis=-1,
            )
            # bincount over a ragged axis loses the static shape, which export needs
            return tf.ensure_shape(tf.cast(counts, tf.float32), [None, self.size])
        dense = ragged.to_tensor(default_value=PAD, shape=[None, self.sequence_length])
        return tf.cast(dense, tf.int32)

    def to_config(self) -> dict[str, Any]:
        return {
            "vocabulary": list(self.vocabulary),
            "sequence_length": self.sequence_length,
            "output": self.output,
            "lowercase": self.lowercase,
            "strip_punctuation": self.strip_punctuation,
        }
