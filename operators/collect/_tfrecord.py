"""collect.tfrecord: tf.train.Example records parsed with a feature spec, a chunk at a time."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import reactivex

from rxpipe.batch import Batch, DatasetMetadata, Features, FeatureSpec
from rxpipe.errors import ConfigError, StageError
from rxpipe.flow import append, generate
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._bad_records import BadRecords, check_on_error
from .._checks import existing_path, names, optional_positive_int, positive_int
from ._memo import MetadataMemo

PLUGIN = "collect.tfrecord"
_SPEC = re.compile(r"^\s*(float32|int64|bytes|string)\s*(?:\[\s*([\d\s,]*)\s*\])?\s*$")
_NUMPY = {"float32": "float32", "int64": "int64", "bytes": "object", "string": "object"}


class RecordError(ValueError):
    """A parsed record whose value is not what the spec promises (``index`` in its chunk)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@attrs.frozen
class Column:
    """One fixed-length feature of the records: ``"float32[4]"``, ``"int64"``, ``"bytes"``."""

    name: str
    kind: str
    shape: tuple[int, ...]

    @classmethod
    def parse(cls, name: str, text: str, param: str) -> Column:
        """Read ``"dtype"`` or ``"dtype[d1, d2]"`` (dtype: float32, int64, bytes, string)."""
        match = _SPEC.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(
                "expected 'float32', 'int64', 'bytes' or 'string', optionally with a shape "
                f"such as 'float32[28, 28]'. Received: {text!r}",
                f"{PLUGIN}.{param}.{name}",
            )
        dims = tuple(int(d) for d in (match.group(2) or "").replace(" ", "").split(",") if d)
        return cls(name, match.group(1), dims)

    def tf_feature(self) -> Any:
        import tensorflow as tf

        dtype = {"float32": tf.float32, "int64": tf.int64}.get(self.kind, tf.string)
        return tf.io.FixedLenFeature(self.shape, dtype)

    def to_numpy(self, value: Any) -> np.ndarray[Any, Any]:
        """The parsed tensor as numpy (``"string"``: str objects).

        Raises:
            RecordError: for a ``"string"`` value that is not UTF-8, naming its record.
        """
        array: np.ndarray[Any, Any] = value.numpy()
        if self.kind == "string":
            records = array.reshape(len(array), -1)
            out = np.empty(records.shape, dtype=object)
            for index, record in enumerate(records):
                try:
                    out[index] = [v.decode("utf-8") for v in record]
                except UnicodeDecodeError as error:
                    raise RecordError(
                        index,
                        f"feature {self.name!r}: expected UTF-8 text (or use 'bytes'). "
                        f"Received: {error.object[:40]!r} ({error.reason} at byte {error.start})",
                    ) from None
            return out.reshape(array.shape)
        return array.astype(object) if self.kind == "bytes" else array


def _files(items: Sequence[str]) -> list[Path]:
    """The files ``items`` name, in order (globs sorted).

    Raises:
        ConfigError: for a path that is not a file, a glob matching no file, or a file
            named twice (its records would be read twice).
    """
    found: list[Path] = []
    for item in items:
        if glob.has_magic(item):
            matches = [Path(m) for m in sorted(glob.glob(item)) if Path(m).is_file()]
            if not matches:
                raise ConfigError(
                    f"expected files or glob patterns matching at least one file. "
                    f"Received: {item!r}, which matches no file",
                    f"{PLUGIN}.paths",
                )
        else:
            matches = [existing_path(PLUGIN, "paths", item, kind="file")]
        for path in matches:
            if any(path.resolve() == seen.resolve() for seen in found):
                again = f" (matched by {item!r})" if str(path) != item else ""
                raise ConfigError(
                    f"expected each file once. Received: {str(path)!r} twice{again}",
                    f"{PLUGIN}.paths",
                )
            found.append(path)
    return found


def id_names(files: Sequence[Path]) -> list[str]:
    """Each file's name in sample ids: its path below the folder all ``files`` share.

    Files in one folder keep their plain names; files of one name in different folders
    get distinct ones. Absolute paths are used when the files share no folder (Windows
    drives).

    Example:
        >>> id_names([Path("/data/train/part-0.rec"), Path("/data/val/part-0.rec")])
        ['train/part-0.rec', 'val/part-0.rec']
        >>> id_names([Path("/data/a.rec"), Path("/data/b.rec")])
        ['a.rec', 'b.rec']
    """
    absolute = [os.path.abspath(file) for file in files]
    try:
        root = os.path.commonpath([os.path.dirname(path) for path in absolute])
    except ValueError:
        return [Path(path).as_posix() for path in absolute]
    return [Path(os.path.relpath(path, root)).as_posix() for path in absolute]


