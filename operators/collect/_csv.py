"""collect.csv and collect.text_csv: delimited text files, read a chunk of rows at a time."""

from __future__ import annotations

import codecs
import csv
import functools
import itertools
import math
import operator
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
from .._checks import (
    MISSING,
    existing_path,
    missing_strings,
    names,
    optional_positive_int,
    positive_int,
)
from ._memo import MetadataMemo
from ._missing_numbers import MissingNumbers, missing_numbers

COLUMN_TYPES = ("float", "int", "str")
_DTYPES = {"float": "float32", "int": "int64", "str": "object"}
_LABEL_EXPECTED = {
    "float": "a number (or a class name)",
    "int": "an integer (or a class name)",
    "str": "a class name",
}
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes the decoder could not read (surrogateescape)
NUMBERS_IN_TEN = 9
"""How many in ten of a column's present values in the first chunk must be numbers for
the column to be inferred ``"float"`` (the other values are then row errors)."""


class RowError(ValueError):
    """A row that cannot be read (wrong field count, a value of the wrong type)."""


@attrs.frozen
class CsvLayout:
    """What to read from a CSV file (validated at construction)."""

    plugin: str
    path: Path
    label: str | None
    columns: tuple[str, ...] | None
    types: Mapping[str, str]
    header: bool
    names: tuple[str, ...] | None
    delimiter: str
    label_names: tuple[str, ...] | None
    id_column: str | None
    missing: frozenset[str]
    encoding: str
    missing_strings: tuple[str, ...] = ()  # ``missing`` as given, recorded in the metadata


def _float(
    column: str, values: Sequence[str], missing: frozenset[str], hint: str
) -> np.ndarray[Any, Any]:
    """A column chunk as float32, NaN for missing cells: read by numpy in one call when
    every cell reads (:func:`_parse_floats`), else cell by cell (:func:`_float_cells`),
    which accepts the same cells with the same values and names the first bad one.

    Example:
        >>> _float("x", ["1.5", " 2 ", "", "NA", "-1e3"], frozenset({"", "NA"}), "").tolist()
        [1.5, 2.0, nan, nan, -1000.0]
        >>> _float("x", ["1.5", "?"], frozenset({""}), "")
        Traceback (most recent call last):
        ...
        rxpipe.operators.collect._csv.RowError: column 'x': expected a number. Received: '?'
    """
    try:
        parsed = _parse_floats(values, missing)
    except ValueError:  # a cell float() rejects: find it (or accept what strip() allows)
        return _float_cells(column, values, missing, hint)
    with np.errstate(over="ignore"):  # a number beyond float32 is refused just below
        out: np.ndarray[Any, Any] = parsed.astype(np.float32)
    _refuse_overflow(column, values, out)
    _mark_missing_numbers(out, missing)
    return out


def _mark_missing_numbers(out: np.ndarray[Any, Any], missing: frozenset[str]) -> None:
    """Set to NaN, in place, the float32 cells equal to the value of a ``missing`` string
    that reads as a number
    (:func:`~rxpipe.operators.collect._missing_numbers.missing_numbers`): with
    ``missing=["-999"]``, a cell written ``-999.0`` or ``-9.99e2`` is missing too, as
    serving, which gets the number, cannot tell them apart.

    Example:
        >>> out = np.array([1.0, -999.0, -999.5], np.float32)
        >>> _mark_missing_numbers(out, frozenset({"", "-999"})); out.tolist()
        [1.0, nan, -999.5]
    """
    numbers = missing_numbers(missing)
    if numbers:
        hits = np.isin(out, np.asarray(numbers, np.float32))
        if hits.any():
            out[hits] = np.nan


FLOAT32_MAX = float(np.finfo(np.float32).max)
_INFINITY = re.compile(r"[+-]?inf(inity)?", re.IGNORECASE)  # what float() reads as infinite


def _refuse_overflow(column: str, values: Sequence[str], out: np.ndarray[Any, Any]) -> None:
    """Raise ``RowError`` for the first cell written as a number that is infinite in
    float32 (``"5e38"``, ``"1e400"``), as serving refuses it; ``"inf"`` itself is read.

    A number too small for float32 (``"1e-50"``) is 0, as float32 rounds it anywhere.

    Example:
        >>> values = ["1", "inf", "-5e38"]
        >>> _refuse_overflow("x", values, np.array([1, np.inf, -np.inf], np.float32))
        Traceback (most recent call last):
        ...
        rxpipe.operators.collect._csv.RowError: column 'x': expected a finite float32 number
        (magnitude at most 3.402823e+38). Received: '-5e38', which overflows float32
    """
    infinite = np.isinf(out)
    if not infinite.any():  # the common case, one pass over the chunk
        return
    for i in np.flatnonzero(infinite).tolist():
        if _INFINITY.fullmatch(values[i].strip()) is None:
            raise RowError(
                f"column {column!r}: expected a finite float32 number (magnitude at most "
                f"{FLOAT32_MAX:.7g}). Received: {values[i]!r}, which overflows float32"
            )


