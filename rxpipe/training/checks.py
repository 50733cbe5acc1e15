"""Checks of what training receives: numeric, finite features; labels the loss can use.

:func:`check_batch` runs on the feed's producer thread for every batch (so it overlaps
the train step): one sum per array tells finite data (NaN and infinity propagate
through it; summed in the array's own precision, which on a batch of 128 RGB images of
224×224 takes 4.7 ms against 15.7 ms in float64, and a sum that overflows is checked
value by value), the minimum and maximum of class labels tell their range, and one sum
per row tells one-hot (or soft) labels; only when a check fails are the samples at fault
located, and named in the error. :func:`check_loss` runs once, when training starts: the
loss against the labels and the model's output.

A data set with label names takes labels in one of two formats (see
:func:`check_class_labels`): one class index per sample (shape ``(n,)`` or ``(n, 1)``), for
``sparse_categorical_crossentropy`` (the default), or one row of class probabilities per
sample (shape ``(n, classes)``: one-hot rows such as ``keras.utils.to_categorical`` makes,
or soft rows such as label smoothing makes), for ``categorical_crossentropy``. The class of
a row is the column of its highest value (:func:`class_indices`).

Without them, a NaN feature is trained on silently (oneDNN's ReLU turns it into 0), and a
label out of range or a loss that does not fit the labels fails deep in TensorFlow's
graph, with no sample named.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rxpipe.batch import Batch
from rxpipe.errors import BatchError, ConfigError, format_ids

__all__ = ["check_batch", "check_class_labels", "check_loss", "class_indices"]

NUMERIC_KINDS = frozenset("biuf")
"""NumPy dtype kinds a model's numeric input takes: bool, signed, unsigned, float."""

STRING_KINDS = frozenset("USO")
"""NumPy dtype kinds of text (str, bytes, or Python objects such as str)."""

ONE_HOT_LOSSES = frozenset(
    {"categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge"}
)
"""Keras losses that compare one score per class with one-hot (or soft) labels."""

SPARSE_LOSSES = frozenset({"sparse_categorical_crossentropy"})
"""Keras losses that compare one score per class with a class index."""

DEFAULT_CLASSIFICATION_LOSS = "sparse_categorical_crossentropy"

ROW_SUM_TOLERANCE = 1e-3
"""How far from 1 a row of float one-hot (or soft) labels may sum: float16 rows, whose
values each round by up to ``eps / 2`` of themselves, get ``4 * eps`` (0.0039). Integer
and bool rows sum to 1 exactly."""


def _bad_samples(
    stage: str, batch: Batch, bad: Any, expected: str, received: str, hint: str = ""
) -> BatchError:
    """The :class:`BatchError` naming the samples of ``batch`` where ``bad`` is true."""
    ids = batch.ids[bad].tolist()
    return BatchError(
        f"{stage}: {expected}. Received: {received} for samples {format_ids(ids)}{hint}", ids
    )


def _all_finite(array: np.ndarray[Any, Any]) -> bool:
    """Whether every value of a float array is finite (one sum; exact on failure)."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = array.sum(dtype=np.float32 if array.itemsize < 4 else None)
    if np.isfinite(total):
        return True
    return bool(np.isfinite(array).all())  # the sum may overflow with finite values


def _not_finite_rows(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Per sample (first axis), whether any of its values is NaN or infinite."""
    finite: np.ndarray[Any, Any] = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    return ~finite