class _Reader:
    def __init__(
        self,
        files: list[Path],
        columns: tuple[Column, ...],
        label: Column | None,
        label_names: tuple[str, ...] | None,
        compression: str | None,
        chunk_size: int,
        limit: int | None,
        bad: BadRecords,
        memo: MetadataMemo,
    ) -> None:
        self.files = files
        self.names = id_names(files)
        self.columns = columns
        self.label = label
        self.compression = compression
        self.chunk_size = chunk_size
        self.limit = limit
        self.bad = bad
        self.label_names = label_names
        specs: dict[str, FeatureSpec] = {
            c.name: FeatureSpec(c.shape, _NUMPY[c.kind]) for c in columns
        }
        features = specs[columns[0].name] if len(columns) == 1 else specs
        self.meta = memo(DatasetMetadata(files[0].stem, features, label_names))

    def _parse(self, records: Any) -> dict[str, Any]:
        import tensorflow as tf

        spec = {c.name: c.tf_feature() for c in (*self.columns, *filter(None, [self.label]))}
        return dict(tf.io.parse_example(records, spec))

    def _fail(self, ids: list[str], message: str, cause: Exception) -> None:
        if not self.bad.skipping:
            raise StageError(PLUGIN, message, ids, cause)
        self.bad.skip(ids, message)

    def _batch(self, records: Any, ids: list[str], where: str) -> Batch | None:
        import tensorflow as tf

        try:
            parsed = self._parse(records)
        except tf.errors.InvalidArgumentError:
            good = []
            for index in range(len(ids)):
                try:
                    self._parse(records[index : index + 1])
                    good.append(index)
                except tf.errors.InvalidArgumentError as error:
                    self._fail(
                        [ids[index]],
                        f"{where}: record {ids[index]!r} does not match the feature spec: "
                        f"{_tf_message(error)}",
                        error,
                    )
            if not good:
                return None
            records = tf.gather(records, good)
            ids = [ids[i] for i in good]
            parsed = self._parse(records)
        while True:
            try:
                return self._arrays(parsed, ids)
            except RecordError as error:
                bad = ids[error.index]
                self._fail([bad], f"{where}: record {bad!r}: {error}", error)
                keep = [i for i in range(len(ids)) if i != error.index]
                if not keep:
                    return None
                parsed = {name: tf.gather(value, keep) for name, value in parsed.items()}
                ids = [ids[i] for i in keep]

    def _arrays(self, parsed: dict[str, Any], ids: list[str]) -> Batch:
        """The parsed records as a batch (``RecordError`` for a record that cannot be one)."""
        arrays = {c.name: c.to_numpy(parsed[c.name]) for c in self.columns}
        features: Features = arrays[self.columns[0].name] if len(self.columns) == 1 else arrays
        labels = None
        if self.label is not None:
            labels = self.label.to_numpy(parsed[self.label.name])
            if self.label_names is not None and self.label.kind == "int64":
                outside = np.flatnonzero((labels < 0) | (labels >= len(self.label_names)))
                if outside.size:
                    index = int(outside[0])
                    raise RecordError(
                        index,
                        f"label {self.label.name!r}: expected a class index in "
                        f"[0, {len(self.label_names)}) (the label_names). "
                        f"Received: {labels[index].tolist()}",
                    )
        id_array = np.empty(len(ids), dtype=object)
        id_array[:] = ids
        return Batch(features, labels, id_array, self.meta)

    def batches(self) -> Iterator[Batch]:
        import tensorflow as tf

        left = self.limit
        for file, name in zip(self.files, self.names, strict=True):
            where = repr(str(file))
            data = tf.data.TFRecordDataset(str(file), compression_type=self.compression or "")
            iterator = iter(data)
            index = 0
            corrupt = False
            while not corrupt and (left is None or left > 0):
                records: list[bytes] = []
                while len(records) < self.chunk_size and (left is None or len(records) < left):
                    try:
                        records.append(next(iterator).numpy())
                    except StopIteration:
                        break
                    except tf.errors.OpError as error:
                        self._fail(
                            [f"{name}#{index + len(records)}"],
                            f"{where} is corrupt after record {index + len(records)}: "
                            f"expected TFRecord data. Received: {_tf_message(error)}",
                            error,
                        )
                        corrupt = True  # the rest of a corrupt file cannot be found again
                        break
                if not records:
                    break
                if left is not None:
                    left -= len(records)
                ids = [f"{name}#{index + i}" for i in range(len(records))]
                index += len(records)
                batch = self._batch(tf.constant(records, tf.string), ids, where)
                if batch is not None:
                    yield batch
                if len(records) < self.chunk_size and not corrupt:
                    break


