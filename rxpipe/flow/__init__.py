"""The flow engine: building blocks for operators, and the bridges between threads.

- :func:`transform`: a per-subscription, stateful batch transformer as an operator;
  a user function's exception becomes ``on_error`` carrying the stage and sample ids.
- :func:`generate`: a cold source from a generator factory that stops when disposed.
- :func:`iterate`: pull items from an observable through a bounded buffer; the source
  runs on a producer thread that blocks when the buffer is full (backpressure).
- :func:`instrument`: wrap a stage with accounting, stage events and error labelling.
"""

from rxpipe.flow.instrument import StageCounts, instrument
from rxpipe.flow.iterate import iterate
from rxpipe.flow.source import generate
from rxpipe.flow.transform import BatchTransformer, map_batches, transform

__all__ = [
    "BatchTransformer",
    "StageCounts",
    "generate",
    "instrument",
    "iterate",
    "map_batches",
    "transform",
]
