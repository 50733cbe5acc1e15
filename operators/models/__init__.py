"""``models`` plugins: turn the batch stream into a :class:`~rxpipe.ModelPlan`.

A model plugin (Pipcook's modelDefine, or modelLoad for ``models.load``) emits one plan
holding the cold data stream and a factory that builds the Keras model from the data's
metadata; ``train.*`` builds it. The built-in models take ``head``: a softmax over the
classes when the data has label names, a regression output scaled to the training labels
otherwise (see :mod:`rxpipe.operators.models._heads`). ``models.keras`` trains a Keras
model of your own as it is.
"""

from ._applications import mobilenet_v2, resnet50
from ._cnn import cnn
from ._custom import keras
from ._load import load
from ._mlp import mlp
from ._text import text_classifier

__all__ = ["cnn", "keras", "load", "mlp", "mobilenet_v2", "resnet50", "text_classifier"]