def _values(array: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> str:
    shown = array[mask][:8].tolist()
    return ", ".join(map(repr, shown)) + (", ..." if int(mask.sum()) > 8 else "")


def check_features(stage: str, batch: Batch, features: Any, strings: bool = False) -> None:
    """Raise a :class:`BatchError` unless ``features`` are numeric and finite.

    Args:
        stage: the stage errors start with, e.g. ``"train.fit"``.
        batch: the batch, whose ids name the samples at fault.
        features: its features as one array.
        strings: text is fine too (the model takes strings).

    Example:
        >>> from rxpipe.testing import from_arrays, collect
        >>> [b] = collect(from_arrays(np.array([[1.0], [np.nan]], "float32")))
        >>> check_features("train.fit", b, b.features)
        Traceback (most recent call last):
        ...
        rxpipe.errors.BatchError: train.fit: expected finite feature values. Received: ...
    """
    array = np.asarray(features)
    kind = array.dtype.kind
    if kind == "f":
        if _all_finite(array):
            return
        bad = _not_finite_rows(array)
        raise _bad_samples(
            stage,
            batch,
            bad,
            "expected finite feature values",
            "NaN or infinite values",
            " (fill them with process.fill_missing, or leave those samples out)",
        )
    if kind in NUMERIC_KINDS or (strings and kind in STRING_KINDS):
        return
    example = repr(array.reshape(len(array), -1)[0, :3].tolist()) if array.size else "none"
    raise BatchError(
        f"{stage}: expected numeric features (bool, int or float) for the model. Received: "
        f"dtype {array.dtype} (first values {example}); turn text into numbers first "
        "(process.vectorize for text, process.one_hot for categories)"
    )


def is_class_index(labels: np.ndarray[Any, Any]) -> bool:
    """Whether ``labels`` hold one class index per sample (shape ``(n,)`` or ``(n, 1)``)."""
    return labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1)


def class_indices(labels: Any) -> np.ndarray[Any, Any]:
    """The class of each sample, as an int64 array of shape ``(n,)``.

    Class indices come back as they are; a one-hot (or soft) row gives the column of its
    highest value (the first one on a tie). Check the labels first
    (:func:`check_class_labels`).

    Example:
        >>> class_indices(np.array([[0.0, 1.0, 0.0], [0.8, 0.1, 0.1]])).tolist()
        [1, 0]
        >>> class_indices(np.array([[2], [0]])).tolist()
        [2, 0]
    """
    array = np.asarray(labels)
    classes: np.ndarray[Any, Any] = (
        array.reshape(len(array)) if is_class_index(array) else array.argmax(axis=1)
    )
    return classes.astype(np.int64)


def _names(label_names: tuple[str, ...]) -> str:
    return ", ".join(map(repr, label_names[:5])) + (", ..." if len(label_names) > 5 else "")


def _rows(
    array: np.ndarray[Any, Any], sums: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]
) -> str:
    """Up to three rows of ``array`` where ``mask`` is set, each with its sum."""
    shown = []
    for row, total in zip(array[mask][:3], sums[mask][:3], strict=False):
        values = ", ".join(f"{v:.4g}" for v in row[:10].tolist())
        shown.append(f"[{values}{', ...' if len(row) > 10 else ''}] (sum {total:.4g})")
    return "; ".join(shown) + ("; ..." if int(mask.sum()) > 3 else "")


def _check_class_rows(
    stage: str, batch: Batch, array: np.ndarray[Any, Any], label_names: tuple[str, ...]
) -> None:
    """Raise unless every row of ``array`` is a distribution over ``label_names``."""
    classes = len(label_names)
    expected = (
        f"expected one-hot (or soft) labels: rows of {classes} non-negative values summing "
        f"to 1, one per label name ({_names(label_names)})"
    )
    if array.shape[1] != classes or array.dtype.kind not in NUMERIC_KINDS:
        ids = batch.ids.tolist()
        got = (
            f"labels of shape {array.shape}"
            if array.shape[1] != classes
            else f"labels of dtype {array.dtype} (first {array[0, :3].tolist()!r})"
        )
        raise BatchError(f"{stage}: {expected}. Received: {got} for samples {format_ids(ids)}", ids)
    tolerance = 0.0
    if array.dtype.kind == "f":
        tolerance = max(ROW_SUM_TOLERANCE, 4 * float(np.finfo(array.dtype).eps))
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinity fail the sum
        sums = array.sum(axis=1, dtype=np.float64)
        bad = ~(np.abs(sums - 1.0) <= tolerance)
        if array.dtype.kind in "if" and array.min() < 0:
            bad |= (array < 0).any(axis=1)
    if not bad.any():
        return
    raise _bad_samples(stage, batch, bad, expected, _rows(array, sums, bad))


