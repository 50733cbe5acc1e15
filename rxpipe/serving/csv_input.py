"""CSV files for ``rxpipe predict``: a table model's rows, read as its training data was.

A CSV file is read with the rules of the training data's ``collect.csv`` (or
``collect.text_csv``) stage (:func:`csv_rules`), by that plugin's own reader and cell
conversion, and its columns are matched to the model's inputs by name (:func:`read_csv`):
an input's own name, or for a vector input whose values the model card names
(``columns``, e.g. a model trained on ``collect.wine``) those names, in any order.
Its header is checked at once; its rows are read a chunk at a time as they are predicted
(:meth:`CsvTable.batches`), so a file of any size takes the memory of a chunk.
"""

from __future__ import annotations

import csv
import itertools
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import numpy as np

from rxpipe.errors import PredictionInputError, format_names
from rxpipe.serving.bundle import PIPELINE_FILE, SINGLE_INPUT, Bundle, TensorInfo
from rxpipe.serving.inputs import columns_to_batch

__all__ = ["CsvRules", "CsvTable", "csv_rules", "read_csv"]


@attrs.frozen
class CsvRules:
    """How the model's training data read its CSV file, so that a CSV to predict reads
    alike: ``collect.csv``'s (or ``collect.text_csv``'s) parameters in the bundle's
    ``pipeline.toml``, else ``collect.csv``'s defaults (see :func:`csv_rules`; for a
    model trained on a bundled table such as ``collect.wine``, with its label column
    ``target``).

    Attributes:
        delimiter: the field separator.
        header: whether the first row names the columns.
        names: the column names training gave (over the header, or for a file without).
        missing: the cells (stripped) that are missing values.
        encoding: the file's text encoding.
        label: the label column (not read: a file may hold it or not).
        id_column: the sample-id column (not read either).
        column: the column of a model's one unnamed input (``features``):
            ``collect.text_csv``'s ``text``, or ``collect.csv``'s one ``columns``.
        source: the plugin the rules come from, ``None`` for the defaults (a bundled
            table's, ``collect.wine``..., has them too, with its label column).
    """

    delimiter: str = ","
    header: bool = True
    names: tuple[str, ...] | None = None
    missing: frozenset[str] = attrs.field(factory=lambda: frozenset(_default("missing")))
    encoding: str = "utf-8"
    label: str | None = None
    id_column: str | None = None
    column: str | None = None
    source: str | None = None


def _default(parameter: str, plugin: str = "collect.csv") -> Any:
    """A parameter's default in ``collect.csv`` (or ``collect.text_csv``)."""
    from rxpipe.registry import registry

    return next(p.default for p in registry.get(plugin).params if p.name == parameter)


def _collect_csv() -> ModuleType:
    """collect.csv's reading code (``rxpipe.operators``, imported by name: rxpipe's own
    modules do not import the plugin library at import time)."""
    return import_module("rxpipe.operators.collect._csv")


def _bundled() -> ModuleType:
    """The bundled tables' plugins (collect.wine...), imported by name as above."""
    return import_module("rxpipe.operators.collect._bundled")


_CSV_SOURCES = ("collect.csv", "collect.text_csv")


