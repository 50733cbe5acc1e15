"""The flow engine: building blocks for operators, and the bridges between threads.

- :func:`transform`: a per-subscription, stateful batch transformer as an operator;
  a user function's exception becomes ``on_error`` carrying the stage and sample ids.
- :func:`map_batches`: a function over batches as an operator, inline or with workers,
  failing on bad records or skipping them (``on_error="skip"``, ``max_skipped``).
- :func:`generate`: a cold source from a generator factory that stops when disposed;
  :func:`append` emits a stream, then a source made when the stage subscribes.
- :func:`bounded_buffer`: a thread boundary holding at most N batches (and bytes); a
  cold upstream waits when it is full, a hot one drops (oldest or newest) or fails.
- :func:`prefetch`: keep the next N batches ready ahead of the consumer.
- :func:`parallel_map`: k worker threads or processes, at most k + prefetch items in
  flight, in input order unless asked otherwise.
- :func:`iterate`: pull items from an observable through a bounded buffer; the source
  runs on a producer thread that blocks when the buffer is full (backpressure).
- :func:`fitted`: an operator that first learns a state from the training split (a
  vocabulary, a mean, a label map), then applies it to every split; :class:`PerRun` keeps
  one value per run.
- :func:`instrument`: wrap a stage with accounting, stage events and error labelling;
  operators inside report drops and skipped samples to :func:`current_tally`.

Every thread and process these start stops within 2 seconds of the subscription being
disposed, of an error anywhere in the chain, or of the end of the stream.
"""

from rxpipe.flow._skip import OnError
from rxpipe.flow._tally import Tally, current_tally
from rxpipe.flow.buffer import Overflow, bounded_buffer
from rxpipe.flow.fitting import Fitter, PerRun, fitted
from rxpipe.flow.instrument import StageCounts, check_accounting, instrument
from rxpipe.flow.iterate import iterate
from rxpipe.flow.parallel import Executor, parallel_map
from rxpipe.flow.prefetch import prefetch
from rxpipe.flow.source import append, generate
from rxpipe.flow.transform import BatchTransformer, map_batches, transform

__all__ = [
    "BatchTransformer",
    "Executor",
    "Fitter",
    "OnError",
    "Overflow",
    "PerRun",
    "StageCounts",
    "Tally",
    "append",
    "bounded_buffer",
    "check_accounting",
    "current_tally",
    "fitted",
    "generate",
    "instrument",
    "iterate",
    "map_batches",
    "parallel_map",
    "prefetch",
    "transform",
]