def check_class_labels(
    stage: str,
    batch: Batch,
    labels: Any,
    label_names: tuple[str, ...],
    one_hot: bool | None = None,
) -> None:
    """Raise a :class:`BatchError` unless ``labels`` are classes of ``label_names``.

    Either class indices, of shape ``(n,)`` or ``(n, 1)``: whole numbers from 0 to
    ``len(label_names) - 1``; or one-hot (or soft) rows, of shape ``(n, len(label_names))``:
    non-negative values summing to 1 (within :data:`ROW_SUM_TOLERANCE` for floats, exactly
    for integers and bools). The error names the samples whose labels are not (every
    sample of the batch for a wrong shape or dtype), and their values.

    Args:
        stage: the stage errors start with, e.g. ``"train.fit"``.
        batch: the batch, whose ids name the samples at fault.
        labels: its labels as one array.
        label_names: the data set's classes.
        one_hot: the format every batch must have, as the first one had: ``True`` for
            one-hot rows, ``False`` for class indices, ``None`` for either.

    Example:
        >>> from rxpipe.testing import from_arrays, collect
        >>> [b] = collect(from_arrays(np.zeros((2, 1)), np.array([0, 5])))
        >>> check_class_labels("train.fit", b, b.labels, ("a", "b"))
        Traceback (most recent call last):
        ...
        rxpipe.errors.BatchError: train.fit: expected class indices from 0 to 1 ...
    """
    array = np.asarray(labels)
    if array.size == 0:
        return
    classes = len(label_names)
    index = is_class_index(array)
    if one_hot is not None and one_hot == index:
        ids = batch.ids.tolist()
        first = f"one-hot labels of width {classes}" if one_hot else "class indices"
        raise BatchError(
            f"{stage}: expected {first}, as in the first batch. Received: labels of shape "
            f"{array.shape} for samples {format_ids(ids)}",
            ids,
        )
    if array.ndim == 2 and not index:
        _check_class_rows(stage, batch, array, label_names)
        return
    if not index:
        ids = batch.ids.tolist()
        raise BatchError(
            f"{stage}: expected one label per sample: a class index (shape (n,)) or a row "
            f"of {classes} class probabilities (shape (n, {classes})). Received: labels of "
            f"shape {array.shape} for samples {format_ids(ids)}",
            ids,
        )
    flat = array.reshape(len(array))
    expected = (
        f"expected class indices from 0 to {classes - 1} (one per label name: "
        f"{_names(label_names)})"
    )
    if flat.dtype.kind not in NUMERIC_KINDS:
        raise BatchError(
            f"{stage}: {expected}. Received: labels of dtype {flat.dtype} (first "
            f"{flat[:3].tolist()!r}); encode them with process.label_encode",
            batch.ids.tolist(),
        )
    with np.errstate(invalid="ignore"):  # NaN and infinite labels are out of range too
        fraction = np.mod(flat, 1) if flat.dtype.kind == "f" else None
        whole = fraction is None or bool(np.all(fraction == 0))
        if whole and flat.min() >= 0 and flat.max() < classes:
            return
        bad = (flat < 0) | (flat >= classes)
        if fraction is not None:
            bad |= ~np.isfinite(flat) | (fraction != 0)
    raise _bad_samples(stage, batch, bad, expected, _values(flat, bad))


def check_batch(
    stage: str,
    batch: Batch,
    features: Any,
    labels: Any,
    strings: bool,
    one_hot: bool | None = None,
) -> None:
    """Check a training or validation batch before it becomes tensors.

    Features: numeric (or text, with ``strings``) and finite. Labels: finite, and for a
    classification data set (with label names), class indices in range or one-hot (or
    soft) rows, in the format ``one_hot`` says (see :func:`check_class_labels`).

    Raises:
        BatchError: naming the samples at fault, what was expected and what was received.
    """
    check_features(stage, batch, features, strings)
    array = np.asarray(labels)
    if array.dtype.kind == "f" and not _all_finite(array):
        bad = _not_finite_rows(array)
        raise _bad_samples(stage, batch, bad, "expected finite labels", "NaN or infinite labels")
    label_names = batch.metadata.label_names
    if label_names is not None:
        check_class_labels(stage, batch, array, label_names, one_hot)