@functools.lru_cache(maxsize=64)
def _missing_tokens(missing: frozenset[str]) -> tuple[frozenset[str], np.ndarray[Any, Any]]:
    """The ``missing`` strings a stripped cell can equal, and the numbers some of them read as.

    A cell equal to one of the first is missing as it is. A cell that reads as one of the
    numbers (``" -999"`` with ``missing=["-999"]``) may be missing once stripped, so
    :func:`_parse_floats` checks it again.
    """
    numbers = set()
    for token in missing:
        try:
            number = float(token)
        except ValueError:
            continue
        if not math.isnan(number):  # a missing cell is NaN anyway
            numbers.add(number)
    exact = frozenset(token for token in missing if token == token.strip())
    return exact, np.array(sorted(numbers), dtype=np.float64)


def _parse_floats(values: Sequence[str], missing: frozenset[str]) -> np.ndarray[Any, Any]:
    """The cells as float64 in one numpy call, exactly as :func:`_float_cells` reads them
    (both before :func:`_mark_missing_numbers`, which :func:`_float` applies to this).

    numpy reads each string with Python's ``float()``, which strips the same whitespace as
    ``str.strip()`` or less (never more), so a cell it reads has the value of the cell
    stripped. A cell that is a missing string as it is (``""``, ``"NA"``) makes the first
    call fail, and the chunk is read again with it as ``"nan"``; a cell that reads as a
    number but is a missing string once stripped (``" -999"`` with ``missing=["-999"]``)
    is found among the cells with that value. Any other cell ``float()`` rejects
    (``"?"``, ``" NA "``, ``"\\x1c1"``) raises ``ValueError``, and the caller reads the
    chunk cell by cell instead.

    Raises:
        ValueError: if ``float()`` rejects a cell that is not exactly a missing string.
    """
    exact, numbers = _missing_tokens(missing)
    try:  # no check for missing cells first: hashing every cell costs as much as a retry
        parsed: np.ndarray[Any, Any] = np.array(values, dtype=np.float64)
    except ValueError:
        if exact.isdisjoint(values):
            raise
        parsed = np.array(["nan" if v in exact else v for v in values], dtype=np.float64)
    if numbers.size:
        for i in np.flatnonzero(np.isin(parsed, numbers)).tolist():
            if values[i].strip() in missing:
                parsed[i] = np.nan
    return parsed


def _float_cells(
    column: str, values: Sequence[str], missing: frozenset[str], hint: str
) -> np.ndarray[Any, Any]:
    """The cells as float32 one at a time: the reference for :func:`_parse_floats`, and the
    ``RowError`` naming the first cell that is neither missing nor a number."""
    out = np.empty(len(values), dtype=np.float32)
    with np.errstate(over="ignore"):  # a number beyond float32 is refused below
        for i, value in enumerate(values):
            text = value.strip()
            if text in missing:
                out[i] = np.nan
                continue
            try:
                out[i] = float(text)
            except ValueError:
                raise RowError(
                    f"column {column!r}: expected a number{hint}. Received: {value!r}"
                ) from None
    _refuse_overflow(column, values, out)
    _mark_missing_numbers(out, missing)
    return out


def _int(column: str, values: Sequence[str], missing: frozenset[str]) -> np.ndarray[Any, Any]:
    """A column chunk as int64: read by numpy in one call (with Python's ``int()``, whose
    whitespace ``str.strip()`` also strips, as for :func:`_parse_floats`), else cell by
    cell (:func:`_int_cells`) to name the first bad cell.

    Example:
        >>> _int("n", ["1", " 20 ", "1_000"], frozenset({""})).tolist()
        [1, 20, 1000]
    """
    try:
        parsed: np.ndarray[Any, Any] = np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        return _int_cells(column, values, missing)
    return parsed


def _int_cells(column: str, values: Sequence[str], missing: frozenset[str]) -> np.ndarray[Any, Any]:
    """The cells as int64 one at a time, and the ``RowError`` naming the first bad one."""
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        try:
            out[i] = int(value.strip())
        except ValueError:
            what = "a missing value" if value.strip() in missing else repr(value)
            raise RowError(f"column {column!r}: expected an integer. Received: {what}") from None
        except OverflowError:
            raise RowError(
                f"column {column!r}: expected an integer from -2**63 to 2**63 - 1. "
                f"Received: {value!r}"
            ) from None
    return out


def _str(values: Sequence[str], missing: frozenset[str]) -> np.ndarray[Any, Any]:
    out = np.empty(len(values), dtype=object)
    out[:] = [None if v.strip() in missing else v for v in values]
    return out


def convert(
    column: str, kind: str, values: Sequence[str], missing: frozenset[str], hint: str = ""
) -> Any:
    """Convert one column's strings to a float32, int64 or object array (``RowError``).

    ``hint`` follows "expected a number" in the error for a value that is not one.
    """
    if kind == "float":
        return _float(column, values, missing, hint)
    if kind == "int":
        return _int(column, values, missing)
    return _str(values, missing)