def _tf_message(error: Any) -> str:
    """A TensorFlow error's message without its ``{{function_node ...}}`` prefix."""
    text = str(getattr(error, "message", error)).splitlines()[0]
    return re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)


@plugin("collect.tfrecord")
def tfrecord(
    paths: Sequence[str],
    features: Mapping[str, str],
    label: str | None = None,
    label_spec: str = "int64",
    label_names: Sequence[str] | None = None,
    compression: str | None = None,
    chunk_size: int = 256,
    limit: int | None = None,
    on_error: str = "raise",
    max_skipped: int | None = None,
) -> Operator[Batch, Batch]:
    """``tf.train.Example`` records from TFRecord files, parsed with a feature spec.

    Each feature is fixed-length: ``"float32"``, ``"int64"``, ``"bytes"`` or ``"string"``
    (UTF-8 text), with an optional shape such as ``"float32[28, 28]"``. One feature
    gives a plain array, several a mapping by name. Sample ids are ``"<file>#<index>"``,
    the file named by its path below the folder all the files share: its plain name when
    they are in one folder (``"a.tfrecord#0"``), else e.g. ``"train/part-0.tfrecord#0"``.
    Encoded images (``"bytes"``) go on to ``process.decode_image``.

    Args:
        paths: TFRecord files or glob patterns (read in the order given, globs sorted);
            each file must exist and each pattern match a file.
        features: feature name → spec.
        label: the label feature (``None``: unlabelled records).
        label_spec: the label's spec (``"int64"`` classes, ``"float32"`` targets).
        label_names: the classes, in index order.
        compression: ``None``, ``"GZIP"`` or ``"ZLIB"``.
        chunk_size: records per emitted batch.
        limit: read only the first ``limit`` records.
        on_error: ``"raise"``: a corrupt file or a record that does not match the spec
            (wrong shape, a ``"string"`` that is not UTF-8, a label outside
            ``label_names``) fails the run naming it; ``"skip"``: the record (or the rest
            of a corrupt file) is skipped and reported.
        max_skipped: with ``"skip"``, fail after this many bad records.

    Example:
        >>> stage = tfrecord(["data/*.tfrecord"], {"image": "bytes"}, label="label")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: collect.tfrecord.paths: expected files or glob patterns ...
    """
    items = [paths] if isinstance(paths, str) else list(paths)
    files = _files(items)
    if not files:
        raise ConfigError(
            f"expected files or glob patterns matching at least one file. Received: {items}",
            f"{PLUGIN}.paths",
        )
    if not features:
        raise ConfigError(
            "expected at least one feature, e.g. {image = 'bytes'}. Received: none",
            f"{PLUGIN}.features",
        )
    columns = tuple(Column.parse(n, s, "features") for n, s in features.items())
    label_column = None if label is None else Column.parse(label, label_spec, "label_spec")
    if compression not in (None, "GZIP", "ZLIB"):
        raise ConfigError(
            f"expected None, 'GZIP' or 'ZLIB'. Received: {compression!r}",
            f"{PLUGIN}.compression",
        )
    positive_int(PLUGIN, "chunk_size", chunk_size)
    optional_positive_int(PLUGIN, "limit", limit)
    check_on_error(PLUGIN, on_error, max_skipped)
    classes = names(PLUGIN, "label_names", label_names)

    memo = MetadataMemo()

    def own() -> reactivex.Observable[Batch]:
        bad = BadRecords(PLUGIN, on_error, max_skipped)  # the pass's accounting
        reader = _Reader(
            files, columns, label_column, classes, compression, chunk_size, limit, bad, memo
        )
        return generate(reader.batches)

    return append(own)
