"""What flows through a pipeline: batches of samples and the dataset metadata they share.

A :class:`Batch` is immutable: operators return new batches (``batch.evolve(...)``) and
never copy arrays they do not change. Every batch carries the ids of its samples, so an
error anywhere can name the samples involved, and a shared :class:`DatasetMetadata`
(feature specs, label names, the preprocessing applied so far).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs
import numpy as np

from rxpipe.errors import BatchError

if TYPE_CHECKING:
    from rxpipe.preprocessing import Preprocessor

__all__ = ["Batch", "DatasetMetadata", "FeatureSpec", "Features", "Split", "inferred_label_names"]

Features: TypeAlias = "np.ndarray[Any, Any] | Mapping[str, np.ndarray[Any, Any]]"
"""A batch's features: one array, or a mapping of feature name to array (first axis = sample)."""


def inferred_label_names(
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
    chunks: Callable[[], Iterable[np.ndarray[Any, Any]]],
) -> tuple[str, ...] | None:
    """The classes of labels given without names (``None``: regression targets).

    Integer labels are classes ``"0"`` to their maximum; label rows that are all one-hot
    (one 1, zeros elsewhere; any numeric dtype) are classes ``"0"`` to ``"<width - 1>"``;
    anything else is a regression target.

    Args:
        dtype: the labels' dtype.
        shape: the labels' shape (first axis: samples).
        chunks: returns the labels in chunks of rows (called at most twice).

    Example:
        >>> y = np.eye(3, dtype="float32")[[2, 0]]
        >>> inferred_label_names(y.dtype, y.shape, lambda: [y])
        ('0', '1', '2')
        >>> y = np.array([4, 1])
        >>> inferred_label_names(y.dtype, y.shape, lambda: [y])
        ('0', '1', '2', '3', '4')
    """

    def one_hot(rows: np.ndarray[Any, Any]) -> bool:
        return bool(((rows == 0) | (rows == 1)).all() and (rows.sum(axis=1) == 1).all())

    two_d = len(shape) == 2 and shape[1] > 1 and dtype.kind in "biuf"
    if two_d and all(one_hot(chunk) for chunk in chunks()):
        return tuple(str(i) for i in range(shape[1]))
    if not np.issubdtype(dtype, np.integer):
        return None
    top = max((int(chunk.max()) for chunk in chunks() if chunk.size), default=-1)
    return tuple(str(i) for i in range(top + 1))


class Split(enum.StrEnum):
    """Which part of a data set a batch belongs to."""

    UNSPLIT = "unsplit"
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"
    PREDICT = "predict"


def _to_split(value: Split | str) -> Split:
    try:
        return Split(value)
    except ValueError:
        valid = ", ".join(repr(s.value) for s in Split)
        raise BatchError(f"split: expected one of {valid}. Received: {value!r}") from None