def infer_type(values: list[str], missing: frozenset[str]) -> str:
    """``"float"`` if at least :data:`NUMBERS_IN_TEN` in ten of the present values are
    numbers (or none is present), else ``"str"``.

    A column of numbers with a few bad cells (``"?"``, ``"old"``) stays a number column,
    its bad cells row errors that name them; a column of words stays text.

    Example:
        >>> infer_type(["1", "2.5", "", *["3"] * 7, "?"], frozenset({""}))
        'float'
        >>> infer_type(["1", "?", "", "NA"], frozenset({"", "NA"}))
        'str'
        >>> infer_type(["red", "blue", "7"], frozenset({""}))
        'str'
    """
    present = numbers = 0
    for value in values:
        text = value.strip()
        if text in missing:
            continue
        present += 1
        try:
            float(text)
        except ValueError:
            continue
        numbers += 1
    return "float" if 10 * numbers >= NUMBERS_IN_TEN * present else "str"


def open_text(path: Path, encoding: str, errors: str = "surrogateescape") -> Any:
    """``path`` opened for the csv module: a UTF-8 BOM is dropped, and (by default) a byte
    the encoding cannot decode becomes a lone surrogate (see :func:`undecodable`) instead
    of an error that loses the text wrapper's whole chunk and the line number."""
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"
    return path.open(newline="", encoding=encoding, errors=errors)


FIELD_LIMIT = 64 * 1024 * 1024
"""The longest CSV field read, in characters (Python's ``csv`` stops at 131,072 by
default, which refuses long documents in a text column). Raised for the process, only
ever upwards, when a CSV file is opened."""


def _allow_long_fields() -> None:
    if csv.field_size_limit() < FIELD_LIMIT:
        csv.field_size_limit(FIELD_LIMIT)


class CsvRows:
    """A CSV file's csv reader, decoding strictly until a byte fails to decode.

    Strict decoding needs no per-row search for undecodable bytes. When a byte fails
    (``UnicodeDecodeError`` from ``reader``), :meth:`escape` opens the file again with
    undecodable bytes escaped (:func:`open_text`) and reads past the rows already
    taken; from then on ``escaping`` is true and the caller checks each row with
    :func:`undecodable`, so a bad byte loses only its row.

    Example:
        >>> import tempfile, pathlib
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "rows.csv"
        >>> _ = file.write_bytes(b"a\\n1\\n\\xe9\\n")
        >>> with CsvRows(file, "utf-8", ",") as rows:
        ...     rows.escaping, rows.next_row(0), rows.escaping
        (False, ['a'], True)
        >>> with CsvRows(file, "utf-8", ",") as rows:
        ...     _ = rows.escape(2)
        ...     undecodable(next(rows.reader)), rows.reader.line_num
        ((0, 233), 3)
    """

    def __init__(self, path: Path, encoding: str, delimiter: str) -> None:
        self.path = path
        self.encoding = encoding
        self.delimiter = delimiter
        self.escaping = False
        _allow_long_fields()
        self._handle = open_text(path, encoding, errors="strict")
        self.reader: Any = csv.reader(self._handle, delimiter=delimiter)

    def __enter__(self) -> CsvRows:
        return self

    def __exit__(self, *_: object) -> None:
        self._handle.close()

    def escape(self, taken: int) -> Any:
        """Open the file again with undecodable bytes escaped and return the new reader,
        past the first ``taken`` calls of the old one (rows or ``csv.Error``)."""
        self._handle.close()
        self._handle = open_text(self.path, self.encoding)
        self.reader = csv.reader(self._handle, delimiter=self.delimiter)
        self.escaping = True
        for _ in range(taken):  # the same text as before: the same rows and errors
            try:
                next(self.reader)
            except csv.Error:
                continue
            except StopIteration:  # the file changed under us
                break
        return self.reader

    def records(self, taken: int) -> Iterator[tuple[int, list[str] | csv.Error]]:
        """The rows after the first ``taken`` calls of the reader (the header's), as
        ``(line, fields)``, or ``(line, csv.Error)`` for a row that does not parse; blank
        lines are skipped. Escapes when a byte fails to decode: check each row with
        :func:`undecodable` while ``escaping`` is true.
        """
        reader = self.reader
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                if self.escaping:  # cannot happen: an escaping decoder does not fail
                    raise
                reader = self.escape(taken)
                continue
            except csv.Error as error:
                taken += 1
                yield reader.line_num, error
                continue
            taken += 1
            if row and (len(row) > 1 or row[0].strip()):
                yield reader.line_num, row

    def next_row(self, taken: int) -> list[str]:
        """The next row, escaping if a byte fails to decode (``taken``: calls so far).

        For a single row such as the header; a loop over rows inlines this.
        """
        try:
            return list(next(self.reader))
        except UnicodeDecodeError:
            if self.escaping:
                raise
        return list(next(self.escape(taken)))


