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
from rxpipe.errors import BatchError, ConfigError, TrainingError, format_ids
from rxpipe.events import EpochEnded, TrainProgress
from rxpipe.flow import iterate, map_batches, transform
from rxpipe.flow.rebatch import Rebatcher
from rxpipe.model import ModelPlan, TrainedModel, is_binary, predicts_values
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
    """The batches of one split, optionally re-batched and restricted to one worker's shard.

    Re-batching comes first: every worker cuts the same batches of ``batch_size`` from
    the same stream and keeps its shard of each, so ``batch_size`` is the global batch
    of a step, as a stream's own batches are.
    """

    def wanted(batch: Batch) -> bool:
        return batch.split is split

    stream = data.pipe(ops.filter(wanted))
    if batch_size is not None:
        stream = stream.pipe(transform(STAGE, lambda: Rebatcher(batch_size, False, STAGE)))
    if shard is not None:
        from rxpipe.sharding import shard_mask

        index, count, seed = shard

        def mine(batch: Batch) -> Batch:
            return batch.select(shard_mask(batch.ids, index, count, seed))

        # an empty share stays: every worker's step k is global batch k (a worker without
        # rows adds nothing to the step; see rxpipe.training.distribute)
        stream = stream.pipe(map_batches(STAGE, mine))
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


def _signature(array: Any) -> tuple[str, tuple[int, ...]]:
    """An array's dtype (``"string"`` for any text) and its shape past the batch axis."""
    array = np.asarray(array)
    kind = "string" if array.dtype.kind in "USO" else array.dtype.name
    return kind, tuple(array.shape[1:])


def _describe(signature: tuple[str, tuple[int, ...]]) -> str:
    kind, shape = signature
    dims = "".join(f", {d}" for d in shape) if shape else ","
    return f"dtype {kind} and shape (batch{dims})"


def _float_logs(logs: dict[str, Any]) -> dict[str, float]:
    """``logs`` with the values a callback added (e.g. ``learning_rate``) as floats; values
    that are no numbers are left out (history and events hold numbers)."""
    result = {}
    for key, value in logs.items():
        try:
            result[key] = float(value)
        except (TypeError, ValueError):
            continue
    return result


def _overrides(callback: Any, *hooks: str) -> bool:
    """Whether ``callback``'s class overrides one of ``hooks`` of ``keras.callbacks.Callback``."""
    import keras

    base = keras.callbacks.Callback
    return any(getattr(type(callback), hook) is not getattr(base, hook) for hook in hooks)


def _optimizer_name(optimizer: Any) -> str:
    """``"Adam"``, or ``"LossScaleOptimizer(Adam)"`` under mixed float16."""
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        return f"{type(optimizer).__name__}({type(inner).__name__})"
    return type(optimizer).__name__


class _TrainPass:
    """A pass over the training split that may last several epochs (``steps_per_epoch``).

    Attributes:
        batches: the pass's (features, labels, ids) feed.
        epoch: the epoch it started in (seeded stages draw that epoch's order).
        taken: how many batches training has taken from it.
    """

    def __init__(self, batches: Feed, epoch: int) -> None:
        self.batches = batches
        self.epoch = epoch
        self.taken = 0