def csv_rules(bundle: Bundle) -> CsvRules:
    """How the model's training data read its CSV: from the first ``collect.csv`` or
    ``collect.text_csv`` stage of the bundle's ``pipeline.toml`` (its parameters over
    the plugin's defaults); ``collect.csv``'s defaults for a bundle without one, and
    for one whose first source is a bundled table (``collect.wine``...) with that
    table's label column (``target``, as scikit-learn names it).

    Example:
        >>> class Bare:  # a bundle directory without pipeline.toml
        ...     path = Path("/nonexistent")
        >>> rules = csv_rules(Bare())  # type: ignore[arg-type]
        >>> rules.delimiter, rules.header, sorted(rules.missing)[:3], rules.source
        (',', True, ['', 'N/A', 'NA'], None)
    """
    try:
        config = tomllib.loads((Path(bundle.path) / PIPELINE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none (a bundle written by write_bundle), or unreadable
        return CsvRules()
    stages = config.get("plugins")
    tables = _bundled()
    source = next(
        (
            stage
            for stage in (stages if isinstance(stages, list) else [])
            if isinstance(stage, Mapping) and stage.get("use") in (*_CSV_SOURCES, *tables.SOURCES)
        ),
        None,
    )
    if source is None:
        return CsvRules()
    plugin = str(source["use"])
    if plugin in tables.SOURCES:  # read by scikit-learn: collect.csv's defaults
        return CsvRules(label=tables.LABEL_COLUMN, source=plugin)

    def given(parameter: str) -> Any:
        return source.get(parameter, _default(parameter, plugin))

    if plugin == "collect.text_csv":  # a header, no missing text, one text column
        return CsvRules(
            delimiter=str(given("delimiter")),
            missing=frozenset(),
            encoding=str(given("encoding")),
            label=given("label"),
            column=str(given("text")),
            source=plugin,
        )
    names, columns = given("names"), given("columns")
    return CsvRules(
        delimiter=str(given("delimiter")),
        header=bool(given("header")),
        names=None if names is None else tuple(map(str, names)),
        missing=frozenset(map(str, given("missing"))),
        encoding=str(given("encoding")),
        label=given("label"),
        id_column=given("id_column"),
        column=str(columns[0]) if columns is not None and len(columns) == 1 else None,
        source=plugin,
    )


_CELL_KINDS = {"f": "float", "i": "int", "u": "int"}  # dtype kind → how collect.csv reads it


@attrs.frozen
class CsvTable:
    """A CSV file for a table model, checked (its header) and not yet read further: its
    rows are read ``chunk`` at a time by :meth:`batches`, as they are predicted.

    Attributes:
        text: the file as the command line names it (in sample names and errors).
        path: the file.
        rules: how it is read (the training data's rules).
        fields: the column names, one per field of a row.
        columns: model input → (field index, column name) of each of its values, for
            each input in the file: one column for an input of one value a sample, the
            columns the card names (``TensorInfo.columns``), in order, for a vector.
        ignored: the columns that are no model input (nor the label or the id column).
        width: the length of the longest sample name the file can have (``rows.csv[41]``).
    """

    text: str
    path: Path
    rules: CsvRules
    fields: tuple[str, ...]
    columns: Mapping[str, tuple[tuple[int, str], ...]]
    ignored: tuple[str, ...] = ()
    width: int = 0

    @property
    def notes(self) -> list[str]:
        """What to tell the user about the file: its columns the model does not read."""
        if not self.ignored:
            return []
        many = len(self.ignored) > 1
        return [
            f"{self.text}: column{'s' * many} {', '.join(map(repr, self.ignored))} "
            f"{'are' if many else 'is'} not {'inputs' if many else 'an input'} of the model: "
            "not read"
        ]

    def batches(
        self, bundle: Bundle, chunk: int
    ) -> Iterator[tuple[list[str], dict[str, np.ndarray[Any, Any]]]]:
        """The file's samples ``chunk`` rows at a time: their names and their checked batch.

        Raises:
            PredictionInputError: naming the file, the line and the column of the first
                row that does not read or does not fit the model.
        """
        start = 0
        with _csv_rows(self.path, self.text, self.rules) as (_, rows):
            while block := list(itertools.islice(rows, chunk)):
                names = [f"{self.text}[{i}]" for i in range(start, start + len(block))]
                yield names, self._batch(block, bundle)
                start += len(block)

    def _batch(self, block: list[tuple[int, list[str]]], bundle: Bundle) -> dict[str, Any]:
        """The inputs of the rows ``block`` (line, fields): each column's cells read as
        training read them, then checked as JSON rows are (a missing cell as ``null``;
        a vector input's row as the list of its columns' cells, in the card's order)."""
        for line, fields in block:
            if len(fields) != len(self.fields):
                raise PredictionInputError(
                    f"{self.text}, line {line}: expected {len(self.fields)} fields "
                    f"({format_names(self.fields, quoted=False)}). Received: {len(fields)}"
                )
        columns: dict[str, list[Any]] = {}
        for name, places in self.columns.items():
            spec = bundle.inputs[name]
            kind = _cell_kind(spec)
            cells = [self._cells(block, index, column, kind) for index, column in places]
            if spec.sample_shape:  # a vector: each row's cells, in the card's order
                columns[name] = [list(row) for row in zip(*cells, strict=True)]
            else:
                columns[name] = cells[0]
        try:
            return columns_to_batch(columns, bundle.inputs, self.text, bundle.filled_inputs)
        except PredictionInputError as error:
            for i, (line, fields) in enumerate(block):  # the first row that fails, alone
                where = f"{self.text}, line {line}"
                try:
                    row = {name: cells[i : i + 1] for name, cells in columns.items()}
                    columns_to_batch(row, bundle.inputs, where, bundle.filled_inputs)
                except PredictionInputError as own:
                    raise PredictionInputError(self._at_column(str(own), where, fields)) from None
            raise error from None

    def _cells(
        self, block: list[tuple[int, list[str]]], index: int, column: str, kind: str
    ) -> list[Any]:
        """The cells of field ``index`` (the column ``column``) of the rows ``block``, read
        as training read them (``kind``), a missing one as ``None``."""
        reading = _collect_csv()
        cells = [fields[index] for _, fields in block]
        try:
            values = reading.convert(column, kind, cells, self.rules.missing)
        except reading.RowError as error:
            for line, fields in block:  # the first row that fails, alone
                try:
                    reading.convert(column, kind, [fields[index]], self.rules.missing)
                except reading.RowError as own:
                    raise PredictionInputError(f"{self.text}, line {line}: {own}") from None
            lines = f"lines {block[0][0]}-{block[-1][0]}"  # no row fails alone
            raise PredictionInputError(f"{self.text}, {lines}: {error}") from None
        return [None if _is_nan(v) else v for v in values.tolist()]

    def _at_column(self, message: str, where: str, fields: list[str]) -> str:
        """A row's error (``rows.csv, line 7['age']: ... Received: null in sample 0``, or
        ``... null in sample 0 at (2,)`` in a vector input) said of the CSV: ``rows.csv,
        line 7, column 'age': ... Received: a missing value ('NA')``."""
        for name, places in self.columns.items():
            prefix = f"{where}[{name!r}]: "
            if not message.startswith(prefix):
                continue
            rest = message[len(prefix) :]
            at = re.search(r" in sample 0(?: at \((\d+),\))?$", rest)
            if at is not None:  # the value at ``at``: its column's
                rest, position = rest[: at.start()], int(at.group(1) or 0)
            elif len(places) > 1:  # no one value of a vector input
                return f"{where}, input {name!r}: {rest}"
            else:
                position = 0
            index, column = places[position]
            cell = fields[index]
            if rest.endswith("Received: null") and cell.strip() in self.rules.missing:
                rest = rest[: -len("null")] + f"a missing value ({cell!r})"
            return f"{where}, column {column!r}: {rest}"
        return message


def _cell_kind(spec: TensorInfo) -> str:
    """How collect.csv reads a cell for ``spec``'s input: ``"float"``, ``"int"`` or ``"str"``
    (booleans and other kinds as text, which the input then refuses, naming the cell)."""
    if spec.dtype == "string":
        return "str"
    return _CELL_KINDS.get(np.dtype(spec.dtype).kind, "str")


def _is_nan(value: Any) -> bool:
    """Whether a cell read is missing (``None``, or NaN in a number column)."""
    return value is None or (isinstance(value, float) and value != value)


@contextmanager
def _csv_rows(
    path: Path, text: str, rules: CsvRules
) -> Iterator[tuple[list[str] | None, Iterator[tuple[int, list[str]]]]]:
    """The header (``None`` without one) and the data rows ``(line, fields)`` of a CSV
    file, read by collect.csv's reader (:class:`~rxpipe.operators.collect._csv.CsvRows`:
    a UTF-8 byte order mark dropped, long fields allowed, an undecodable byte named);
    blank lines are skipped, as training skips them."""
    reading = _collect_csv()
    undecodable = reading.undecodable
    try:
        rows = reading.CsvRows(path, rules.encoding, rules.delimiter)
    except OSError as error:
        raise PredictionInputError(
            f"{text}: expected a readable file. Received: {error.strerror or error}"
        ) from None

    def bad_byte(line: int, found: tuple[int, int]) -> PredictionInputError:
        return PredictionInputError(
            f"{text}, line {line}, field {found[0] + 1}: expected {rules.encoding} text "
            f"(the training data's encoding). Received: the byte {found[1]:#04x}"
        )

    def data(taken: int) -> Iterator[tuple[int, list[str]]]:
        for line, row in rows.records(taken):
            if isinstance(row, csv.Error):
                raise PredictionInputError(
                    f"{text}, line {line}: expected a CSV row. Received: one that does not "
                    f"parse ({row})"
                )
            found = undecodable(row) if rows.escaping else None
            if found is not None:
                raise bad_byte(line, found)
            yield line, row

    with rows:
        header = None
        if rules.header:
            try:
                header = rows.next_row(0)
            except StopIteration:
                raise PredictionInputError(
                    f"{text}: expected a header row naming the columns, then rows. "
                    "Received: an empty file"
                ) from None
            except csv.Error as error:
                raise PredictionInputError(
                    f"{text}, line 1: expected a header row naming the columns. Received: "
                    f"one that does not parse ({error})"
                ) from None
            found = undecodable(header)
            if found is not None:
                raise bad_byte(1, found)
        yield header, data(int(rules.header))


def read_csv(path: str | Path, bundle: Bundle, text: str | None = None) -> CsvTable:
    """A CSV file's rows as samples for ``bundle``, a model on a table: checked now from
    its header, read as they are predicted (:meth:`CsvTable.batches`).

    The file is read as the model's training data read its CSV (:func:`csv_rules`: the
    delimiter, the header or the column ``names``, the ``missing`` strings and the
    encoding of its ``collect.csv`` stage), and each column the model takes as an input
    of that name (a text model trained on ``collect.text_csv`` takes its ``text``
    column). An input of several values a sample whose model card names them
    (``columns``: a model trained on ``collect.wine`` takes ``features``, 13 values
    named ``alcohol``, ``malic_acid``...) takes a column of each name, in any order, and
    gets each row's values in the card's order; such a model is read with
    ``collect.csv``'s defaults and the table's label column (``target``), and a file
    without a header is refused, listing the columns: its values could be matched only
    by their order, which no file states. Each cell is read as training read it (a
    float, an int or a text; a missing cell, ``""`` or ``NA`` by default, as JSON
    ``null``), then checked as JSON rows are. The label and id columns of the training
    data may be present or not; another column the model does not take is not read,
    and :attr:`CsvTable.notes` names it (a column misspelt is missing: a required one
    is an error, and one the model does not use changes no answer).

    Args:
        path: the CSV file.
        bundle: the model.
        text: the file's name in sample names and errors (default ``path``).

    Returns:
        The file, to predict with :func:`predict_inputs` (its rows are ``rows.csv[0]``,
        ``rows.csv[1]``... as training numbers them).

    Raises:
        PredictionInputError: for a model whose inputs are not a table's columns (arrays
            whose columns the card does not name, images), an empty file, a header
            without a column the model needs (naming it), a file without a header for a
            vector input whose columns the card names, or a column named twice; later,
            while its rows are read, for a row that does not fit, naming the file, the
            line and the column.

    Example:
        >>> table = read_csv("wine.csv", Bundle.load("runs/wine/latest"))  # doctest: +SKIP
        >>> table.notes  # doctest: +SKIP
        ["wine.csv: column 'notes' is not an input of the model: not read"]
    """
    path = Path(path)
    text = str(path) if text is None else text
    _refuse_non_table(bundle, text)
    rules = csv_rules(bundle)
    with _csv_rows(path, text, rules) as (header, rows):
        first = next(rows, None)
    if first is None:
        raise PredictionInputError(
            f"{text}: expected {'a header row, then ' if rules.header else ''}rows of "
            f"samples. Received: {'only the header' if header is not None else 'no rows'}"
        )
    fields = _fields(rules, header, first)
    wanted = _wanted_columns(bundle, rules, fields)
    reads = [column for columns in wanted.values() for column in columns]
    repeated = sorted({c for c in reads if fields.count(c) > 1})
    if repeated:
        lines = "; ".join(
            f"{c!r} in columns {', '.join(str(i + 1) for i, f in enumerate(fields) if f == c)}"
            for c in repeated
        )
        raise PredictionInputError(
            f"{text}: expected each column the model reads once. Received: {lines}"
        )
    _refuse_unnamed(bundle, text, wanted, fields, header)
    columns = {
        name: tuple((fields.index(c), c) for c in wanted_columns)
        for name, wanted_columns in wanted.items()
        if all(c in fields for c in wanted_columns)
    }
    optional = {name for name in wanted if bundle.inputs[name].optional}
    required = [c for name, cs in wanted.items() if name not in optional for c in cs]
    absent = [column for column in required if column not in fields]
    if absent:
        unused = [c for name in optional for c in wanted[name]]
        also = f", and optionally {format_names(unused)}, which it does not use" if unused else ""
        split = f"; fields split at {rules.delimiter!r}"
        if rules.source not in _bundled().SOURCES:  # not read from a CSV in training
            split += ", as in the training data"
        count = f"{len(required)} column{'s' * (len(required) != 1)}"
        vectors = [n for n in wanted if n not in optional and bundle.inputs[n].columns]
        if vectors:
            count += (
                f": the values of {'input' if len(vectors) == 1 else 'inputs'} "
                f"{format_names(vectors)} as the model card names them, in any order"
            )
        raise PredictionInputError(
            f"{text}: expected a column for each input of model {bundle.name!r} ({count}"
            f"{also}). Received: a {'header' if header else 'table'} without "
            f"{format_names(absent)} (its {len(fields)} column{'s' * (len(fields) > 1)}: "
            f"{format_names(fields, quoted=False)}{split})"
        )
    known = {*reads, rules.label, rules.id_column}
    ignored = tuple(f for f in fields if f not in known)
    bound = max(1, path.stat().st_size // max(2, len(fields)))  # a row takes a byte a field
    return CsvTable(text, path, rules, fields, columns, ignored, len(f"{text}[{bound - 1}]"))


def _refuse_unnamed(
    bundle: Bundle,
    text: str,
    wanted: Mapping[str, Sequence[str]],
    fields: Sequence[str],
    header: list[str] | None,
) -> None:
    """Raise for a file without a column of a vector input the card names the values of
    (``collect.wine``'s 13): a file without a header, whose values could be matched to
    the columns only by their order, which the file does not say."""
    for name, columns in wanted.items():
        spec = bundle.inputs[name]
        if spec.columns is None or spec.optional or any(c in fields for c in columns):
            continue
        received = (
            f"a first row that names none of them ({format_names(fields, 5, quoted=False)}: "
            "a file without a header?)"
            if header is not None
            else "rows without a header (as the training data's were read)"
        )
        raise PredictionInputError(
            f"{text}: expected a header row naming the {len(columns)} columns of input "
            f"{name!r} of model {bundle.name!r}, in any order: {', '.join(columns)}. "
            f"Received: {received}"
        )


def _refuse_non_table(bundle: Bundle, text: str) -> None:
    """Raise unless ``bundle`` takes a table's columns: one value per input and sample,
    or a vector whose values the model card names (``TensorInfo.columns``)."""
    if bundle.accepts_images:
        why = "encoded images: give image files"
    elif any(spec.sample_shape and spec.columns is None for spec in bundle.inputs.values()):
        why = (
            "arrays of several values a sample, whose columns the model card does not "
            "name: give .npy, .npz, .json or .jsonl rows"
        )
    else:
        return
    raise PredictionInputError(
        f"{text}: expected a model on a table (one input per column, as collect.csv reads "
        f"them) for a CSV file. Received: model {bundle.name!r}, whose input is "
        f"{bundle.describe_inputs()} ({why})"
    )


def _fields(
    rules: CsvRules, header: list[str] | None, first: tuple[int, list[str]]
) -> tuple[str, ...]:
    """The name of each field of a row: the training data's ``names``, else the header's
    (stripped), else the fields' numbers from 0 (as collect.csv names them). With
    ``names``, rows may leave out the label column (the last or any other)."""
    if rules.names is not None:
        names = rules.names
        count = len(first[1])
        if count == len(names) - 1 and rules.label in names:
            return tuple(n for n in names if n != rules.label)
        return names
    if header is not None:
        return tuple(h.strip() for h in header)
    return tuple(str(i) for i in range(len(first[1])))


def _wanted_columns(
    bundle: Bundle, rules: CsvRules, fields: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Model input → the CSV columns it reads: its own name; for a vector input whose
    values the card names, those names, in order; for a model's one unnamed input
    (``features``) otherwise: the training data's text column, or its one column besides
    the label and the id."""
    inputs = bundle.inputs
    named = {name: spec.columns for name, spec in inputs.items() if spec.columns is not None}
    if list(inputs) == [SINGLE_INPUT] and not named and SINGLE_INPUT not in fields:
        if rules.column is not None:
            return {SINGLE_INPUT: (rules.column,)}
        if rules.source == "collect.csv":
            others = [f for f in fields if f not in (rules.label, rules.id_column)]
            if len(others) == 1:
                return {SINGLE_INPUT: (others[0],)}
    return {name: named.get(name) or (name,) for name in inputs}
