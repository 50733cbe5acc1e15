"""The training loop: pull batches through a bounded buffer into compiled train steps."""

from __future__ import annotations

import math
import time
from typing import Any

import reactivex
from reactivex import operators as ops

from rxpipe.batch import Batch, Split
from rxpipe.context import current_run, in_epoch
from rxpipe.errors import BatchError, TrainingError
from rxpipe.events import EpochEnded, TrainProgress
from rxpipe.flow import iterate, transform
from rxpipe.flow.rebatch import Rebatcher
from rxpipe.model import ModelPlan, TrainedModel
from rxpipe.training.options import TrainOptions

__all__ = ["train"]


def _split_stream(
    data: reactivex.Observable[Batch], split: Split, batch_size: int | None
) -> reactivex.Observable[Batch]:
    def wanted(batch: Batch) -> bool:
        return batch.split is split

    stream = data.pipe(ops.filter(wanted))
    if batch_size is not None:
        stream = stream.pipe(transform("train.rebatch", lambda: Rebatcher(batch_size, False)))
    return stream


def _array(batch: Batch, what: str) -> Any:
    value = batch.features if what == "features" else batch.labels
    if value is None or not hasattr(value, "shape"):
        got = "no labels" if value is None else f"named features {sorted(value)}"
        raise BatchError(
            f"train.fit: expected {what} as one array per batch. Received: {got} "
            f"(samples {batch.ids[:4].tolist()}...)"
        )
    return value


def train(plan: ModelPlan, options: TrainOptions) -> TrainedModel:
    """Train ``plan``'s model on its data's train split, validating after every epoch.

    Each epoch subscribes to the data again (inside ``in_epoch(epoch)``, so seeded
    stages draw that epoch's order) and pulls training batches through a bounded buffer
    of ``options.prefetch`` batches: the source runs ahead on its own thread, and waits
    when the buffer is full.

    Raises:
        TrainingError: if no training batch arrives, or the loss becomes NaN or infinite.
    """
    import keras

    from rxpipe.training.steps import compile_steps

    run = current_run()
    train_data = _split_stream(plan.data, Split.TRAIN, options.batch_size)
    val_data = _split_stream(plan.data, Split.VALIDATION, options.batch_size)
    model: Any = None
    steps: Any = None
    meta = None
    callbacks: Any = None
    steps_per_epoch: int | None = None
    history: list[dict[str, float]] = []
    for epoch in range(1, options.epochs + 1):
        started = time.perf_counter()
        last_report = started
        step = samples = 0
        loss: Any = None
        with in_epoch(epoch):
            for batch in iterate(train_data, options.prefetch, name=f"rxpipe-train-feed-e{epoch}"):
                x, y = _array(batch, "features"), _array(batch, "labels")
                if model is None:
                    meta = batch.metadata
                    keras.utils.set_random_seed(run.seed)
                    model = plan.build(meta)
                    steps = compile_steps(
                        model,
                        meta,
                        x,
                        y,
                        options.optimizer,
                        options.learning_rate,
                        options.loss,
                        options.metrics,
                    )
                    callbacks = keras.callbacks.CallbackList(
                        list(options.callbacks), model=model, epochs=options.epochs
                    )
                    callbacks.on_train_begin()
                if step == 0:
                    steps.reset()
                    callbacks.on_epoch_begin(epoch - 1)
                loss = steps.train_step(x, y)
                step += 1
                samples += batch.size
                now = time.perf_counter()
                if now - last_report >= options.progress_every_s:
                    last_report = now
                    value = float(loss)
                    if not math.isfinite(value):
                        raise TrainingError(
                            "train.fit",
                            f"the loss became {value} at epoch {epoch}, step {step}; "
                            "expected a finite loss (lower the learning rate or check the data)",
                        )
                    run.publish(
                        TrainProgress,
                        epoch=epoch,
                        epochs=options.epochs,
                        step=step,
                        steps=steps_per_epoch,
                        samples=samples,
                        loss=value,
                    )
        if step == 0:
            raise TrainingError(
                "train.fit",
                f"expected batches with split 'train' in epoch {epoch}. Received: none "
                "(add access.split before the model stage, or check the source)",
            )
        steps_per_epoch = step
        validated = False
        if options.validate:
            with in_epoch(epoch):
                for batch in iterate(val_data, options.prefetch, name=f"rxpipe-val-feed-e{epoch}"):
                    steps.test_step(_array(batch, "features"), _array(batch, "labels"))
                    validated = True
        logs = steps.logs(validation=validated)
        if not math.isfinite(logs["loss"]):
            raise TrainingError(
                "train.fit",
                f"the loss became {logs['loss']} in epoch {epoch}; "
                "expected a finite loss (lower the learning rate or check the data)",
            )
        duration = time.perf_counter() - started
        history.append(logs)
        run.history.append(logs)
        run.publish(
            EpochEnded,
            epoch=epoch,
            epochs=options.epochs,
            logs=logs,
            duration_s=duration,
            samples_per_s=samples / duration if duration > 0 else 0.0,
        )
        callbacks.on_epoch_end(epoch - 1, dict(logs))
        if getattr(model, "stop_training", False):
            break
    callbacks.on_train_end(dict(history[-1]))
    assert meta is not None
    return TrainedModel(plan.name, model, plan.data, meta, tuple(history))