_NOT_SET = object()


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
        self.early_stopping: Any = None
        self.train_batch_begin = self.train_batch_end = self.test_batch_hooks = False
        self.saved_epoch = 0
        self.stopped = False  # training ended early (early stopping or a callback)
        self.throughput = (0.0, 0.0)
        self.takes_strings = False
        self.one_hot: bool | None = None  # the labels' format, as the first batch has them
        self.first: tuple[Any, Any] = (None, None)  # the first batch's (features, labels)
        self.step_ids: dict[int, Any] = {}  # global step -> its batch's ids, since last check
        self.train_pass: _TrainPass | None = None
        self.resumed_pass: tuple[int, int] | None = None  # (epoch, batches taken) to reopen
        self.validation_empty = False  # a validation pass found no batch: none is run again
        self.model_optimizer: Any = _NOT_SET  # the model's own ``optimizer`` attribute

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

    def on_device(self) -> Any:
        """Place what runs in the ``with`` block on the training device (the steps' ops)."""
        import tensorflow as tf

        return tf.device(self.device) if self.device else nullcontext()

    def build(self, stack: ExitStack) -> None:
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

        with scope, dtype_policy(options.precision), self.on_device():
            self.model = self.plan.build(self.meta)
            optimizer = make_optimizer(options.optimizer, options.learning_rate, options.precision)
            optimizer.build(self.model.trainable_variables)
        self.optimizer = optimizer
        # As compile() would: callbacks such as LearningRateScheduler, ReduceLROnPlateau
        # and TensorBoard read model.optimizer. Given back when training ends, so a saved
        # model holds no optimizer state.
        self.model_optimizer = getattr(self.model, "optimizer", _NOT_SET)
        self.model.optimizer = optimizer
        stack.callback(self.give_back_optimizer)
        self.takes_strings = _takes_strings(self.model)
        if self.meta.label_names is not None:
            self.one_hot = not is_class_index(np.asarray(y))
        self.first = (_signature(x), _signature(y))
        self.check_batch(first, x, y)
        # a regression head on labelled data (class indices as numbers): the defaults of
        # a regression, not of a classifier
        values = predicts_values(self.model, self.meta.label_names)
        binary = is_binary(self.model, self.meta.label_names)
        loss = options.loss
        if loss is None and (values or binary):
            loss = "mean_squared_error" if values else "binary_crossentropy"
        if self.meta.label_names is not None:
            outputs = _outputs_per_sample(self.model)
            check_loss(loss, self.meta.label_names, y, outputs, f"{STAGE}.loss")
            classes = len(self.meta.label_names)
            if not values and not binary and outputs is not None and outputs != classes:
                raise ConfigError(
                    f"expected a model with one score per class ({classes}) for a data set "
                    f"with label names. Received: a model with {outputs} output(s) per sample "
                    "(a regressor of the class indices: end the model in a "
                    "keras.layers.Rescaling layer, as head='regression' does)",
                    self.model_stage(),
                )
        self.steps = compile_steps(
            self.model,
            optimizer,
            self.meta,
            x,
            y,
            loss,
            options.metrics_for(classification=self.meta.num_classes is not None and not values),
            jit_compile=options.jit_compile,
            strategy=self.strategy,
        )
        if options.checkpoint and self.run.run_dir is not None:
            from rxpipe.training.checkpoints import EpochCheckpoints

            directory = self.run.run_dir / "checkpoints"
            if self.shard is not None and self.shard[0] != 0:
                directory = self.run.run_dir / f"checkpoints-worker{self.shard[0]}"
            self.checkpoints = EpochCheckpoints(directory, self.model, optimizer)

    def give_back_optimizer(self) -> None:
        if self.model_optimizer is _NOT_SET:
            del self.model.optimizer
        else:
            self.model.optimizer = self.model_optimizer

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
        for part, array, expected in (("features", x, self.first[0]), ("labels", y, self.first[1])):
            received = _signature(array)
            if received != expected:
                ids = batch.ids.tolist()
                raise BatchError(
                    f"{STAGE}: expected {part} of {_describe(expected)}, as in the first "
                    f"batch (the train step is built for it). Received: {_describe(received)} "
                    f"for samples {format_ids(ids)}",
                    ids,
                )

    def callbacks(self) -> Any:
        import keras

        options = self.options
        callbacks = list(options.callbacks)
        for callback in callbacks:
            # Keras's mode="auto" reads a metric's direction from a compiled model; the
            # model here is not compiled, so the direction comes from the run's metrics.
            if getattr(callback, "mode", None) == "auto" and hasattr(callback, "monitor_op"):
                mode = self.steps.monitor_mode(str(getattr(callback, "monitor", "")))
                if mode is not None and callback.monitor_op is None:
                    callback.mode = mode
        if options.patience is not None:
            mode = self.steps.monitor_mode(options.monitor)
            if mode is None:
                raise self.monitor_error()
            self.early_stopping = keras.callbacks.EarlyStopping(
                monitor=options.monitor,
                mode=mode,
                patience=options.patience,
                min_delta=options.min_delta,
                restore_best_weights=options.restore_best_weights,
            )
            callbacks.append(self.early_stopping)
        from rxpipe.training.steps import LogsRecorder

        self.recorder = LogsRecorder()
        callbacks.append(self.recorder)
        # Batch hooks cost a host sync per step: call them only for callbacks that use them.
        self.train_batch_begin = any(
            _overrides(c, "on_train_batch_begin", "on_batch_begin") for c in callbacks
        )
        self.train_batch_end = any(
            _overrides(c, "on_train_batch_end", "on_batch_end") for c in callbacks
        )
        self.test_batch_hooks = any(
            _overrides(c, "on_test_batch_begin", "on_test_batch_end") for c in callbacks
        )
        return keras.callbacks.CallbackList(
            callbacks,
            model=self.model,
            verbose=0,
            epochs=options.epochs,
            steps=options.steps_per_epoch or self.steps_per_epoch,
        )

    def monitor_error(self) -> ConfigError:
        """Why early stopping cannot watch ``monitor``: not logged, or of no direction."""
        monitor = self.options.monitor
        logged = list(self.steps.logs(validation=True))
        if monitor not in logged:
            return ConfigError(
                f"expected a value the run logs: {', '.join(map(repr, logged))}. "
                f"Received: {monitor!r}",
                f"{STAGE}.monitor",
            )
        name = monitor.removeprefix("val_")
        kind = next(type(m).__name__ for m in self.steps.metrics if m.name == name)
        return ConfigError(
            "expected a value that improves in a known direction: the loss, or a metric "
            f"whose Keras class says whether it should rise or fall. Received: {monitor!r}, "
            f"of keras.metrics.{kind}, which says neither",
            f"{STAGE}.monitor",
        )

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
                f"the loss or its gradients became NaN or infinite at epoch {epoch}, "
                f"{step}{listed}; expected "
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

    def open_train_pass(self, epoch: int) -> _TrainPass:
        """A new pass over the training split; or, first after a resume, the pass the
        checkpoint was in, past the batches already trained on."""
        if self.resumed_pass is None:
            return _TrainPass(self.feed(Split.TRAIN, epoch), epoch)
        started, taken = self.resumed_pass
        self.resumed_pass = None
        train_pass = _TrainPass(self.feed(Split.TRAIN, started), started)
        with in_epoch(started):  # the producer starts (and draws its order) at the first next()
            while train_pass.taken < taken and next(train_pass.batches, None) is not None:
                train_pass.taken += 1
        return train_pass

    def close_train_pass(self) -> None:
        if self.train_pass is not None:
            self.train_pass.batches.close()
            self.train_pass = None

    def train_epoch(self, epoch: int, callbacks: Any) -> int:
        """Run one epoch of train steps; return the number of samples trained on.

        Without ``steps_per_epoch`` an epoch is one pass over the training split. With it,
        as in Keras, the pass goes on in the next epoch where this one stopped; an epoch
        that reaches the end of the pass ends there (shorter), and the next epoch starts
        a new pass.
        """
        options, steps = self.options, self.steps
        self.epoch_start_step = int(steps.step_counter.numpy()) + 1
        last_report = time.perf_counter()
        step = samples = 0
        begin_hooks, end_hooks = self.train_batch_begin, self.train_batch_end
        hooks = begin_hooks or end_hooks
        train_started = waited = 0.0
        with in_epoch(epoch), self.on_device():
            while True:
                if self.train_pass is None:
                    self.train_pass = self.open_train_pass(epoch)
                train_pass = self.train_pass
                before = time.perf_counter()
                item = next(train_pass.batches, None)
                after = time.perf_counter()
                if item is None:
                    self.close_train_pass()
                    if step == 0 and train_pass.taken > 0:
                        continue  # the pass kept from the last epoch ended with it: a new one
                    break
                train_pass.taken += 1
                if step == 0:
                    train_started = after  # the first batch's wait is start-up, not starvation
                else:
                    waited += after - before
                x, y, ids = item
                _stop_if_requested()
                if begin_hooks:
                    callbacks.on_train_batch_begin(step)
                loss = steps.train_step(x, y)
                step += 1
                samples += len(ids)
                self.step_ids[self.epoch_start_step + step - 1] = ids
                if end_hooks:  # the running means, as Keras gives them
                    callbacks.on_train_batch_end(step - 1, steps.logs(validation=False))
                if hooks and getattr(self.model, "stop_training", False):
                    break  # a batch hook stopped training: as in Keras, after this batch
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
                        steps=options.steps_per_epoch or self.steps_per_epoch,
                        samples=samples,
                        loss=float(loss),
                        global_step=self.epoch_start_step + step - 1,
                    )
        if options.steps_per_epoch is None:
            self.close_train_pass()
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

    def validate(self, epoch: int, callbacks: Any) -> bool:
        """One pass over the validation split; whether it had any batch.

        Callbacks get ``on_test_begin`` before its first batch and ``on_test_end`` after
        it (and the batch hooks, if they use them), with Keras's logs (no ``val_``
        prefix). A pass without batches ends validation for the rest of the run.
        """
        if not self.options.validate or self.validation_empty:
            return False
        step = 0
        hooks = self.test_batch_hooks
        with (
            in_epoch(epoch),
            self.on_device(),
            closing(self.feed(Split.VALIDATION, epoch)) as feed,
        ):
            for x, y, _ in feed:
                _stop_if_requested()
                if step == 0:
                    callbacks.on_test_begin()
                if hooks:
                    callbacks.on_test_batch_begin(step)
                self.steps.test_step(x, y)
                if hooks:
                    callbacks.on_test_batch_end(step, self.steps.validation_logs())
                step += 1
        if step == 0:
            self.validation_empty = True
            return False
        callbacks.on_test_end(self.steps.validation_logs())
        return True

    def resume(self) -> int:
        """Restore the last checkpoint, if there is one; return the first epoch to train.

        Raises:
            ConfigError: if the checkpoint is of another seed, model or optimizer (naming
                the option that differs), or does not fit this run's variables.
        """
        resuming = self.run.resume and self.checkpoints is not None
        state = self.checkpoints.read_state() if resuming else None
        if self.shard is not None:  # every worker, so that the collective meets
            self.check_workers_agree(0 if state is None else int(state["epoch"]))
        if state is None:
            return 1
        self.check_state(state)
        self.checkpoints.restore(state)
        self.saved_epoch = state["epoch"]
        self.history = list(state["history"])
        self.run.history.extend(self.history)
        self.steps_per_epoch = state.get("steps_per_epoch")  # for progress events
        self.stopped = bool(state.get("stopped", False))
        self.steps.step_counter.assign(int(state.get("step", 0)))
        started_with = state.get("learning_rate")
        by_name = isinstance(self.options.optimizer, str)  # an object keeps its own rate
        if by_name and started_with is not None and started_with != self.options.learning_rate:
            # asked for another rate (e.g. --set train.fit.learning_rate=...): it replaces the
            # restored one; otherwise the restored one (maybe lowered by a callback) goes on
            self.optimizer.learning_rate = self.options.learning_rate
        kept = state.get("train_pass")
        if self.options.steps_per_epoch is not None and kept is not None and kept[1] > 0:
            self.resumed_pass = (int(kept[0]), int(kept[1]))
        return int(state["epoch"]) + 1

    def check_workers_agree(self, epoch: int) -> None:
        """Raise a :class:`ConfigError` unless every worker resumes from ``epoch`` (a run
        killed between two workers' checkpoints would pair different epochs' steps)."""
        import tensorflow as tf

        epochs = self.strategy.gather(
            self.strategy.run(lambda: tf.constant([epoch], tf.int64)), axis=0
        ).numpy()
        if len(set(epochs.tolist())) > 1:
            raise ConfigError(
                "expected every worker to resume from the same checkpointed epoch. Received: "
                f"epochs {sorted(set(epochs.tolist()))} (the run was stopped between two "
                "workers' checkpoints: resume each from a copy of the same epoch, or start anew)",
                "resume_from",
            )

    def model_stage(self) -> str:
        """The name of the models.* stage that planned the model (for error messages)."""
        names = [name for name, counts in self.run.counts.items() if counts.kind == "models"]
        return names[-1] if names else f"models.{self.plan.name}"

    def model_signature(self) -> list[list[Any]]:
        return [[list(v.shape), str(v.dtype)] for v in self.model.weights]

    def check_state(self, state: dict[str, Any]) -> None:
        """Raise a :class:`ConfigError` if the checkpoint is of another run than this one,
        or has more epochs than this run asks for."""
        where = f"the checkpoint in {str(self.checkpoints.directory)!r} (resume_from)"
        trained = int(state.get("epoch", 0))
        if self.options.epochs < trained:
            raise ConfigError(
                f"expected at least the {trained} epochs {where} has trained (a resumed run "
                f"trains up to epochs). Received: epochs={self.options.epochs}",
                f"{STAGE}.epochs",
            )
        if state.get("seed", self.run.seed) != self.run.seed:
            raise ConfigError(
                f"expected the seed {where} was saved with, {state['seed']} (the data's split "
                f"and order depend on it). Received: {self.run.seed}",
                "pipeline.seed",
            )
        saved_model = state.get("model")
        if saved_model is not None and saved_model != self.model_signature():
            weights = self.model.weights
            current = self.model_signature()
            index = next(
                (i for i, (a, b) in enumerate(zip(saved_model, current, strict=False)) if a != b),
                min(len(saved_model), len(current)),
            )
            if index < min(len(saved_model), len(current)):
                got = (
                    f"weight {weights[index].path!r} of shape {tuple(current[index][0])} "
                    f"({current[index][1]}), saved as {tuple(saved_model[index][0])} "
                    f"({saved_model[index][1]})"
                )
            else:
                got = f"a model of {len(current)} weights, saved with {len(saved_model)}"
            raise ConfigError(
                f"expected the model {where} was saved from. Received: {got}",
                self.model_stage(),
            )
        saved_optimizer = state.get("optimizer")
        current_optimizer = _optimizer_name(self.optimizer)
        if saved_optimizer is not None and saved_optimizer != current_optimizer:
            wrapped = "(" in saved_optimizer, "(" in current_optimizer
            option = "precision" if wrapped[0] != wrapped[1] else "optimizer"
            raise ConfigError(
                f"expected the optimizer {where} was saved with, {saved_optimizer}. "
                f"Received: {current_optimizer}",
                f"{STAGE}.{option}",
            )

    def replay_early_stopping(self) -> None:
        """Bring early stopping to where it was after the restored epochs: its best value
        and epoch and its wait, from the history; its best weights, from the checkpoint."""
        stopping = self.early_stopping
        if stopping is None or not self.history:
            return
        for index, logs in enumerate(self.history):
            stopping.on_epoch_end(index, dict(logs))
        self.model.stop_training = False  # whether the run stopped is the checkpoint's say
        if stopping.restore_best_weights and self.checkpoints is not None:
            saved = self.checkpoints.best_weights()
            if saved is not None and saved[0] == stopping.best_epoch + 1:
                stopping.best_weights = saved[1]

    def save(self, epoch: int) -> None:
        """Checkpoint a completed epoch (with early stopping's best weights if it is the best)."""
        if self.checkpoints is None:
            return
        stopping = self.early_stopping
        best = None
        if (
            stopping is not None
            and stopping.restore_best_weights
            and stopping.best_epoch == epoch - 1
            and stopping.best_weights is not None
        ):
            best = stopping.best_weights
        kept = self.train_pass
        state = {
            "seed": self.run.seed,
            "history": self.history,
            "steps_per_epoch": self.steps_per_epoch,
            "stopped": self.stopped,
            "step": int(self.steps.step_counter.numpy()),
            "train_pass": None if kept is None else [kept.epoch, kept.taken],
            "model": self.model_signature(),
            "optimizer": _optimizer_name(self.optimizer),
            "learning_rate": self.options.learning_rate,
        }
        self.checkpoints.save(epoch, state, best)
        self.saved_epoch = epoch

    def fit(self) -> TrainedModel:
        options = self.options
        with ExitStack() as stack:
            self.setup(stack)
            self.build(stack)
            first_epoch = self.resume()
            callbacks = self.callbacks()
            stack.callback(self.close_train_pass)  # a pass kept across epochs
            self.model.stop_training = False
            callbacks.on_train_begin()
            self.replay_early_stopping()
            logs: dict[str, float] = dict(self.history[-1]) if self.history else {}
            epochs = range(first_epoch, options.epochs + 1) if not self.stopped else range(0)
            for epoch in epochs:
                self.steps.reset()
                callbacks.on_epoch_begin(epoch - 1)
                started = time.perf_counter()
                samples = self.train_epoch(epoch, callbacks)
                if self.strategy is not None:
                    from rxpipe.training.distribute import sync_state

                    sync_state(self.strategy, self.model)
                validated = self.validate(epoch, callbacks)
                duration = time.perf_counter() - started
                logs = self.steps.logs(validation=validated)
                callbacks.on_epoch_end(epoch - 1, dict(logs))
                # What callbacks added (e.g. ReduceLROnPlateau's learning_rate) is logged
                # too, as Keras's History (the last callback) records it.
                logs.update(_float_logs(self.recorder.logs))
                self.history.append(logs)
                self.run.history.append(logs)
                self.stopped = bool(getattr(self.model, "stop_training", False))
                self.save(epoch)
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
                    traces=dict(self.steps.traces),
                )
                _stop_if_requested()
                if self.stopped:
                    break
            callbacks.on_train_end(dict(logs))
        stats = {
            "traces": dict(self.steps.traces),
            "steps_per_epoch": self.steps_per_epoch,
            "worker": self.shard[0] if self.shard is not None else 0,
        }
        return TrainedModel(
            self.plan.name,
            self.model,
            self.plan.data,
            self.meta,
            tuple(self.history),
            stats=stats,
            logits=self.steps.logits,
        )


