"""The training loop: pull batches through a bounded buffer into compiled train steps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, closing, contextmanager, nullcontext
from types import FrameType
from typing import Any

import numpy as np
import reactivex
from reactivex import operators as ops

from rxpipe.batch import Batch, Split
from rxpipe.context import RunContext, current_run, in_epoch
from rxpipe.errors import BatchError, TrainingError
from rxpipe.events import EpochEnded, TrainProgress
from rxpipe.flow import iterate, map_batches, transform
from rxpipe.flow.rebatch import Rebatcher
from rxpipe.model import ModelPlan, TrainedModel
from rxpipe.training.options import TrainOptions

__all__ = ["clear_stop_requests", "request_stop", "train", "waits_for_next_step"]

STAGE = "train.fit"

_stop_requests: list[str] = []
_main_thread_fits = [0]  # train() calls under way on the main thread


def request_stop(reason: str) -> None:
    """Make training on the main thread raise ``KeyboardInterrupt(reason)`` at its next step.

    Signal handlers use it where raising ``KeyboardInterrupt`` at once is unsafe (see
    :func:`waits_for_next_step`). The run then fails as cancelled, naming ``reason`` (e.g.
    ``"SIGTERM"``). :func:`clear_stop_requests` withdraws it.
    """
    _stop_requests.append(reason)


def clear_stop_requests() -> None:
    """Withdraw every :func:`request_stop` (training goes on normally)."""
    _stop_requests.clear()


_UNINTERRUPTIBLE = ("keras", "tensorflow")
"""Packages a ``KeyboardInterrupt`` must not be raised in: Keras's conversion of logs has a
bare ``except:`` that swallows it, and TensorFlow's tensor conversion can crash unwinding."""


def waits_for_next_step(frame: FrameType | None) -> bool:
    """Whether an interrupt arriving in ``frame`` should wait for training's next step.

    True while training runs on the main thread and Keras or TensorFlow code is on the
    stack: a signal handler then calls :func:`request_stop` instead of raising. Anywhere
    else (e.g. waiting for the next batch), raising at once is safe and prompt.
    """
    if not _main_thread_fits[0]:
        return False
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).partition(".")[0] in _UNINTERRUPTIBLE:
            return True
        frame = frame.f_back
    return False


def _stop_if_requested() -> None:
    if _stop_requests and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt(_stop_requests[0])


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


Feed = Generator[tuple[Any, Any, Any], None, None]
"""(features, labels) as tensors, and the batch's sample ids (a NumPy array)."""

BatchCheck = Callable[[Batch, Any, Any], None]
"""Checks a batch's (features, labels) arrays, raising a BatchError that names samples."""


def device_feed(
    stream: reactivex.Observable[Batch],
    capacity: int,
    device: str | None,
    name: str,
    check: BatchCheck | None = None,
) -> Feed:
    """(features, labels, ids) as tensors, prepared on a producer thread ``capacity`` ahead.

    Checking each batch (``check``, e.g. for NaN features or labels out of range),
    converting it to tensors (sharing the arrays' memory where possible), and copying them
    to ``device`` unless it is the host CPU where they already are (a GPU, or another
    logical device), happens on the producer thread, so it overlaps with the current step.
    """
    import tensorflow as tf

    from rxpipe.training.devices import device_key
    from rxpipe.training.tensors import to_tensor

    on_host = device_key(device or "/CPU:0") in {("CPU", 0), ("", 0)}

    def to_tensors(batch: Batch) -> tuple[Any, Any, Any]:
        x, y = _arrays(batch)
        if check is not None:
            check(batch, x, y)
        if on_host:
            return to_tensor(x), to_tensor(y), batch.ids
        with tf.device(device):
            return tf.identity(to_tensor(x)), tf.identity(to_tensor(y)), batch.ids

    return iterate(stream.pipe(map_batches(STAGE, to_tensors)), capacity, name=name)


