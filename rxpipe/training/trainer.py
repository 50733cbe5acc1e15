"""The training loop: pull batches through a bounded buffer into compiled train steps."""

from __future__ import annotations

import time
from collections.abc import Generator
from contextlib import ExitStack, closing, nullcontext
from typing import Any

import reactivex
from reactivex import operators as ops

from rxpipe.batch import Batch, DatasetMetadata, Split
from rxpipe.context import RunContext, current_run, in_epoch
from rxpipe.errors import BatchError, TrainingError
from rxpipe.events import EpochEnded, TrainProgress
from rxpipe.flow import iterate, map_batches, transform
from rxpipe.flow.rebatch import Rebatcher
from rxpipe.model import ModelPlan, TrainedModel
from rxpipe.training.options import TrainOptions

__all__ = ["train"]

STAGE = "train.fit"


def _arrays(batch: Batch) -> tuple[Any, Any]:
    x, y = batch.features, batch.labels
    if y is None or not hasattr(x, "shape"):
        got = "no labels" if y is None else f"named features {sorted(x)}"
        raise BatchError(
            f"{STAGE}: expected features as one array and labels per batch. Received: {got}"
        )
    return x, y


def split_stream(
    data: reactivex.Observable[Batch],
    split: Split,
    batch_size: int | None,
    shard: tuple[int, int, int] | None = None,
) -> reactivex.Observable[Batch]:
    """The batches of one split, optionally re-batched and restricted to one worker's shard."""

    def wanted(batch: Batch) -> bool:
        return batch.split is split

    stream = data.pipe(ops.filter(wanted))
    if shard is not None:
        from rxpipe.sharding import shard_mask

        index, count, seed = shard

        def mine(batch: Batch) -> Batch:
            return batch.select(shard_mask(batch.ids, index, count, seed))

        def not_empty(batch: Batch) -> bool:
            return batch.size > 0

        stream = stream.pipe(map_batches(STAGE, mine), ops.filter(not_empty))
    if batch_size is not None:
        stream = stream.pipe(transform(STAGE, lambda: Rebatcher(batch_size, False)))
    return stream


def device_feed(
    stream: reactivex.Observable[Batch], capacity: int, device: str | None, name: str
) -> Generator[tuple[Any, Any, int], None, None]:
    """(features, labels, size) as tensors, prepared on a producer thread ``capacity`` ahead.

    Converting to tensors (sharing the arrays' memory where possible), and copying them to
    ``device`` unless it is the host CPU where they already are (a GPU, or another logical
    device), happens on the producer thread, so it overlaps with the current step.
    """
    import tensorflow as tf

    from rxpipe.training.devices import device_key
    from rxpipe.training.tensors import to_tensor

    on_host = device_key(device or "/CPU:0") in {("CPU", 0), ("", 0)}

    def to_tensors(batch: Batch) -> tuple[Any, Any, int]:
        x, y = _arrays(batch)
        if on_host:
            return to_tensor(x), to_tensor(y), batch.size
        with tf.device(device):
            return tf.identity(to_tensor(x)), tf.identity(to_tensor(y)), batch.size

    return iterate(stream.pipe(map_batches(STAGE, to_tensors)), capacity, name=name)


def _peek_metadata(stream: reactivex.Observable[Batch]) -> tuple[DatasetMetadata, Any, Any]:
    for batch in iterate(stream, 1, name="rxpipe-train-peek"):
        x, y = _arrays(batch)
        return batch.metadata, x, y
    raise TrainingError(
        STAGE,
        "expected batches with split 'train'. Received: none "
        "(add access.split before the model stage, or check the source)",
    )


