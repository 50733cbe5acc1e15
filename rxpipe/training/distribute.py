"""tf.distribute for the training loop: strategies and feeding per-replica batches.

- ``strategy = "mirrored"``: ``tf.distribute.MirroredStrategy`` over the devices of one host
  (all GPUs, or the logical CPUs configured before TensorFlow starts).
- ``strategy = "multi_worker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` across
  processes or hosts described by the ``TF_CONFIG`` environment variable. Each worker trains
  on its own shard of the training split (samples assigned by a seeded hash of their id).

Batch size: the batch size of the stream (``access.batch`` or ``train.fit``'s ``batch_size``)
is the *global* batch of one step, as on one device. Every worker reads the stream (re-batched
to ``batch_size`` first, the same on every worker) and keeps its shard of each batch (about
``batch / workers`` samples, chosen by a seeded hash of the sample ids), which it splits evenly
across its local replicas. Losses are summed over the global batch and divided by its size, so
the learning rate means the same as on one device: two workers training a batch of 32 compute
exactly the gradient one device computes for those 32 samples.
Sources still read all data on every worker; to read only a worker's files, shard at the source.

A replica given no rows (a batch smaller than the replicas, or a worker's empty share of a
tiny batch) adds nothing to the step: its NaN batch statistics are kept out of the gradients
and the moving statistics, so every worker's step k trains on global batch k. After every
epoch the non-trainable state (BatchNormalization's moving statistics, which Keras keeps per
replica) is averaged over all replicas and workers (:func:`sync_state`).

Workers may hold shards of slightly different sizes: before every step the workers agree
(with one small all-reduce) whether all of them still have a batch, and the epoch ends for
all at the first step where one has run out, so collective operations never wait forever.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from rxpipe.errors import ConfigError

__all__ = ["distributed_feed", "make_strategy", "sync_state"]


def make_strategy(name: str | None) -> Any:
    """The ``tf.distribute`` strategy for ``name`` (``None`` for one device)."""
    if name is None:
        return None
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        import os

        if "TF_CONFIG" not in os.environ:
            raise ConfigError(
                "strategy: expected the TF_CONFIG environment variable to describe the cluster "
                "for 'multi_worker'. Received: no TF_CONFIG"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"strategy: expected 'mirrored' or 'multi_worker'. Received: {name!r}")


def _split_for_replicas(strategy: Any, x: Any, y: Any) -> tuple[Any, Any]:
    import tensorflow as tf

    local = len(strategy.extended.worker_devices)

    def part(tensor: Any, ctx: Any) -> Any:
        index = ctx.replica_id_in_sync_group % local
        size = tf.shape(tensor)[0]
        start = size * index // local
        end = size * (index + 1) // local
        return tensor[start:end]

    return (
        strategy.experimental_distribute_values_from_function(lambda ctx: part(x, ctx)),
        strategy.experimental_distribute_values_from_function(lambda ctx: part(y, ctx)),
    )


def _all_workers_have_data(strategy: Any, has_data: bool) -> bool:
    import tensorflow as tf

    # ReduceOp has no MIN: count the replicas that ran out instead.
    missing = strategy.run(lambda: tf.constant(0.0 if has_data else 1.0))
    return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, missing, axis=None).numpy() == 0)


def distributed_feed(
    strategy: Any, feed: Generator[tuple[Any, Any, Any], None, None], multi_worker: bool
) -> Generator[tuple[Any, Any, Any], None, None]:
    """Per-replica (features, labels), and the sample ids, for each local batch of ``feed``.

    With several workers, iteration stops for every worker as soon as one runs out.
    Closing this generator closes ``feed``.
    """
    try:
        while True:
            item = next(feed, None)
            if multi_worker and not _all_workers_have_data(strategy, item is not None):
                return
            if item is None:
                return
            x, y, ids = item
            xs, ys = _split_for_replicas(strategy, x, y)
            yield xs, ys, ids
    finally:
        feed.close()


def sync_state(strategy: Any, model: Any) -> None:
    """Give every replica (and worker) the mean of the model's non-trainable float state.

    Keras's BatchNormalization keeps its moving mean and variance per replica (each
    replica updates its copy with its part of the batch), so replicas and workers drift
    apart. Called after every epoch, before validation, checkpoints and the export, so
    that all of them hold, save and serve the same statistics.
    """
    import keras
    import tensorflow as tf

    for variable in model.non_trainable_variables:
        if keras.backend.is_float_dtype(variable.dtype):
            local = strategy.run(lambda v=variable: tf.identity(v.value))
            variable.assign(strategy.reduce(tf.distribute.ReduceOp.MEAN, local, axis=None))
