"""train.fit: train a planned Keras model on the stream's train split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rxpipe.flow import map_batches
from rxpipe.imports import import_object, is_import_path
from rxpipe.model import ModelPlan, TrainedModel
from rxpipe.registry import plugin
from rxpipe.stage import Operator
from rxpipe.training import TrainOptions, train
from rxpipe.training.options import KerasSpec, check_names


def _imported(spec: Any, field: str) -> Any:
    """A loss or metric given as an import path: the object (a class: an instance of it)."""
    if not is_import_path(spec):
        return spec
    found = import_object(spec, field)
    return found() if isinstance(found, type) else found


@plugin("train.fit")
def fit(
    epochs: int = 10,
    batch_size: int | None = None,
    optimizer: KerasSpec = "adam",
    learning_rate: float = 1e-3,
    loss: KerasSpec | None = None,
    metrics: Sequence[KerasSpec] | None = None,
    prefetch: int = 4,
    validate: bool = True,
    patience: int | None = None,
    monitor: str = "val_loss",
    min_delta: float = 0.0,
    restore_best_weights: bool = True,
    checkpoint: bool = True,
    precision: str | None = None,
    jit_compile: bool = False,
    device: str | None = None,
    memory_growth: bool = False,
    deterministic: bool = False,
    strategy: str | None = None,
    callbacks: Sequence[Any] = (),
    steps_per_epoch: int | None = None,
) -> Operator[ModelPlan, TrainedModel]:
    """Train the planned model with compiled steps, validating after every epoch.

    Batches are pulled through a bounded buffer of ``prefetch`` batches, prepared (and, on
    a GPU, copied to the device) on a producer thread while the current step runs. Steps
    are traced once; a smaller last batch does not retrace. Publishes ``TrainProgress``
    during epochs and ``EpochEnded`` with Keras-style logs (``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy``) after each; Keras callbacks receive the same logs.
    A checkpoint is saved after every epoch (``rxpipe run --resume RUN_DIR`` continues):
    the weights, the optimizer, the history, early stopping's state (its best epoch and
    weights; a run that stopped early resumes to its result without training more) and
    where a ``steps_per_epoch`` pass stands. Resuming checks that the run is the same:
    the pipeline's name and seed, the model's weights' shapes and the optimizer, else the
    run fails with a :class:`~rxpipe.ConfigError` naming the field (the name and seed
    before the run starts; the model, optimizer and precision when training restores the
    checkpoint, as this stage's error, leaving the run's files as they were). Callbacks
    passed in ``callbacks`` start afresh on a resume.
    The optimizer, loss, metric and device names, ``monitor`` and the callbacks are checked
    when the stage is built (importing Keras, without starting TensorFlow's runtime). Every
    batch is checked before it becomes tensors: numeric, finite features and labels, and,
    for a data set with label names, class indices in range or one-hot (or soft) rows of
    one value per class summing to 1 (every batch in the first batch's format; a
    :class:`~rxpipe.BatchError` names the samples at fault); features and labels of the
    first batch's dtype and shape (past the batch axis), for which the step is built; the
    loss is checked against the labels when training starts.

    Keras callbacks are called as ``keras.Model.fit`` calls them: ``params`` are
    ``{"verbose": 0, "epochs": ..., "steps": ...}``, ``model.optimizer`` is the optimizer
    (so ``LearningRateScheduler``, ``ReduceLROnPlateau`` and ``keras.callbacks.TensorBoard``
    work), batch hooks get the running means of the loss and metrics, the ``on_test_*``
    hooks run around validation, ``model.stop_training`` set in a batch hook ends the
    epoch after that batch (and training after it), and values a callback adds to the
    epoch's logs (e.g. ``learning_rate``) are logged in the history and ``EpochEnded``.
    Batch hooks are called only if a callback overrides them (each costs a wait for the
    step). A monitoring callback with ``mode="auto"`` gets the direction of the run's
    metric it watches.

    The pipeline's ``seed`` seeds TensorFlow, Keras, Python's ``random`` and NumPy for the
    run (the caller's Python and NumPy random states are given back afterwards). Those
    are process-wide: for identical results, run one training at a time per process.

    Args:
        epochs: passes over the training split.
        batch_size: re-batch training and validation data to this size (default: as it
            arrives). It is the global batch of a step, as on one device: with
            ``"mirrored"`` it is split across the local replicas, and with
            ``"multi_worker"`` every worker keeps its shard of each batch (about
            ``batch_size / workers`` samples).
        optimizer: a Keras optimizer name, or a Keras config
            (``{"class_name": "SGD", "config": {"momentum": 0.9}}``); in Python also an
            optimizer object (copied for each run). A config or object carries its own
            learning rate (``learning_rate`` beside it is a ``ConfigError``).
        learning_rate: the learning rate of an optimizer given by name. A resumed run
            given another one than it started with (``--set train.fit.learning_rate=...``)
            trains on with it; otherwise with the restored rate (which a callback may have
            lowered).
        loss: a Keras loss name, or a Keras config (``{"class_name":
            "SparseCategoricalCrossentropy", "config": {"from_logits": True}}`` for a model
            that outputs logits); in Python also a ``keras.losses.Loss`` object or a
            function ``f(y_true, y_pred)`` giving one value per sample, and in a file the
            import path of such a function or ``Loss`` class, ``"package.module:name"``
            (see :mod:`rxpipe.imports`). Computed in float32
            as Keras does, under mixed precision too. Default: sparse categorical
            cross-entropy for a classifier (binary cross-entropy for a model of one output
            for two classes); mean squared error for a regression (a data set
            without label names, or a ``head="regression"`` model on labelled data). For
            one-hot labels (e.g. from ``keras.utils.to_categorical``) or soft labels, set
            ``"categorical_crossentropy"``.
        metrics: metrics reported per epoch, each a Keras metric name, a Keras config, or
            in Python a ``keras.metrics.Metric`` object (copied for each run, logged under
            its ``name``) or a function ``f(y_true, y_pred)``, or the import path of a
            function or ``Metric`` class. Default: ``["accuracy"]``
            for a classifier, none for a regression. For a classifier, ``"accuracy"`` is
            the categorical accuracy with one-hot labels and the sparse one with class
            indices.
        prefetch: batches prepared ahead of the train step (the bounded buffer).
        validate: evaluate on the validation split after every epoch (if the first
            validation pass finds no batch, validation stops for the rest of the run).
        patience: stop after this many epochs without improvement of ``monitor``
            (``keras.callbacks.EarlyStopping``); ``None`` never stops early.
        monitor: the logged value early stopping watches: ``loss``, a metric's logged name
            (``"mae"`` logs as ``mean_absolute_error``), or either with ``val_`` (which
            needs ``validate`` and a validation split). A loss improves as it falls, a
            metric in the direction its Keras class says (accuracy rises); a metric
            without one (e.g. ``TruePositives``) is a ``ConfigError`` when training starts.
        min_delta: the least change of ``monitor`` that counts as an improvement.
        restore_best_weights: with early stopping, end with the best epoch's weights.
        checkpoint: save a checkpoint after every epoch in ``<run dir>/checkpoints``.
        precision: ``"mixed_float16"`` (with loss scaling) or ``"mixed_bfloat16"``.
        jit_compile: compile the train step with XLA.
        device: e.g. ``"/GPU:1"``: where the variables live and the steps run; default
            the first GPU, else the CPU.
        memory_growth: let TensorFlow grow GPU memory instead of reserving it all.
        deterministic: use deterministic op implementations (same seed, same weights).
        strategy: ``"mirrored"`` (all devices of this host) or ``"multi_worker"``
            (processes or hosts described by ``TF_CONFIG``); see :mod:`rxpipe.training.distribute`.
        callbacks: ``keras.callbacks.Callback`` objects (Python only).
        steps_per_epoch: end each epoch after at most this many steps (``None``: a
            full pass; ``rxpipe bench --train-steps`` uses it). As in Keras, the next
            epoch goes on where the pass over the training data stopped; an epoch that
            reaches the end of the pass ends there, and the next starts a new pass (in
            that epoch's order).

    Example:
        >>> stage = fit(epochs=3, learning_rate=0.01)
        >>> stage.params["epochs"], stage.name
        (3, 'train.fit')
    """
    options = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        learning_rate=learning_rate,
        loss=_imported(loss, "train.fit.loss"),
        metrics=None
        if metrics is None
        else tuple(_imported(m, f"train.fit.metrics[{i}]") for i, m in enumerate(metrics)),
        prefetch=prefetch,
        validate=validate,
        patience=patience,
        monitor=monitor,
        min_delta=min_delta,
        restore_best_weights=restore_best_weights,
        checkpoint=checkpoint,
        precision=precision,
        jit_compile=jit_compile,
        device=device,
        memory_growth=memory_growth,
        deterministic=deterministic,
        strategy=strategy,
        callbacks=tuple(callbacks),
        steps_per_epoch=steps_per_epoch,
    )
    check_names(options, "train.fit")
    return map_batches("train.fit", lambda plan: train(plan, options))
