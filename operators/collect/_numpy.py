"""collect.numpy: arrays in memory, in a .npy file or in a .npz archive, read in chunks.

A ``.npy`` file is memory-mapped; an ``.npz`` member is read from the archive a chunk at
a time (its header first, then ``chunk_size`` rows per read), so neither is loaded
whole.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from rxpipe.batch import Batch, DatasetMetadata, FeatureSpec, inferred_label_names
from rxpipe.errors import BatchError, ConfigError, format_ids
from rxpipe.flow import append, generate
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import existing_path, fail, names, optional_positive_int, positive_int
from ._memo import MetadataMemo

PLUGIN = "collect.numpy"


def _header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    return np.lib.format.read_array_header_2_0(handle)


class _Member:
    """One array of a .npz archive, readable in row chunks."""

    def __init__(self, archive: Path, key: str) -> None:
        self.archive = archive
        self.key = key
        with zipfile.ZipFile(archive) as zipped, zipped.open(f"{key}.npy") as handle:
            self.shape, self.fortran, self.dtype = _header(handle)

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def chunks(self, chunk_size: int, limit: int) -> Iterator[np.ndarray[Any, Any]]:
        row_shape = self.shape[1:]
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
        with zipfile.ZipFile(self.archive) as zipped, zipped.open(f"{self.key}.npy") as handle:
            _header(handle)
            if self.fortran or self.dtype.hasobject:
                whole = np.load(handle, allow_pickle=False) if not self.dtype.hasobject else None
                if whole is None:
                    raise ValueError(
                        f"{str(self.archive)!r}[{self.key!r}]: expected a numeric array. "
                        "Received: an object array (needs pickle, which is not loaded)"
                    )
                for start in range(0, limit, chunk_size):
                    yield whole[start : min(start + chunk_size, limit)]
                return
            for start in range(0, limit, chunk_size):
                rows = min(chunk_size, limit - start)
                data = handle.read(rows * row_bytes)
                if len(data) != rows * row_bytes:
                    raise ValueError(
                        f"{str(self.archive)!r}[{self.key!r}]: expected {self.shape[0]} rows. "
                        f"Received: the archive member ends after row {start}"
                    )
                yield np.frombuffer(data, dtype=self.dtype).reshape((rows, *row_shape))


def _open(path: Path, key: str | None) -> Any:
    """An array-like of rows: a memory map (.npy) or an archive member (.npz)."""
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return _Member(path, key or "")


def _value_range(value: Sequence[float] | None) -> tuple[float, float] | None:
    """``value`` as ``(low, high)``: two finite numbers, ``low < high``."""
    if value is None:
        return None
    pair = tuple(value) if not isinstance(value, str | bytes) else ()
    if (
        len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in pair)
        or not all(np.isfinite(v) for v in pair)
        or not pair[0] < pair[1]
    ):
        raise fail(PLUGIN, "value_range", "[low, high], two finite numbers with low < high", value)
    return float(pair[0]), float(pair[1])


def _check_range(rows: np.ndarray[Any, Any], start: int, value_range: tuple[float, float]) -> None:
    """Raise :class:`BatchError` if a value of ``rows`` lies outside ``value_range``."""
    values = rows[~np.isnan(rows)] if rows.dtype.kind == "f" else rows
    if not values.size:
        return
    low, high = value_range
    smallest, largest = values.min(), values.max()
    if smallest < low or largest > high:
        outside = np.flatnonzero(((rows < low) | (rows > high)).reshape(len(rows), -1).any(axis=1))
        ids = (outside + start).tolist()
        raise BatchError(
            f"{PLUGIN}: expected feature values within value_range [{low}, {high}]. "
            f"Received: values from {smallest} to {largest} in samples {format_ids(ids)}",
            ids,
        )


def _rows(array: Any, chunk_size: int, limit: int) -> Iterator[np.ndarray[Any, Any]]:
    if isinstance(array, _Member):
        yield from array.chunks(chunk_size, limit)
        return
    for start in range(0, limit, chunk_size):
        yield np.asarray(array[start : min(start + chunk_size, limit)])


@plugin("collect.numpy")
def numpy_arrays(
    path: str | None = None,
    features: str = "x",
    labels: str | None = "y",
    labels_path: str | None = None,
    arrays: Mapping[str, Any] | None = None,
    label_names: Sequence[str] | None = None,
    name: str | None = None,
    chunk_size: int = 1024,
    limit: int | None = None,
    value_range: Sequence[float] | None = None,
) -> Operator[Batch, Batch]:
    """Rows of numpy arrays: from ``arrays`` (Python), a ``.npz`` archive or a ``.npy`` file.

    The first axis is the sample axis. Integer labels without ``label_names`` are
    classes ``"0"`` to ``"<max>"`` (the labels are read once to find the maximum), and
    one-hot label rows (e.g. from ``keras.utils.to_categorical``; any dtype) are classes
    ``"0"`` to ``"<width - 1>"`` (train them with ``loss="categorical_crossentropy"``);
    other float labels are regression targets (soft class labels need ``label_names``).
    Sample ids are the row numbers.

    ``value_range`` declares the range the features' values lie in (e.g. ``[0, 1]`` for
    float images, ``[0, 255]`` for pixels); it is recorded in the data set's
    :class:`~rxpipe.FeatureSpec`, where ``process.normalize`` reads it and where
    ``deploy.export`` needs it to serve float images from encoded image files (their
    0–255 pixels are mapped onto it). Values outside it fail the run, naming the samples.

    Args:
        path: a ``.npz`` archive (arrays named ``features`` and ``labels``) or a
            ``.npy`` file of features.
        features: the features' key in the archive or in ``arrays``.
        labels: the labels' key (``None``: unlabelled).
        labels_path: a ``.npy`` file of labels, with a ``.npy`` ``path``.
        arrays: in-memory arrays by key, instead of ``path`` (Python only).
        label_names: the classes, in index order.
        name: the data set's name (default: the file's stem, or ``"arrays"``).
        chunk_size: rows per emitted batch.
        limit: read only the first ``limit`` rows.
        value_range: ``[low, high]`` of the features' values (numeric features only).

    Example:
        >>> import reactivex
        >>> from rxpipe.testing import collect
        >>> x, y = np.zeros((5, 2), "float32"), np.array([0, 1, 2, 0, 1])
        >>> stage = numpy_arrays(arrays={"x": x, "y": y}, chunk_size=4)
        >>> batches = collect(reactivex.empty().pipe(stage))
        >>> [b.size for b in batches], batches[0].metadata.label_names
        ([4, 1], ('0', '1', '2'))
    """
    positive_int(PLUGIN, "chunk_size", chunk_size)
    optional_positive_int(PLUGIN, "limit", limit)
    label_names = names(PLUGIN, "label_names", label_names)
    declared = _value_range(value_range)
    if (path is None) == (arrays is None):
        raise ConfigError(
            f"expected exactly one of path and arrays. Received: path={path!r}, "
            f"arrays={'given' if arrays is not None else None}",
            PLUGIN,
        )
    if arrays is not None:
        missing = [k for k in (features, labels) if k is not None and k not in arrays]
        if missing:
            raise ConfigError(
                f"expected keys {missing} in arrays. Received: keys {sorted(arrays)}",
                f"{PLUGIN}.arrays",
            )
        x: Any = np.asarray(arrays[features])
        y: Any = None if labels is None else np.asarray(arrays[labels])
        title = name or "arrays"
    else:
        assert path is not None
        file = existing_path(PLUGIN, "path", path, kind="file")
        if file.suffix not in (".npz", ".npy"):
            raise ConfigError(f"expected a .npz or .npy file. Received: {path!r}", f"{PLUGIN}.path")
        try:
            if file.suffix == ".npz":
                with zipfile.ZipFile(file) as zipped:
                    keys = sorted(n.removesuffix(".npy") for n in zipped.namelist())
                wanted = [k for k in (features, labels) if k is not None]
                absent = [k for k in wanted if k not in keys]
                if absent:
                    raise ConfigError(
                        f"expected arrays {absent} in {path!r}. Received: arrays {keys}",
                        f"{PLUGIN}.features" if features in absent else f"{PLUGIN}.labels",
                    )
                x = _open(file, features)
                y = None if labels is None else _open(file, labels)
            else:
                x = _open(file, None)
                y = None
                if labels_path is not None:
                    y = _open(existing_path(PLUGIN, "labels_path", labels_path, kind="file"), None)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(
                f"expected a readable numpy file. Received: {path!r} ({error})", f"{PLUGIN}.path"
            ) from error
        title = name or file.stem
    n_rows = len(x)
    if y is not None and len(y) != n_rows:
        raise ConfigError(
            f"expected as many labels as feature rows ({n_rows}). Received: {len(y)} labels",
            f"{PLUGIN}.labels",
        )
    count = n_rows if limit is None else min(limit, n_rows)
    shape = tuple(x.shape[1:])
    dtype = x.dtype
    if declared is not None and dtype.kind not in "biuf":
        raise ConfigError(
            f"expected numeric features for a value range. Received: features of dtype "
            f"{dtype.name}",
            f"{PLUGIN}.value_range",
        )

    memo = MetadataMemo()

    inferred: list[tuple[str, ...] | None] = []

    def batches() -> Iterator[Batch]:
        classes = label_names
        if classes is None and y is not None:
            if not inferred:  # read the labels once, not on every pass
                inferred.append(
                    inferred_label_names(
                        y.dtype, tuple(y.shape), lambda: _rows(y, max(chunk_size, 4096), len(y))
                    )
                )
            classes = inferred[0]
        meta = memo(
            DatasetMetadata(
                title,
                FeatureSpec(shape, dtype.name, declared),
                classes,
                split_sizes={"unsplit": count},
            )
        )
        feature_rows = _rows(x, chunk_size, count)
        label_rows = _rows(y, chunk_size, count) if y is not None else None
        for start, rows in zip(range(0, count, chunk_size), feature_rows, strict=False):
            if declared is not None:
                _check_range(rows, start, declared)
            ids = np.arange(start, start + len(rows), dtype=np.int64)
            label = next(label_rows) if label_rows is not None else None
            yield Batch(rows, label, ids, meta)

    return append(lambda: generate(batches))