def undecodable(fields: Sequence[str]) -> tuple[int, int] | None:
    """``(field index, byte)`` of the first byte the encoding could not decode, if any."""
    if _ESCAPED.search("".join(fields)) is None:  # the common case, checked at once
        return None
    for index, field in enumerate(fields):
        found = _ESCAPED.search(field)
        if found is not None:
            return index, ord(found.group()) - 0xDC00
    return None


def header_problem(layout: CsvLayout, header: Sequence[str]) -> tuple[str, str] | None:
    """What is wrong with the header row, if anything: ``(parameter, message)``.

    An undecodable byte is the ``encoding`` parameter's problem; a repeated column name
    (the second would silently hide the first) is the file's (``path``), and so is an
    empty one, unless ``columns`` leaves the unnamed columns out.
    """
    where = f"the header of {str(layout.path)!r}"
    found = undecodable(header)
    if found is not None:
        return "encoding", (
            f"{where}, column {found[0] + 1}: expected {layout.encoding} text. "
            f"Received: the byte {found[1]:#04x}"
        )
    names = [h.strip() for h in header]
    unnamed = [str(i + 1) for i, n in enumerate(names) if not n]
    if unnamed and layout.columns is None:
        return "path", (
            f"{where}, column{'s' if len(unnamed) > 1 else ''} {', '.join(unnamed)}: "
            "expected a column name. Received: an empty name (name it in the file, give "
            "names= for every column, or pick the named columns with columns=)"
        )
    repeated = sorted({n for n in names if n and names.count(n) > 1}, key=names.index)
    if repeated:
        shown = "; ".join(
            f"{n!r} in columns {', '.join(str(i + 1) for i, m in enumerate(names) if m == n)}"
            for n in repeated
        )
        return "path", (
            f"expected distinct column names in {where}. Received: {shown} "
            "(rename them, or give names=)"
        )
    return None


@attrs.frozen
class _Plan:
    """How to read the rows: the feature columns, every column's type and position."""

    features: tuple[str, ...]
    kinds: Mapping[str, str]
    index: Mapping[str, int]
    hints: Mapping[str, str]  # column → why "a number" was expected (inferred types)


Row = tuple[int, int, list[str]]
"""A data row: its index (from 0), the line it ends on and its fields."""
_FIELDS = operator.itemgetter(2)  # a Row's fields