def train(plan: ModelPlan, options: TrainOptions) -> TrainedModel:
    """Train ``plan``'s model on its data's train split, validating after every epoch.

    Each epoch subscribes to the data again (inside ``in_epoch(epoch)``, so seeded
    stages draw that epoch's order) and pulls training batches through a bounded buffer
    of ``options.prefetch`` batches: the source runs ahead on its own thread, converting
    batches to tensors (and copying them to the GPU, if there is one), and waits when the
    buffer is full. With ``options.steps_per_epoch``, a pass may span epochs, as in
    Keras (see :meth:`_Trainer.train_epoch`). The steps run on ``options.device``.
    Callbacks are called as ``keras.Model.fit`` calls them (batch hooks only if a callback
    overrides them). A checkpoint is saved after every epoch; a resumed run checks that it
    is of the same seed, model and optimizer, restores the last one (with early
    stopping's state) and continues with the next epoch, unless the run had stopped.

    Every batch is checked on the feed's thread (finite, numeric features; finite labels;
    for a data set with label names, class indices in range, or one-hot (or soft) rows of
    one value per class summing to 1, in the first batch's format; the first batch's
    dtypes and shapes past the batch axis), and the loss against the labels when training
    starts. With one-hot labels, ``"accuracy"`` is the categorical accuracy.

    Raises:
        BatchError: if ``plan`` is not a :class:`ModelPlan` (no ``models.*`` stage before),
            or a batch fails a check (naming its samples at fault).
        ConfigError: if the loss does not fit the labels or the model's output, early
            stopping's ``monitor`` has no known direction, or a resumed checkpoint is of
            another seed, model or optimizer (naming the option).
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
