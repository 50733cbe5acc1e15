"""``models`` plugins: turn the batch stream into a :class:`~rxpipe.ModelPlan`.

A model plugin (Pipcook's modelDefine) emits one plan holding the cold data stream and
a factory that builds the Keras model from the data's metadata; ``train.*`` builds it.
"""

from ._cnn import cnn

__all__ = ["cnn"]