class _Reader:
    """One pass over the file: rows → typed column arrays, a chunk at a time."""

    def __init__(
        self,
        layout: CsvLayout,
        chunk_size: int,
        limit: int | None,
        bad: BadRecords,
        memo: MetadataMemo,
    ) -> None:
        self.memo = memo
        self.layout = layout
        self.chunk_size = chunk_size
        self.limit = limit
        self.bad = bad
        self.id_lines: dict[str, int] = {}  # id_column value → the line it was read from

    def _fail(self, sample_id: Any, line: int, message: str, cause: Exception | None) -> None:
        where = f"{str(self.layout.path)!r} line {line}"
        if not self.bad.skipping:
            raise StageError(self.layout.plugin, f"{where}: {message}", [sample_id], cause)
        self.bad.skip([sample_id], f"{where}: {message}")

    def batches(self) -> Iterator[Batch]:
        layout = self.layout
        with CsvRows(layout.path, layout.encoding, layout.delimiter) as reader:
            try:
                header = reader.next_row(0) if layout.header else None
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as error:
                raise StageError(
                    layout.plugin, f"{str(layout.path)!r}: cannot read the header: {error}"
                ) from error
            if layout.names is None and header is not None:
                problem = header_problem(layout, header)
                if problem is not None:
                    raise StageError(layout.plugin, problem[1])
            names = layout.names or (
                tuple(h.strip() for h in header) if header is not None else None
            )
            rows = self._rows(reader, names)
            first = list(itertools.islice(rows, self.chunk_size))
            if not first:
                return
            if names is None:
                names = tuple(str(i) for i in range(len(first[0][2])))
            plan = self._plan(names, first)
            meta = self._metadata(plan)
            chunk = first
            while chunk:
                batch = self._batch(chunk, names, plan, meta)
                if batch is not None:
                    yield batch
                chunk = list(itertools.islice(rows, self.chunk_size))

    def _rows(self, rows: CsvRows, names: tuple[str, ...] | None) -> Iterator[Row]:
        if self.limit is not None and self.limit < 1:
            return
        for index, (line, row) in enumerate(rows.records(int(self.layout.header))):
            found = None if isinstance(row, csv.Error) or not rows.escaping else undecodable(row)
            if isinstance(row, csv.Error):
                self._fail(index, line, f"cannot parse the row: {row}", row)
            elif found is not None:
                field, byte = found
                column = (
                    f"column {names[field]!r}"
                    if names is not None and field < len(names)
                    else f"field {field + 1}"
                )
                message = (
                    f"{column}: expected {self.layout.encoding} text (the encoding parameter). "
                    f"Received: the byte {byte:#04x}"
                )
                self._fail(index, line, message, None)
            else:
                yield index, line, row
            if index + 1 == self.limit:
                return

    def _plan(self, names: tuple[str, ...], first: list[Row]) -> _Plan:
        layout = self.layout
        for what, name in (("label", layout.label), ("id_column", layout.id_column)):
            if name is not None and name not in names:
                raise ConfigError(
                    f"expected a column of {str(layout.path)!r} ({', '.join(names)}). "
                    f"Received: {name!r}",
                    f"{layout.plugin}.{what}",
                )
        excluded = {layout.label, layout.id_column}
        features = layout.columns or tuple(n for n in names if n not in excluded)
        unknown = [c for c in (*features, *layout.types) if c not in names]
        if unknown:
            raise ConfigError(
                f"expected columns of {str(layout.path)!r} ({', '.join(names)}). "
                f"Received: {unknown}",
                f"{layout.plugin}.columns",
            )
        index = {n: i for i, n in enumerate(names)}
        kinds: dict[str, str] = {}
        hints: dict[str, str] = {}
        for column in (*features, *([layout.label] if layout.label else [])):
            if column in layout.types:
                kinds[column] = layout.types[column]
                continue
            values = [row[index[column]] for _, _, row in first if len(row) == len(names)]
            missing = self._label_missing() if column == layout.label else layout.missing
            kinds[column] = infer_type(values, missing)
            if column == layout.label:
                fix = f"give types={{{column!r}: 'str'}} to read it as class names"
            else:
                fix = (
                    "add the value to missing=, or give "
                    f"types={{{column!r}: 'str'}} to read it as text"
                )
            hints[column] = f" (the column's inferred type: {fix})"
        return _Plan(features, kinds, index, hints)

    def _metadata(self, plan: _Plan) -> DatasetMetadata:
        specs = {c: FeatureSpec((), _DTYPES[plan.kinds[c]]) for c in plan.features}
        spec: FeatureSpec | Mapping[str, FeatureSpec] = (
            specs[plan.features[0]] if len(plan.features) == 1 else specs
        )
        layout = self.layout
        meta = DatasetMetadata(
            layout.path.stem, spec, layout.label_names, missing_strings=layout.missing_strings
        )
        numbers = missing_numbers(layout.missing)
        floats = tuple(c for c in plan.features if plan.kinds[c] == "float")
        if numbers and floats:  # served rows hold the numbers: the model marks them missing
            step = MissingNumbers(numbers, None if isinstance(spec, FeatureSpec) else floats)
            meta = meta.with_preprocessor(step, spec)
        return self.memo(meta)

    def _batch(
        self, chunk: list[Row], names: tuple[str, ...], plan: _Plan, meta: DatasetMetadata
    ) -> Batch | None:
        good = chunk
        if set(map(len, map(_FIELDS, chunk))) != {len(names)}:  # rare: checked row by row
            good = self._drop_rows_of_wrong_length(chunk, names)
        while good:
            try:
                batch = self._arrays(good, plan, meta)
                break
            except RowError as error:
                kept = self._drop_bad_rows(good, plan)
                if len(kept) == len(good):  # no single row fails: never retry the same rows
                    lines = f"lines {good[0][1]}-{good[-1][1]}"
                    raise StageError(
                        self.layout.plugin,
                        f"{str(self.layout.path)!r} {lines}: {error}",
                        [row_id for row_id, _, _ in good],
                        error,
                    ) from error
                good = kept
        else:
            return None
        if self.layout.id_column is None:
            return batch
        unique = self._claim_ids(good, batch.ids.tolist())
        if len(unique) == len(good):
            return batch
        return self._arrays(unique, plan, meta) if unique else None  # the rare slow path

    def _drop_rows_of_wrong_length(self, chunk: list[Row], names: tuple[str, ...]) -> list[Row]:
        """The rows with a field per column; the others fail or are skipped."""
        good = []
        for row_id, line, row in chunk:
            if len(row) != len(names):
                self._fail(
                    row_id,
                    line,
                    f"expected {len(names)} fields ({', '.join(names)}). Received: {len(row)}",
                    None,
                )
                continue
            good.append((row_id, line, row))
        return good

    def _claim_ids(self, rows: list[Row], ids: list[str]) -> list[Row]:
        """The rows whose id (in ``ids``) is present and not read before, their ids now
        taken; the others fail or are skipped. Only rows that are read take an id, so a
        row skipped for a bad value leaves its id to a later row."""
        missing = self._label_missing()
        fresh = dict(zip(ids, [line for _, line, _ in rows], strict=True))
        if (
            len(fresh) == len(ids)
            and fresh.keys().isdisjoint(missing)
            and fresh.keys().isdisjoint(self.id_lines.keys())  # iterates the shorter
        ):
            self.id_lines.update(fresh)
            return rows
        name = self.layout.id_column
        kept = []
        for (row_id, line, row), value in zip(rows, ids, strict=True):
            if value in missing:
                what = f"a missing value ({value!r})" if value else "an empty cell"
                received = f"expected a sample id. Received: {what}"
            elif value in self.id_lines:
                received = (
                    "expected an id unique in the file. "
                    f"Received: {value!r}, the id of line {self.id_lines[value]} already"
                )
            else:
                self.id_lines[value] = line
                kept.append((row_id, line, row))
                continue
            self._fail(row_id, line, f"column {name!r} (the id_column): {received}", None)
        return kept

    def _drop_bad_rows(self, rows: list[Row], plan: _Plan) -> list[Row]:
        kept = []
        for row_id, line, row in rows:
            try:
                self._columns([row], plan)  # the very checks _arrays makes
            except RowError as error:
                self._fail(row_id, line, str(error), error)
                continue
            kept.append((row_id, line, row))
        return kept

    def _label_missing(self) -> frozenset[str]:
        """Label and id cells that mean "none": the ``missing`` strings and the empty cell."""
        return self.layout.missing | {""}

    def _labels(self, values: Sequence[str], kind: str, hint: str) -> np.ndarray[Any, Any]:
        """The label column's cells as class indices (with label_names) or typed values.

        Raises:
            RowError: for a missing label or one that is not a valid label (every check
                of a label cell is here, so a chunk and its rows one by one agree).
        """
        layout = self.layout
        missing = self._label_missing()
        if layout.label_names is not None:
            return self._label_index(values, missing)
        if not missing.isdisjoint(map(str.strip, values)):
            raise RowError(
                f"column {layout.label!r}: expected {_LABEL_EXPECTED[kind]}. "
                "Received: a missing value"
            )
        if kind == "str":
            out = np.empty(len(values), dtype=object)
            out[:] = [v.strip() for v in values]
            return out
        array: np.ndarray[Any, Any] = convert(str(layout.label), kind, values, frozenset(), hint)
        if kind == "float":  # a missing number written otherwise (-999.0 for "-999")
            hits = np.isin(array, np.asarray(missing_numbers(missing), np.float32))
            if hits.any():
                raise RowError(
                    f"column {layout.label!r}: expected {_LABEL_EXPECTED[kind]}. "
                    f"Received: a missing value ({values[int(np.argmax(hits))]!r})"
                )
        finite = np.isfinite(array)
        if not finite.all():
            raise RowError(
                f"column {layout.label!r}: expected a finite number. "
                f"Received: {values[int(np.argmin(finite))]!r}"
            )
        return array

    def _label_index(self, values: Sequence[str], missing: frozenset[str]) -> np.ndarray[Any, Any]:
        names = self.layout.label_names or ()
        lookup = {n: i for i, n in enumerate(names)}
        found = list(map(lookup.get, map(str.strip, values)))
        if None in found:
            value = values[found.index(None)]
            what = "a missing value" if value.strip() in missing else repr(value)
            raise RowError(
                f"column {self.layout.label!r}: expected one of the label_names "
                f"{list(names)}. Received: {what}"
            )
        return np.array(found, dtype=np.int64)

    def _columns(
        self, rows: list[list[str]], plan: _Plan
    ) -> tuple[Features, np.ndarray[Any, Any] | None]:
        """The rows' features and labels (``RowError`` if a cell is not what it should be)."""
        layout = self.layout
        wanted = len(plan.features) + (layout.label is not None)
        if rows and 2 * wanted >= len(rows[0]):  # most columns read: transpose in one pass
            cells: list[Sequence[str]] = list(zip(*rows, strict=True))

            def column(name: str) -> Sequence[str]:
                return cells[plan.index[name]]
        else:

            def column(name: str) -> Sequence[str]:
                return [row[plan.index[name]] for row in rows]

        arrays = {
            c: convert(c, plan.kinds[c], column(c), layout.missing, plan.hints.get(c, ""))
            for c in plan.features
        }
        values: Features = arrays[plan.features[0]] if len(plan.features) == 1 else arrays
        labels = None
        if layout.label is not None:
            labels = self._labels(
                column(layout.label), plan.kinds[layout.label], plan.hints.get(layout.label, "")
            )
        return values, labels

    def _arrays(self, rows: list[Row], plan: _Plan, meta: DatasetMetadata) -> Batch:
        layout = self.layout
        values, labels = self._columns(list(map(_FIELDS, rows)), plan)
        if layout.id_column is not None:
            at = plan.index[layout.id_column]
            ids = np.empty(len(rows), dtype=object)
            ids[:] = [row[at].strip() for _, _, row in rows]
        elif rows[-1][0] - rows[0][0] == len(rows) - 1:  # no row left out between them
            ids = np.arange(rows[0][0], rows[-1][0] + 1, dtype=np.int64)
        else:
            ids = np.asarray([row_id for row_id, _, _ in rows], dtype=np.int64)
        return Batch(values, labels, ids, meta)