def _shape(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _dtype_name(value: Any) -> str:
    return str(np.dtype(value).name)


def _names(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def _unpickle(instance: Any, state: Mapping[str, Any]) -> None:
    """Set an attrs instance's fields from a pickled ``state``; a field added since the
    pickle was written (in an ``access.cache`` folder of an older rxpipe) gets its default."""
    for field in attrs.fields(type(instance)):
        default: Any = field.default
        if field.name in state:
            value = state[field.name]
        else:  # an attrs.Factory (split_sizes) or a plain default
            value = default.factory() if hasattr(default, "factory") else default
        object.__setattr__(instance, field.name, value)


@attrs.frozen
class FeatureSpec:
    """Shape and dtype of one sample's features (without the batch axis).

    Args:
        shape: per-sample shape, e.g. ``(8, 8, 1)`` for an 8×8 grayscale image.
        dtype: numpy dtype name, e.g. ``"uint8"`` or ``"float32"``.
        value_range: the (low, high) range raw values can take, when known.
        columns: for a vector of measurements (shape ``(n,)``), the name of each of its
            ``n`` values, in order and distinct (``collect.wine``'s ``alcohol``,
            ``malic_acid``...); ``None`` when they have none. Steps that keep the
            vector's layout (``process.standardize``, ``fill_missing``, ``normalize``)
            keep them; steps that change it (``concat_columns``, ``one_hot``,
            ``vectorize``) give specs without. The raw input's names go into the
            exported model's card, and ``rxpipe predict`` reads a CSV by them.

    Raises:
        BatchError: for ``columns`` that do not name each value of a vector once.

    Example:
        >>> FeatureSpec((8, 8, 1), "uint8", (0.0, 16.0)).shape
        (8, 8, 1)
        >>> FeatureSpec((2,), "float32", columns=["age", "bmi"]).columns
        ('age', 'bmi')
    """

    shape: tuple[int, ...] = attrs.field(converter=_shape)
    dtype: str = attrs.field(converter=_dtype_name)
    value_range: tuple[float, float] | None = None
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=_names)

    @columns.validator
    def _check_columns(self, _: Any, columns: tuple[str, ...] | None) -> None:
        if columns is None:
            return
        expected = "names of the values of a feature vector, one per value and each once"
        if len(self.shape) != 1:
            raise BatchError(
                f"FeatureSpec.columns: expected {expected}. Received: {len(columns)} names "
                f"for samples of shape {self.shape}, not a vector"
            )
        if len(columns) != self.shape[0]:
            raise BatchError(
                f"FeatureSpec.columns: expected {expected} ({self.shape[0]} names for shape "
                f"{self.shape}). Received: {len(columns)} names"
            )
        repeated = sorted({name for name in columns if columns.count(name) > 1})
        if repeated:
            raise BatchError(
                f"FeatureSpec.columns: expected {expected}. Received: "
                f"{', '.join(map(repr, repeated))} more than once"
            )

    def __getstate__(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in attrs.fields(FeatureSpec)}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        """Unpickle; a field added since the pickle was written (``columns``, in an
        ``access.cache`` folder of an older rxpipe) gets its default."""
        _unpickle(self, state)

    def check(self, array: np.ndarray[Any, Any], where: str) -> None:
        """Raise :class:`BatchError` unless ``array`` is a batch of samples of this spec."""
        if tuple(array.shape[1:]) != self.shape:
            raise BatchError(
                f"{where}: expected samples of shape {self.shape}. "
                f"Received: shape {tuple(array.shape[1:])} (batch shape {array.shape})"
            )
        if array.dtype.name != self.dtype:
            raise BatchError(
                f"{where}: expected dtype {self.dtype}. Received: dtype {array.dtype.name}"
            )


@attrs.frozen
class DatasetMetadata:
    """Facts about a data set that travel with every batch.

    Args:
        name: the data set's name.
        features: the spec of each sample's features (one spec, or one per feature name).
        label_names: class index → name, for classification; ``None`` for regression.
        split_sizes: number of samples per split, where known.
        preprocessing: the inference-time transforms applied so far, in order; serving
            re-applies them to raw input (see :mod:`rxpipe.preprocessing`).
        input_features: the spec of the raw input, before ``preprocessing``; ``None``
            means ``features`` (nothing applied yet). See :attr:`raw_features`.
        missing_strings: the strings the source read as missing values (a cell equal to
            one once stripped became NaN or ``None``), e.g. ``collect.csv``'s ``missing``;
            steps that treat missing text default to them, so that serving treats a raw
            string as missing exactly where training did. ``None``: the source read no
            text cells (arrays, images), and such steps use their own default.

    Example:
        >>> meta = DatasetMetadata("digits", FeatureSpec((8, 8, 1), "uint8"), ("0", "1"))
        >>> meta.num_classes
        2
    """

    name: str
    features: FeatureSpec | Mapping[str, FeatureSpec]
    label_names: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    split_sizes: Mapping[str, int] = attrs.field(factory=dict)
    preprocessing: tuple[Preprocessor, ...] = ()
    input_features: FeatureSpec | Mapping[str, FeatureSpec] | None = None
    missing_strings: tuple[str, ...] | None = attrs.field(default=None, converter=_names)

    def __getstate__(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in attrs.fields(DatasetMetadata)}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        """Unpickle; a field added since the pickle was written (in an ``access.cache``
        folder of an older rxpipe, e.g. ``missing_strings``) gets its default."""
        _unpickle(self, state)

    @property
    def raw_features(self) -> FeatureSpec | Mapping[str, FeatureSpec]:
        """The spec of raw input, which a served model accepts."""
        return self.features if self.input_features is None else self.input_features

    def with_preprocessor(
        self, step: Preprocessor, features: FeatureSpec | Mapping[str, FeatureSpec]
    ) -> DatasetMetadata:
        """Metadata after applying ``step``, which turns raw features into ``features``.

        Raises:
            ConfigError: if ``step`` lacks what the export needs of a preprocessing step
                (a ``name``, ``apply``, ``apply_tf``, ``to_config``): said when the first
                batch is recorded, not at export after training.

        Example:
            >>> meta = DatasetMetadata("x", FeatureSpec((2,), "float32"))
            >>> meta.with_preprocessor(object(), FeatureSpec((2,), "float32"))
            Traceback (most recent call last):
            ...
            rxpipe.errors.ConfigError: expected a preprocessing step with a name, apply, apply_tf and to_config (deploy.export builds apply_tf into the serving signature). Received: object, without a name, apply, apply_tf, to_config
        """  # noqa: E501
        lacking = [
            m for m in ("apply", "apply_tf", "to_config") if not callable(getattr(step, m, None))
        ]
        if not isinstance(getattr(step, "name", None), str):
            lacking.insert(0, "a name")
        if lacking:
            from rxpipe.errors import ConfigError

            raise ConfigError(
                "expected a preprocessing step with a name, apply, apply_tf and to_config "
                "(deploy.export builds apply_tf into the serving signature). Received: "
                f"{type(step).__name__}, without {', '.join(lacking)}"
            )
        return attrs.evolve(
            self,
            features=features,
            preprocessing=(*self.preprocessing, step),
            input_features=self.raw_features,
        )

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or ``None`` for a data set without label names."""
        return None if self.label_names is None else len(self.label_names)

    @property
    def feature_spec(self) -> FeatureSpec:
        """The single feature spec; :class:`BatchError` if features are a mapping."""
        if not isinstance(self.features, FeatureSpec):
            raise BatchError(
                f"data set {self.name!r}: expected a single feature array. "
                f"Received: named features {sorted(self.features)}"
            )
        return self.features

    def evolve(self, **changes: Any) -> DatasetMetadata:
        """Return a copy with ``changes`` applied."""
        return attrs.evolve(self, **changes)


def _first_dim(features: Features) -> int:
    if isinstance(features, np.ndarray):
        return int(features.shape[0]) if features.ndim else -1
    sizes = {name: int(a.shape[0]) for name, a in features.items()}
    if len(set(sizes.values())) > 1:
        raise BatchError(
            f"features: expected every named feature to hold the same number of samples. "
            f"Received: {sizes}"
        )
    return next(iter(sizes.values()), 0)


@attrs.frozen(eq=False)
class Batch:
    """An immutable batch of samples.

    Args:
        features: one array with the samples on the first axis, or a mapping of arrays.
        labels: one label per sample, or ``None`` (prediction input).
        ids: one id per sample (int or str), unique within the data set.
        metadata: the data set's shared metadata.
        split: the split the samples belong to.

    Raises:
        BatchError: if the first dimensions of features, labels and ids differ.

    Example:
        >>> import numpy as np
        >>> meta = DatasetMetadata("toy", FeatureSpec((2,), "float32"))
        >>> b = Batch(np.zeros((3, 2), "float32"), np.array([0, 1, 0]), np.arange(3), meta)
        >>> b.size, b.split.value
        (3, 'unsplit')
    """

    features: Features
    labels: np.ndarray[Any, Any] | None
    ids: np.ndarray[Any, Any] = attrs.field(converter=np.asarray)
    metadata: DatasetMetadata
    split: Split = attrs.field(default=Split.UNSPLIT, converter=_to_split)

    def __attrs_post_init__(self) -> None:
        n = _first_dim(self.features)
        if n < 0:
            raise BatchError("features: expected an array with a batch axis. Received: a scalar")
        for what, array in (("labels", self.labels), ("ids", self.ids)):
            if array is not None and (array.ndim == 0 or array.shape[0] != n):
                shape = array.shape
                raise BatchError(
                    f"{what}: expected {n} entries, one per sample in features. "
                    f"Received: shape {shape} (batch of {n}, first ids "
                    f"{self.ids[:4].tolist() if self.ids.ndim else self.ids!r})"
                )

    @property
    def size(self) -> int:
        """Number of samples in the batch."""
        return int(self.ids.shape[0])

    def __len__(self) -> int:
        return self.size

    def evolve(self, **changes: Any) -> Batch:
        """Return a copy with ``changes`` applied (arrays not named are shared, not copied)."""
        return attrs.evolve(self, **changes)

    def select(self, index: np.ndarray[Any, Any] | slice) -> Batch:
        """Return the samples at ``index`` (a slice, an index array or a boolean mask).

        A slice shares memory with this batch; an index array or mask copies the rows.
        """
        pick: Any
        if isinstance(index, np.ndarray) and np.issubdtype(index.dtype, np.integer):
            pick = lambda a: np.take(a, index, axis=0)  # noqa: E731  (about 2x faster than a[index])
        else:
            pick = lambda a: a[index]  # noqa: E731
        features: Features
        if isinstance(self.features, np.ndarray):
            features = pick(self.features)
        else:
            features = {k: pick(v) for k, v in self.features.items()}
        labels = None if self.labels is None else pick(self.labels)
        return attrs.evolve(self, features=features, labels=labels, ids=pick(self.ids))

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        """Join batches of one data set and split into one (the first batch's metadata wins).

        Raises:
            BatchError: if ``batches`` is empty or mixes splits.
        """
        if not batches:
            raise BatchError("concat: expected at least one batch. Received: none")
        first = batches[0]
        if len(batches) == 1:
            return first
        splits = {b.split for b in batches}
        if len(splits) > 1:
            raise BatchError(
                "concat: expected batches of one split. "
                f"Received: {sorted(s.value for s in splits)}"
            )
        features: Features
        if isinstance(first.features, np.ndarray):
            features = np.concatenate([b.features for b in batches])
        else:
            features = {k: np.concatenate([b.features[k] for b in batches]) for k in first.features}
        labels = None if first.labels is None else np.concatenate([b.labels for b in batches])
        ids = np.concatenate([b.ids for b in batches])
        return Batch(features, labels, ids, first.metadata, first.split)
