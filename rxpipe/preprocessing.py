"""Inference-time transforms that travel with the data and are re-applied when serving.

A process stage that changes feature values (rescaling, standardising, ...) applies a
:class:`Preprocessor` to each batch with numpy and records it in the batch metadata.
Export then builds the serving signature from the recorded preprocessors, with
TensorFlow ops, so the exported model takes raw input, as Pipcook's ``predict()`` did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import numpy as np

from rxpipe.memory import aligned_copy

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["Preprocessor", "Rescale"]


@runtime_checkable
class Preprocessor(Protocol):
    """A deterministic per-sample transform with a numpy and a TensorFlow implementation.

    Features are one array (one tensor) or, for tables, a mapping of column name to
    array (to tensor); a step may turn one form into the other (e.g. the tabular
    ``ConcatColumns`` joins named columns into one matrix). String and bytes features
    are numpy object arrays on the numpy side and ``tf.string`` tensors on the TF side.
    More steps live beside the plugins that record them, in ``rxpipe.operators.process``
    (image decoding and resizing, text vectorization, tabular standardization, ...).
    """

    @property
    def name(self) -> str:
        """Short name shown in model cards and logs."""
        ...

    def apply(self, features: Any) -> Any:
        """Transform a batch of features (an array or a mapping of arrays) with numpy."""
        ...

    def apply_tf(self, features: Any) -> Any:
        """Transform a batch of features (a tensor or a mapping of tensors) with TF ops."""
        ...

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description of the transform."""
        ...


@attrs.frozen
class Rescale:
    """``x * scale + offset``, computed in ``dtype``.

    Example:
        >>> Rescale(scale=0.5).apply(np.array([2, 4], "uint8")).tolist()
        [1.0, 2.0]
    """

    scale: float
    offset: float = 0.0
    dtype: str = "float32"
    name: str = "rescale"

    def apply(self, features: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        out = aligned_copy(features, self.dtype)  # aligned: the feed shares it with TensorFlow
        out *= np.asarray(self.scale, self.dtype)
        if self.offset:
            out += np.asarray(self.offset, self.dtype)
        return out

    def apply_tf(self, features: tf.Tensor) -> tf.Tensor:
        import tensorflow as tf

        x = tf.cast(features, self.dtype)
        return x * tf.constant(self.scale, self.dtype) + tf.constant(self.offset, self.dtype)

    def to_config(self) -> dict[str, Any]:
        return attrs.asdict(self)