def csv_source(
    layout: CsvLayout, chunk_size: int, limit: int | None, on_error: str, max_skipped: int | None
) -> Operator[Batch, Batch]:
    """An operator emitting its input, then the rows of ``layout.path``.

    Raises:
        ConfigError: for a ``chunk_size``, ``limit`` or error policy out of range.
    """
    positive_int(layout.plugin, "chunk_size", chunk_size)
    optional_positive_int(layout.plugin, "limit", limit)
    check_on_error(layout.plugin, on_error, max_skipped)
    memo = MetadataMemo()

    def own() -> reactivex.Observable[Batch]:
        bad = BadRecords(layout.plugin, on_error, max_skipped)  # the pass's accounting
        return generate(_Reader(layout, chunk_size, limit, bad, memo).batches)

    return append(own)


def make_layout(
    plugin_name: str,
    path: str,
    label: str | None,
    columns: Sequence[str] | None,
    types: Mapping[str, str],
    header: bool,
    column_names: Sequence[str] | None,
    delimiter: str,
    label_names: Sequence[str] | None,
    id_column: str | None,
    missing: Sequence[str],
    encoding: str,
) -> CsvLayout:
    """Validate the parameters of a CSV plugin into a :class:`CsvLayout`."""
    file = existing_path(plugin_name, "path", path, kind="file")
    tokens = missing_strings(plugin_name, missing)
    for column, kind in types.items():
        if kind not in COLUMN_TYPES:
            raise ConfigError(
                f"expected one of {', '.join(map(repr, COLUMN_TYPES))}. Received: {kind!r}",
                f"{plugin_name}.types.{column}",
            )
    if len(delimiter) != 1:
        raise ConfigError(
            f"expected one character. Received: {delimiter!r}", f"{plugin_name}.delimiter"
        )
    try:
        "".encode(encoding)
    except LookupError:
        raise ConfigError(
            f"expected a Python text encoding such as 'utf-8'. Received: {encoding!r}",
            f"{plugin_name}.encoding",
        ) from None
    layout = CsvLayout(
        plugin=plugin_name,
        path=file,
        label=label,
        columns=names(plugin_name, "columns", columns),
        types=dict(types),
        header=header,
        names=names(plugin_name, "names", column_names),
        delimiter=delimiter,
        label_names=names(plugin_name, "label_names", label_names),
        id_column=id_column,
        missing=frozenset(tokens),
        encoding=encoding,
        missing_strings=tuple(dict.fromkeys(tokens)),
    )
    _check_columns(layout)
    return layout