@contextmanager
def _caller_random_state_kept() -> Iterator[None]:
    """Give back Python's and NumPy's global random states when training ends.

    Training seeds them (with TensorFlow's) from the run's seed, as
    ``keras.utils.set_random_seed`` does; the caller's own draws afterwards go on from
    where they were, not from the run's seed.
    """
    import random

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _peek(stream: reactivex.Observable[Batch]) -> Batch:
    with closing(iterate(stream, 1, name="rxpipe-train-peek")) as batches:
        first = next(batches, None)
    if first is not None:
        return first
    raise TrainingError(
        STAGE,
        "expected batches with split 'train'. Received: none "
        "(add access.split before the model stage, or check the source)",
    )


def _has_batches(stream: reactivex.Observable[Batch]) -> bool:
    with closing(iterate(stream, 1, name="rxpipe-validation-peek")) as batches:
        return next(batches, None) is not None


def _takes_strings(model: Any) -> bool:
    """Whether ``model`` takes text (a string input), e.g. with a TextVectorization layer."""
    return any(str(getattr(i, "dtype", "")) == "string" for i in getattr(model, "inputs", ()))


def _outputs_per_sample(model: Any) -> int | None:
    """The width of ``model``'s one output of shape ``(batch, width)``, if it has one."""
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1 or len(outputs[0].shape) != 2:
        return None
    width = outputs[0].shape[-1]
    return int(width) if width is not None else None


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
        self.takes_strings = False
        self.one_hot: bool | None = None  # the labels' format, as the first batch has them
        self.step_ids: dict[int, Any] = {}  # global step -> its batch's ids, since last check

    def setup(self, stack: ExitStack) -> None:
        import keras

        from rxpipe.training.devices import choose_device, op_determinism, set_memory_growth
        from rxpipe.training.distribute import make_strategy

        options = self.options
        if options.memory_growth:
            set_memory_growth()
        stack.enter_context(op_determinism(options.deterministic))
        stack.enter_context(_caller_random_state_kept())
        keras.utils.set_random_seed(self.run.seed)
        self.strategy = make_strategy(options.strategy)
        if options.strategy == "multi_worker":
            resolver = self.strategy.cluster_resolver
            self.shard = (resolver.task_id, self.strategy.extended._num_workers, self.run.seed)
        self.device = None if self.strategy is not None else choose_device(options.device)

    def build(self) -> None:
        import tensorflow as tf

        from rxpipe.training.checks import check_loss, is_class_index
        from rxpipe.training.devices import dtype_policy
        from rxpipe.training.steps import compile_steps, make_optimizer

        options = self.options
        train_data = split_stream(self.plan.data, Split.TRAIN, options.batch_size, self.shard)
        first = _peek(train_data)
        x, y = _arrays(first)
        self.meta = first.metadata
        self.check_validation_split()
        scope = self.strategy.scope() if self.strategy is not None else nullcontext()

        with (
            scope,
            dtype_policy(options.precision),
            tf.device(self.device) if self.device else nullcontext(),
        ):
            self.model = self.plan.build(self.meta)
            optimizer = make_optimizer(options.optimizer, options.learning_rate, options.precision)
            optimizer.build(self.model.trainable_variables)
        self.takes_strings = _takes_strings(self.model)
        if self.meta.label_names is not None:
            self.one_hot = not is_class_index(np.asarray(y))
        self.check_batch(first, x, y)
        if self.meta.label_names is not None:
            outputs = _outputs_per_sample(self.model)
            check_loss(options.loss, self.meta.label_names, y, outputs, f"{STAGE}.loss")
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

    def check_validation_split(self) -> None:
        """Fail now, not after an epoch, if early stopping watches ``val_*`` values that no
        validation split will provide."""
        options = self.options
        if options.patience is None or not options.monitor.startswith("val_"):
            return
        if options.validate:
            data = split_stream(self.plan.data, Split.VALIDATION, None, self.shard)
            if _has_batches(data):
                return
        raise TrainingError(
            STAGE,
            f"early stopping (patience={options.patience}) watches {options.monitor!r}: "
            "expected batches with split 'validation' to compute it. Received: none (give "
            "access.split a validation share, or set monitor='loss')",
        )

    def check_batch(self, batch: Batch, x: Any, y: Any) -> None:
        """Check a batch before it becomes tensors (on the feed's producer thread)."""
        from rxpipe.training.checks import check_batch

        check_batch(STAGE, batch, x, y, self.takes_strings, self.one_hot)

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
        """Raise if a step since the last check had a non-finite loss (naming its batch)."""
        bad = int(self.steps.nonfinite_step.numpy())
        if bad >= 0:
            if self.checkpoints is not None and self.saved_epoch:
                kept = f"The checkpoint of epoch {self.saved_epoch} is kept"
            else:
                kept = "No checkpoint was saved before it"
            ids = self.step_ids.get(bad)
            step = f"step {bad - self.epoch_start_step + 1} (global step {bad})"
            listed = ", whose batch's samples are listed" if ids is not None else ""
            raise TrainingError(
                STAGE,
                f"the loss became NaN or infinite at epoch {epoch}, {step}{listed}; expected "
                f"a finite loss. {kept}; lower the learning rate or check the data",
                [] if ids is None else ids.tolist(),
            )
        self.step_ids.clear()

    def feed(self, split: Split, epoch: int) -> Feed:
        """One pass over ``split`` as tensors (per-replica values under a strategy)."""
        stream = split_stream(self.plan.data, split, self.options.batch_size, self.shard)
        name = f"rxpipe-{split.value}-feed-e{epoch}"
        feed = device_feed(stream, self.options.prefetch, self.device, name, self.check_batch)
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
                x, y, ids = item
                _stop_if_requested()
                loss = steps.train_step(x, y)
                step += 1
                samples += len(ids)
                self.step_ids[self.epoch_start_step + step - 1] = ids
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
                _stop_if_requested()
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
                    self.steps_per_epoch = state.get("steps_per_epoch")  # for progress events
            callbacks = self.callbacks()
            callbacks.on_train_begin()
            for epoch in range(first_epoch, options.epochs + 1):
                self.steps.reset()
                callbacks.on_epoch_begin(epoch - 1)
                started = time.perf_counter()
                samples = self.train_epoch(epoch, callbacks)
                logs = self.steps.logs(validation=self.validate(epoch))
                duration = time.perf_counter() - started
                self.history.append(logs)
                self.run.history.append(logs)
                if self.checkpoints is not None:
                    self.checkpoints.save(epoch, self.run.seed, self.history, self.steps_per_epoch)
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
                    steps=self.steps_per_epoch or 0,
                    samples=samples,
                )
                callbacks.on_epoch_end(epoch - 1, dict(logs))
                _stop_if_requested()
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

    Every batch is checked on the feed's thread (finite, numeric features; finite labels;
    for a data set with label names, class indices in range, or one-hot (or soft) rows of
    one value per class summing to 1, in the first batch's format), and the loss against
    the labels when training starts. With one-hot labels, ``"accuracy"`` is the categorical
    accuracy.

    Raises:
        BatchError: if ``plan`` is not a :class:`ModelPlan` (no ``models.*`` stage before),
            or a batch fails a check (naming its samples at fault).
        ConfigError: if the loss does not fit the labels or the model's output.
        TrainingError: if no training batch arrives, or the loss becomes NaN or infinite
            (naming the samples of that step's batch).
    """
    if not isinstance(plan, ModelPlan):
        raise BatchError(
            f"{STAGE}: expected a ModelPlan from a models.* stage. Received: {type(plan).__name__}"
        )
    on_main = threading.current_thread() is threading.main_thread()
    _main_thread_fits[0] += on_main
    try:
        trained = _Trainer(plan, options, current_run()).fit()
    finally:
        _main_thread_fits[0] -= on_main
    _stop_if_requested()  # one that came after the last step
    return trained
