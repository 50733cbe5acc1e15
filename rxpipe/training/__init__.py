"""The training bridge: from a stream of batches to compiled TensorFlow train steps.

TensorFlow is imported only when training starts.
"""

from rxpipe.training.options import TrainOptions
from rxpipe.training.trainer import train

__all__ = ["TrainOptions", "train"]