def _check_columns(layout: CsvLayout) -> None:
    """Check the named columns against the file's header now, not when the run reads it."""
    names = layout.names
    if names is None and layout.header:
        try:
            with open_text(layout.path, layout.encoding) as handle:
                header = next(csv.reader(handle, delimiter=layout.delimiter))
        except (StopIteration, OSError, UnicodeDecodeError, csv.Error):
            return  # an empty or unreadable file fails when read, naming the file
        problem = header_problem(layout, header)
        if problem is not None:
            raise ConfigError(problem[1], f"{layout.plugin}.{problem[0]}")
        names = tuple(h.strip() for h in header)
    if names is None:
        return
    wanted = {
        "label": [layout.label] if layout.label else [],
        "id_column": [layout.id_column] if layout.id_column else [],
        "columns": list(layout.columns or ()),
        "types": list(layout.types),
    }
    for param, columns in wanted.items():
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise ConfigError(
                f"expected columns of {str(layout.path)!r} ({', '.join(names)}). "
                f"Received: {', '.join(map(repr, unknown))}",
                f"{layout.plugin}.{param}",
            )


@plugin("collect.csv")
def csv_file(
    path: str,
    label: str | None = None,
    columns: Sequence[str] | None = None,
    types: Mapping[str, str] | None = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    delimiter: str = ",",
    label_names: Sequence[str] | None = None,
    id_column: str | None = None,
    missing: Sequence[str] = MISSING,
    encoding: str = "utf-8",
    chunk_size: int = 1024,
    limit: int | None = None,
    on_error: str = "raise",
    max_skipped: int | None = None,
) -> Operator[Batch, Batch]:
    """Rows of a CSV file, read ``chunk_size`` rows at a time.

    Feature columns become named features (a mapping of column → array; one feature
    column becomes a plain array): ``"float"`` columns float32 with NaN for missing
    values, ``"int"`` columns int64, ``"str"`` columns object arrays with ``None`` for
    missing values. Column types not given in ``types`` are inferred from the first
    chunk: a column is float when at least nine in ten of its present values there are
    numbers (a column with none present too), else str. So a column of numbers with a
    few stray cells (``"?"``, ``"old"``) stays float and each such cell, in any chunk,
    is a row error naming the file, line, column and value (add the value to
    ``missing``, or give the column a type, to read it otherwise); a column of words
    stays str. A number beyond float32's range (``5e38``) is a row error too, as serving
    refuses it (``inf`` is read as infinity; ``1e-50`` rounds to 0). Labels: with
    ``label_names``, the label column's values are mapped to class indices; without,
    the column's values are kept (numbers for regression; strings for
    ``process.label_encode``). Sample ids are the data rows' numbers (from
    0) or the ``id_column``'s values. Every header column needs a name (an unnamed
    one, such as the index pandas writes, may be left out with ``columns``).

    Args:
        path: the CSV file.
        label: the label column (``None``: unlabelled rows).
        columns: the feature columns (default: every column but ``label`` and ``id_column``).
        types: column → ``"float"``, ``"int"`` or ``"str"``.
        header: the first row names the columns.
        names: column names (overrides the header; needed to name columns without one).
        delimiter: the field separator.
        label_names: the classes, in index order.
        id_column: a column of sample ids, each present and unique in the file: a row
            with an empty or ``missing`` id, or with the id of a row read before, is a
            row error (naming both lines).
        missing: strings that mean "missing" (compared with a cell stripped of
            surrounding spaces). One that reads as a number (``"-999"``) makes that
            value missing in ``"float"`` columns however a cell writes it (``-999.0``,
            ``-9.99e2``; compared in float32), and in the exported model, which turns a
            served -999 in those columns into a missing value before its other steps
            (the data's first preprocessing step, ``missing_numbers``); in ``"str"``
            columns the text is compared (``"-999.0"`` is then a category), and
            ``"int"`` columns hold no missing values (``-999`` is read as the number).
            Recorded in the batches' metadata
            (``DatasetMetadata.missing_strings``): ``process.fill_missing`` and
            ``process.one_hot`` treat them as missing too, in training and in the
            exported model, so a served ``"?"`` is missing where a ``"?"`` read here was.
        encoding: the file's text encoding.
        chunk_size: rows per emitted batch.
        limit: read only the first ``limit`` rows.
        on_error: ``"raise"``: a malformed row (wrong field count, a value of the wrong
            type, an undecodable byte, a bad id or label) fails the run naming the file
            and line; ``"skip"``: it is skipped and reported, the rest of its chunk kept.
        max_skipped: with ``"skip"``, fail after this many bad rows.

    Example:
        >>> import tempfile, pathlib
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "rows.csv"
        >>> _ = file.write_text("size,color,label\\n1.5,red,a\\n,blue,b\\n")
        >>> from rxpipe.testing import collect
        >>> [b] = collect(reactivex.empty().pipe(csv_file(str(file), label="label")))
        >>> b.features["size"].tolist(), b.features["color"].tolist(), b.labels.tolist()
        ([1.5, nan], ['red', 'blue'], ['a', 'b'])
    """
    layout = make_layout(
        "collect.csv",
        path,
        label,
        columns,
        types or {},
        header,
        names,
        delimiter,
        label_names,
        id_column,
        missing,
        encoding,
    )
    return csv_source(layout, chunk_size, limit, on_error, max_skipped)