def loss_name(loss: Any) -> str:
    """The name of the Keras loss function ``loss`` is or names (``"mse"``:
    ``"mean_squared_error"``; a ``SparseCategoricalCrossentropy`` object or config:
    ``"sparse_categorical_crossentropy"``).

    ``None`` is the classification default; a name Keras does not know comes back as is,
    a custom loss object as its ``name``.
    """
    if loss is None:
        return DEFAULT_CLASSIFICATION_LOSS
    import keras

    try:
        found = keras.losses.get(dict(loss) if isinstance(loss, Mapping) else loss)
    except (ValueError, TypeError):
        return str(loss)
    function = getattr(found, "fn", found)  # a Loss object wraps its function
    name = getattr(function, "__name__", None) or getattr(found, "name", None)
    return str(name or type(found).__name__)


def _outputs_hint(outputs: int, classes: int, regression: bool) -> str:
    """Why a model may have ``outputs`` scores for ``classes`` classes, and the fixes."""
    loaded = (
        f"for a model loaded with models.load, models.load(new_head=True) gives it an "
        f"output layer of {classes} scores"
    )
    if outputs == 1 and regression:
        return f"(with head='regression', set a regression loss such as 'mse'; {loaded})"
    if outputs == 1:
        return f"({loaded})"
    return f"(a model made for {outputs} classes? {loaded})"


def check_loss(
    loss: Any, label_names: tuple[str, ...], labels: Any, outputs: int | None, path: str
) -> None:
    """Raise a :class:`ConfigError` when a classifier's loss cannot fit its labels.

    Checked for a classification data set (with label names), once when training starts:

    - class-index labels with a loss for one-hot labels (``categorical_crossentropy``);
    - class-index labels with any other Keras loss but the sparse cross-entropy, for a
      model with one score per class (``mse`` compares the scores with a class index);
    - the sparse cross-entropy (the default) for a model without one score per class
      (a regression head), or with one-hot labels;
    - one-hot (or soft) labels with a model without one score per class.

    One-hot labels take ``categorical_crossentropy`` (or another loss for them, such as
    ``categorical_focal_crossentropy`` or ``kl_divergence``), as soft labels do.

    Args:
        loss: ``train.fit``'s loss (``None``: the classification default), a
            :data:`~rxpipe.training.options.KerasSpec`.
        label_names: the data set's classes.
        labels: an example batch of labels.
        outputs: the model's output values per sample, if known.
        path: the option's name in errors, e.g. ``"train.fit.loss"``.
    """
    from keras.src import losses

    array = np.asarray(labels)
    classes = len(label_names)
    name = loss_name(loss)
    shown = repr(loss) if loss is not None else f"None (the default, {name!r})"
    sparse = f"{DEFAULT_CLASSIFICATION_LOSS!r} (the default for a data set with label names)"
    index_labels = is_class_index(array)
    if index_labels and name in ONE_HOT_LOSSES:
        raise ConfigError(
            f"expected a loss for class-index labels, such as {sparse}: {name!r} needs "
            f"one-hot labels of width {classes}. Received: {shown}, with labels of shape "
            f"{array.shape} (one class index per sample)",
            path,
        )
    builtin = getattr(losses, "ALL_OBJECTS_DICT", {})  # a custom loss is not checked
    if index_labels and outputs == classes and name in builtin and name not in SPARSE_LOSSES:
        raise ConfigError(
            f"expected {sparse} for a model with one score per class ({classes}) and "
            f"class-index labels; {name!r} compares the scores with a class index. "
            f"Received: {shown} (for a regression model, give the models stage "
            "head='regression')",
            path,
        )
    if name in SPARSE_LOSSES and outputs is not None and outputs != classes:
        raise ConfigError(
            f"expected a model with one score per class ({classes}) for {name!r}. "
            f"Received: {shown}, for a model with {outputs} output(s) per sample "
            f"{_outputs_hint(outputs, classes, regression=True)}",
            path,
        )
    if name in SPARSE_LOSSES and not index_labels:
        raise ConfigError(
            f"expected class-index labels (one per sample) for {name!r}. Received: {shown}, "
            f"with labels of shape {array.shape} (for one-hot labels, set "
            "'categorical_crossentropy')",
            path,
        )
    if not index_labels and outputs is not None and outputs != classes:
        raise ConfigError(
            f"expected a model with one score per class ({classes}) for one-hot labels of "
            f"width {classes}. Received: {shown}, for a model with {outputs} output(s) per "
            f"sample {_outputs_hint(outputs, classes, regression=False)}",
            path,
        )