class _Trainer:
    """State of one training run (one ``train.fit`` subscription)."""

    def __init__(self, plan: ModelPlan, options: TrainOptions, run: RunContext) -> None:
        self.plan = plan
        self.options = options
        self.run = run
        self.strategy: Any = None
        self.shard: tuple[int, int, int] | None = None
        self.history: list[dict[str, float]] = []
        self.device: str | None = None
        self.steps_per_epoch: int | None = None
        self.epoch_start_step = 1
        self.checkpoints: Any = None
        self.wants_batch_hooks = False
        self.saved_epoch = 0
        self.throughput = (0.0, 0.0)

    def setup(self, stack: ExitStack) -> None:
        import keras

        from rxpipe.training.devices import choose_device, op_determinism, set_memory_growth
        from rxpipe.training.distribute import make_strategy

        options = self.options
        if options.memory_growth:
            set_memory_growth()
        stack.enter_context(op_determinism(options.deterministic))
        keras.utils.set_random_seed(self.run.seed)
        self.strategy = make_strategy(options.strategy)
        if options.strategy == "multi_worker":
            resolver = self.strategy.cluster_resolver
            self.shard = (resolver.task_id, self.strategy.extended._num_workers, self.run.seed)
        self.device = None if self.strategy is not None else choose_device(options.device)

    def build(self) -> None:
        import tensorflow as tf

        from rxpipe.training.devices import dtype_policy
        from rxpipe.training.steps import compile_steps, make_optimizer

        options = self.options
        train_data = split_stream(self.plan.data, Split.TRAIN, options.batch_size, self.shard)
        self.meta, x, y = _peek_metadata(train_data)
        scope = self.strategy.scope() if self.strategy is not None else nullcontext()

        with (
            scope,
            dtype_policy(options.precision),
            tf.device(self.device) if self.device else nullcontext(),
        ):
            self.model = self.plan.build(self.meta)
            optimizer = make_optimizer(options.optimizer, options.learning_rate, options.precision)
            optimizer.build(self.model.trainable_variables)
        self.steps = compile_steps(
            self.model,
            optimizer,
            self.meta,
            x,
            y,
            options.loss,
            options.metrics,
            jit_compile=options.jit_compile,
            strategy=self.strategy,
        )
        if options.checkpoint and self.run.run_dir is not None:
            from rxpipe.training.checkpoints import EpochCheckpoints

            directory = self.run.run_dir / "checkpoints"
            if self.shard is not None and self.shard[0] != 0:
                directory = self.run.run_dir / f"checkpoints-worker{self.shard[0]}"
            self.checkpoints = EpochCheckpoints(directory, self.model, optimizer)

    def callbacks(self) -> Any:
        import keras

        callbacks = list(self.options.callbacks)
        if self.options.patience is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=self.options.monitor,
                    patience=self.options.patience,
                    min_delta=self.options.min_delta,
                    restore_best_weights=self.options.restore_best_weights,
                )
            )
        base = keras.callbacks.Callback
        # Batch hooks cost a host sync per step: call them only for callbacks that use them.
        self.wants_batch_hooks = any(
            type(c).on_train_batch_end is not base.on_train_batch_end
            or type(c).on_batch_end is not base.on_batch_end
            for c in callbacks
        )
        return keras.callbacks.CallbackList(callbacks, model=self.model, epochs=self.options.epochs)

    def check_finite(self, epoch: int) -> None:
        bad = int(self.steps.nonfinite_step.numpy())
        if bad >= 0:
            if self.checkpoints is not None and self.saved_epoch:
                kept = f"The checkpoint of epoch {self.saved_epoch} is kept"
            else:
                kept = "No checkpoint was saved before it"
            raise TrainingError(
                STAGE,
                f"the loss became NaN or infinite at epoch {epoch}, step "
                f"{bad - self.epoch_start_step + 1} (global step {bad}); expected a finite "
                f"loss. {kept}; lower the learning rate or check the data",
            )

    def feed(self, split: Split, epoch: int) -> Generator[tuple[Any, Any, int], None, None]:
        """One pass over ``split`` as tensors (per-replica values under a strategy)."""
        stream = split_stream(self.plan.data, split, self.options.batch_size, self.shard)
        name = f"rxpipe-{split.value}-feed-e{epoch}"
        feed = device_feed(stream, self.options.prefetch, self.device, name)
        if self.strategy is None:
            return feed
        from rxpipe.training.distribute import distributed_feed

        return distributed_feed(self.strategy, feed, multi_worker=self.shard is not None)

    def train_epoch(self, epoch: int, callbacks: Any) -> int:
        """Run one epoch of train steps; return the number of samples trained on."""
        options, steps = self.options, self.steps
        self.epoch_start_step = int(steps.step_counter.numpy()) + 1
        last_report = time.perf_counter()
        step = samples = 0
        batch_hooks = self.wants_batch_hooks
        # closing(): an error mid-epoch stops the feed's thread now, not when the
        # traceback (which keeps this frame alive) is finally dropped.
        with in_epoch(epoch), closing(self.feed(Split.TRAIN, epoch)) as feed_iter:
            train_started = waited = 0.0
            while True:
                before = time.perf_counter()
                item = next(feed_iter, None)
                after = time.perf_counter()
                if item is None:
                    break
                if step == 0:
                    train_started = after  # the first batch's wait is start-up, not starvation
                else:
                    waited += after - before
                x, y, size = item
                loss = steps.train_step(x, y)
                step += 1
                samples += size
                if batch_hooks:
                    callbacks.on_train_batch_end(step - 1, {"loss": float(loss)})
                if step == options.steps_per_epoch:
                    break
                now = time.perf_counter()
                if now - last_report >= options.progress_every_s:
                    last_report = now
                    self.check_finite(epoch)
                    self.run.publish(
                        TrainProgress,
                        epoch=epoch,
                        epochs=options.epochs,
                        step=step,
                        steps=self.steps_per_epoch,
                        samples=samples,
                        loss=float(loss),
                    )
        if step == 0:
            raise TrainingError(
                STAGE,
                f"expected batches with split 'train' in epoch {epoch}. Received: none",
            )
        self.check_finite(epoch)
        self.steps_per_epoch = step
        float(loss)  # wait for the last step before reading the clock
        elapsed = time.perf_counter() - train_started
        self.throughput = (samples / elapsed, waited / elapsed) if elapsed > 0 else (0.0, 0.0)
        return samples

    def validate(self, epoch: int) -> bool:
        if not self.options.validate:
            return False
        seen = False
        with in_epoch(epoch), closing(self.feed(Split.VALIDATION, epoch)) as feed:
            for x, y, _ in feed:
                self.steps.test_step(x, y)
                seen = True
        return seen

    def fit(self) -> TrainedModel:
        options = self.options
        with ExitStack() as stack:
            self.setup(stack)
            self.build()
            first_epoch = 1
            if self.run.resume and self.checkpoints is not None:
                state = self.checkpoints.restore()
                if state is not None:
                    first_epoch = state["epoch"] + 1
                    self.saved_epoch = state["epoch"]
                    self.history = list(state["history"])
                    self.run.history.extend(self.history)
            callbacks = self.callbacks()
            callbacks.on_train_begin()
            for epoch in range(first_epoch, options.epochs + 1):
                self.steps.reset()
                callbacks.on_epoch_begin(epoch - 1)
                started = time.perf_counter()
                self.train_epoch(epoch, callbacks)
                logs = self.steps.logs(validation=self.validate(epoch))
                duration = time.perf_counter() - started
                self.history.append(logs)
                self.run.history.append(logs)
                if self.checkpoints is not None:
                    self.checkpoints.save(epoch, self.run.seed, self.history)
                    self.saved_epoch = epoch
                rate, wait_share = self.throughput
                self.run.publish(
                    EpochEnded,
                    epoch=epoch,
                    epochs=options.epochs,
                    logs=logs,
                    duration_s=duration,
                    samples_per_s=rate,
                    data_wait_share=wait_share,
                )
                callbacks.on_epoch_end(epoch - 1, dict(logs))
                if getattr(self.model, "stop_training", False):
                    break
            callbacks.on_train_end(dict(self.history[-1]) if self.history else {})
        stats = {"traces": dict(self.steps.traces), "steps_per_epoch": self.steps_per_epoch}
        return TrainedModel(
            self.plan.name, self.model, self.plan.data, self.meta, tuple(self.history), stats=stats
        )


def train(plan: ModelPlan, options: TrainOptions) -> TrainedModel:
    """Train ``plan``'s model on its data's train split, validating after every epoch.

    Each epoch subscribes to the data again (inside ``in_epoch(epoch)``, so seeded
    stages draw that epoch's order) and pulls training batches through a bounded buffer
    of ``options.prefetch`` batches: the source runs ahead on its own thread, converting
    batches to tensors (and copying them to the GPU, if there is one), and waits when the
    buffer is full. A checkpoint is saved after every epoch; a resumed run restores the
    last one and continues with the next epoch.

    Raises:
        TrainingError: if no training batch arrives, or the loss becomes NaN or infinite.
    """
    return _Trainer(plan, options, current_run()).fit()