@plugin("collect.text_csv")
def text_csv(
    path: str,
    text: str = "text",
    label: str | None = "label",
    label_names: Sequence[str] | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8",
    chunk_size: int = 1024,
    limit: int | None = None,
    on_error: str = "raise",
    max_skipped: int | None = None,
) -> Operator[Batch, Batch]:
    """Labelled text in a CSV file: one text column, one label column, with a header.

    Emits the texts as an object array of str; no text is missing (an empty cell is the
    empty text, so the batches' ``DatasetMetadata.missing_strings`` is empty). Labels are
    class indices with ``label_names``, else the label strings (follow with
    ``process.label_encode``).

    Args:
        path: the CSV file.
        text: the text column.
        label: the label column (``None``: unlabelled).
        label_names: the classes, in index order.
        delimiter: the field separator.
        encoding: the file's text encoding.
        chunk_size: rows per emitted batch.
        limit: read only the first ``limit`` rows.
        on_error: ``"raise"`` or ``"skip"`` for malformed rows.
        max_skipped: with ``"skip"``, fail after this many bad rows.

    Example:
        >>> import tempfile, pathlib
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "texts.csv"
        >>> _ = file.write_text('text,label\\n"great, loved it",pos\\nawful,neg\\n')
        >>> from rxpipe.testing import collect
        >>> [b] = collect(reactivex.empty().pipe(text_csv(str(file), label_names=["neg", "pos"])))
        >>> b.features.tolist(), b.labels.tolist()
        (['great, loved it', 'awful'], [1, 0])
    """
    layout = make_layout(
        "collect.text_csv",
        path,
        label,
        (text,),
        {text: "str"},
        True,
        None,
        delimiter,
        label_names,
        None,
        (),
        encoding,
    )
    return csv_source(layout, chunk_size, limit, on_error, max_skipped)
