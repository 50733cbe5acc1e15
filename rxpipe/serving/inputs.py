"""Prediction input checked against a model's inputs: JSON rows and columns, arrays, text.

Every function returns a batch as ``{input name: array}`` with the samples on the first
axis, in the input's dtype, or raises :class:`~rxpipe.errors.PredictionInputError`
naming the input, what was expected and what was received. TensorFlow Serving's REST
formats are both accepted:

- row format, ``{"instances": [sample, ...]}``: a sample is the input's value, or for a
  model with several named inputs an object ``{name: value}``;
- columnar format, ``{"inputs": value}`` (the batch of a single input) or
  ``{"inputs": {name: batch}}``.

Text inputs take strings, or ``{"b64": "..."}`` for bytes as in TensorFlow Serving.
Numbers must fit the input's dtype: integer inputs take integers within the dtype's
range, float inputs finite values that stay finite in the dtype (NaN, ``Infinity`` or
``1e39`` for a float32 input are refused, as TensorFlow Serving refuses a value it
cannot convert without loss); errors name the first offending value and its sample.

Missing values: for the inputs whose missing values the model's preprocessing fills
(``process.fill_missing``, ``process.one_hot`` which encodes them as zeros, or
``process.vectorize`` which takes no text as an empty one; see :func:`filled_inputs`),
JSON ``null`` is accepted as the training data's missing value: NaN for a float input,
and for a string input the text the model reads as missing (``""``, or with
``collect.csv(missing=["?"])``, where ``""`` is a category, ``"?"``); NaN (``NaN`` in
JSON, which Python's reader accepts) is accepted too for a float input. The caller names
those inputs (``missing_ok``, best a :class:`FilledInputs`, which also says how each
writes a missing value); for every other input ``null`` and NaN are refused as above,
naming the sample, and so is a number that the training data's source read as missing
(``collect.csv(missing=["-999"])``: the model turns -999 into a missing value, which it
does not fill there).

Example:
    >>> spec = TensorInfo("features", "float32", (None, 2))
    >>> rows_to_batch([[1, 2], [3, 4]], {"features": spec})["features"].dtype
    dtype('float32')
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rxpipe.errors import PredictionInputError, format_names
from rxpipe.serving.bundle import TensorInfo

__all__ = [
    "FilledInputs",
    "batch_size",
    "columns_to_batch",
    "expected_sample",
    "filled_inputs",
    "fits_sample",
    "input_array",
    "key_difference",
    "parse_request",
    "rows_to_batch",
    "to_array",
    "unused_batch",
]


def _received(array: np.ndarray[Any, Any]) -> str:
    """What a request's array holds, in words, e.g. ``strings of shape (2,)``.

    Example:
        >>> _received(np.array([["a", "b"]], dtype=object)), _received(np.array([[1, "b"]], dtype=object))
        ('strings of shape (2,)', 'mixed values of shape (2,)')
    """  # noqa: E501
    kinds = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers", "U": "strings"}
    kind = kinds.get(array.dtype.kind, "mixed values")
    if array.dtype == object and array.size:
        types = {type(item) for item in array.flat}
        kind = "strings" if types == {str} else "bytes" if types == {bytes} else kind
    return f"{kind} of shape {tuple(array.shape[1:])}"


def expected_sample(spec: TensorInfo) -> str:
    """One sample of ``spec``'s input in words, e.g. ``uint8 values of shape (8, 8, 1)``."""
    what = "strings" if spec.dtype == "string" else f"{spec.dtype} values"
    return f"{what} of shape {tuple(spec.sample_shape)}"


def fits_sample(shape: tuple[int, ...], spec: TensorInfo) -> bool:
    """Whether ``shape`` is the shape of one sample of ``spec``'s input (``None``: any size).

    Example:
        >>> spec = TensorInfo("x", "float32", (None, 8, None))
        >>> fits_sample((8, 3), spec), fits_sample((3, 8), spec), fits_sample((8,), spec)
        (True, False, False)
    """
    wanted = spec.sample_shape
    return len(shape) == len(wanted) and all(
        w is None or w == got for w, got in zip(wanted, shape, strict=True)
    )


def _at(index: tuple[Any, ...]) -> str:
    """``sample 3 at (0, 2, 0)``: where a value is in a batch (sample first)."""
    position = tuple(int(i) for i in index[1:])
    return f"sample {int(index[0])}" + (f" at {position}" if position else "")


def _first(bad: np.ndarray[Any, Any]) -> tuple[Any, ...]:
    """The index of the first True in ``bad`` (a boolean array with a True)."""
    return tuple(np.argwhere(bad)[0])


class FilledInputs(frozenset[str]):
    """The names of the raw inputs whose missing values a model fills, and how a missing
    value is written in each input for the model (see :func:`filled_inputs`).

    Attributes:
        null_text: per input a step fills, the text that JSON ``null`` stands for if
            it is a string input: one the model reads as missing, ``""`` if it does;
            ``None`` where it reads no text as missing (``null`` is refused there).
        missing_numbers: per float input, the values the model reads as missing
            (``collect.csv``'s numeric missing strings, which its first step turns into
            NaN); refused, as NaN is, in an input whose missing values are not filled.

    Example:
        >>> filled = FilledInputs({"city"}, null_text={"city": "?"})
        >>> filled == {"city"}, filled.null_text["city"]
        (True, '?')
    """

    null_text: Mapping[str, str | None]
    missing_numbers: Mapping[str, tuple[float, ...]]

    def __new__(
        cls,
        names: Iterable[str] = (),
        null_text: Mapping[str, str | None] | None = None,
        missing_numbers: Mapping[str, tuple[float, ...]] | None = None,
    ) -> FilledInputs:
        self = super().__new__(cls, names)
        self.null_text = dict(null_text or {})
        self.missing_numbers = dict(missing_numbers or {})
        return self

    def __reduce__(self) -> Any:  # pickled with its mappings (frozenset's drops them)
        return (type(self), (set(self), self.null_text, self.missing_numbers))


def _null_text(missing: Any) -> str | None:
    """The text a step reads as missing that stands for ``null``: ``""`` if the step's
    ``missing`` strings hold it (the default, and what older model cards mean without
    ``missing``), else the first one that a stripped cell can equal; ``None`` if none.

    Example:
        >>> _null_text(None), _null_text(["?", ""]), _null_text([" ? ", "?"]), _null_text([])
        ('', '', '?', None)
    """
    if missing is None:
        return ""
    tokens = [str(t) for t in missing if str(t) == str(t).strip()]
    return "" if "" in tokens else (tokens[0] if tokens else None)


def filled_inputs(
    preprocessing: Sequence[Mapping[str, Any]], inputs: Collection[str]
) -> FilledInputs:
    """The raw inputs whose missing values a model's preprocessing fills (or one-hot encodes).

    ``preprocessing`` is the model card's list of steps (``{"name": ..., **config}``).
    A ``fill_missing`` step names its columns; without, it fills the one matrix input,
    or the columns a ``concat_columns`` step before it joined into that matrix. A
    ``one_hot`` step encodes a missing value as zeros, and a ``vectorize`` step reads
    no text as an empty one, as in training. For a string input, the first of these
    steps that takes it says which text ``null`` becomes (``FilledInputs.null_text``):
    ``""`` where that step reads ``""`` as missing, else its first missing string (the
    source's ``"?"``, where ``""`` is a category as it was in training). A
    ``missing_numbers`` step (recorded by ``collect.csv`` for numeric missing strings)
    gives ``FilledInputs.missing_numbers``.

    Example:
        >>> steps = [{"name": "fill_missing", "columns": ["age", "city"], "missing": ["?"]},
        ...          {"name": "one_hot", "columns": ["city"]}]
        >>> filled = filled_inputs(steps, ["age", "city", "n"])
        >>> sorted(filled), filled.null_text["city"]
        (['age', 'city'], '?')
    """
    names: set[str] = set()
    joined: list[str] = []
    null_text: dict[str, str | None] = {}
    numbers: dict[str, tuple[float, ...]] = {}

    def take(columns: Iterable[Any], missing: Any) -> None:
        for column in map(str, columns):
            names.add(column)
            null_text.setdefault(column, _null_text(missing))  # the first step decides

    for step in preprocessing:
        kind, columns = step.get("name"), step.get("columns")
        if kind == "missing_numbers":
            values = tuple(float(v) for v in step.get("values", ()))
            numbers.update((str(c), values) for c in (inputs if columns is None else columns))
        elif kind == "concat_columns" and columns is not None:
            joined = [str(c) for c in columns]
        elif kind == "one_hot" and columns is not None:
            take(columns, step.get("missing"))
        elif kind == "vectorize":  # its one text input
            take(inputs, [""])
        elif kind == "fill_missing":
            if columns is not None:
                take(columns, step.get("missing"))
            else:  # a matrix of numbers
                names.update(joined or inputs)
    present = frozenset(inputs)
    return FilledInputs(
        names & present,
        {k: v for k, v in null_text.items() if k in present},
        {k: v for k, v in numbers.items() if k in present},
    )


def input_array(
    value: Any, name: str, spec: TensorInfo, where: str, missing_ok: Collection[str] = ()
) -> np.ndarray[Any, Any]:
    """:func:`to_array` for the input ``name``, which takes missing values if it is in
    ``missing_ok`` or optional; a :class:`FilledInputs` also says what ``null`` is in a
    string input and which numbers mean missing in a float one.

    Example:
        >>> filled = FilledInputs({"city"}, null_text={"city": "?"})
        >>> spec = TensorInfo("city", "string", (None,))
        >>> input_array(["rome", None], "city", spec, "city", filled).tolist()
        ['rome', '?']
    """
    text: str | None = ""
    numbers: tuple[float, ...] = ()
    if isinstance(missing_ok, FilledInputs):
        text = missing_ok.null_text.get(name, "")
        numbers = missing_ok.missing_numbers.get(name, ())
    if spec.optional:  # the model does not use it: any missing value will do
        return to_array(value, spec, where, True)
    takes = name in missing_ok and (spec.dtype != "string" or text is not None)
    return to_array(value, spec, where, takes, null_text=text or "", missing_numbers=numbers)


def _first_where(
    value: Any, wanted: Callable[[Any], bool], at: tuple[int, ...] = ()
) -> tuple[tuple[int, ...], Any] | None:
    """Where the first ``wanted`` value is in nested lists (sample first), and the value;
    ``None`` if nowhere."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_where(item, wanted, (*at, index))
            if found is not None:
                return found
        return None
    return (at, value) if wanted(value) else None


def _is_odd(value: Any) -> bool:
    """A value no numeric array holds: an object, a string among numbers, or an integer
    beyond 64 bits (which numpy keeps as a Python object). ``None`` is left to
    :func:`_refuse_null`."""
    if value is None or isinstance(value, bool | float):
        return False
    return not (isinstance(value, int) and -(2**63) <= value < 2**64)


def _describe_odd(value: Any) -> str:
    """A JSON value in words, for errors: ``an object with keys ['a']``, ``the number 5``."""
    if isinstance(value, Mapping):
        return f"an object with keys {sorted(value)}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        digits = str(value)
        if len(digits) > 40:
            digits = f"{digits[:20]}... ({len(digits)} digits)"
        beyond = "" if -(2**63) <= value < 2**64 else ", beyond 64 bits"
        return f"the integer {digits}{beyond}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value if len(value) <= 40 else value[:40] + '...'!r}"
    if value is None:
        return "null"
    return type(value).__name__


def _refuse_odd(value: Any, spec: TensorInfo, where: str) -> None:
    """A clear error for an object, a string or a huge integer in a numeric input."""
    found = _first_where(value, _is_odd)
    if found is not None:
        index, odd = found
        position = f" in {_at(index)}" if index else ""
        raise PredictionInputError(
            f"{where}: expected {expected_sample(spec)} per sample. "
            f"Received: {_describe_odd(odd)}{position}"
        )


def _first_not_number(array: np.ndarray[Any, Any]) -> str:
    """The first value of a batch that is not a number, and its sample, in words.

    Example:
        >>> _first_not_number(np.array([["1.5", "52,000"]]))
        "the string '1.5' in sample 0 at (0,)"
        >>> _first_not_number(np.array([2.5, "x", None], dtype=object))
        "the string 'x' in sample 1"
    """
    for index, value in np.ndenumerate(array):
        item = value.item() if isinstance(value, np.generic) else value
        if isinstance(item, bool) or not isinstance(item, int | float):
            return f"{_describe_odd(item)} in {_at(index)}"
    return _received(array)


def _nulls_as_nan(value: Any) -> Any:
    """Nested lists with every ``None`` replaced by NaN."""
    if value is None:
        return float("nan")
    if isinstance(value, list):
        return [_nulls_as_nan(item) for item in value]
    return value


def _refuse_null(value: Any, spec: TensorInfo, where: str, missing_ok: bool) -> None:
    """A clear error for a ``null`` in an input that takes no missing values."""
    found = _first_where(value, lambda item: item is None)
    index = found[0] if found is not None else ()
    if index:  # a position in the batch (a bare null is not a batch: refused later)
        why = (
            f"{spec.dtype} inputs have no missing values"
            if missing_ok
            else "the model fills no missing values in this input"
        )
        raise PredictionInputError(
            f"{where}: expected {expected_sample(spec)} per sample ({why}). "
            f"Received: null in {_at(index)}"
        )


def _strings(
    value: Any, where: str, missing_ok: bool = False, null_text: str = ""
) -> np.ndarray[Any, Any]:
    if isinstance(value, np.ndarray):  # e.g. an object array of encoded images
        if value.dtype.kind not in "OSU":
            raise PredictionInputError(
                f"{where}: expected strings (or bytes). Received: {_received(value)}"
            )
        value = value.tolist()

    def decode(item: Any, at: tuple[int, ...] = ()) -> Any:
        position = f" in {_at(at)}" if at else ""
        if isinstance(item, str):
            try:
                if not item.isascii():
                    item.encode("utf-8")
            except UnicodeEncodeError as error:  # a lone surrogate, e.g. JSON's "\ud800"
                raise PredictionInputError(
                    f"{where}: expected strings of Unicode characters (JSON escapes such as "
                    "\\ud83d\\ude00 in pairs). Received: a string with the lone surrogate "
                    f"{item[error.start : error.end]!r} at character {error.start}{position}"
                ) from None
            return item
        if isinstance(item, bytes):
            return item
        if item is None and missing_ok:
            return null_text  # a missing text value, as the model's preprocessing reads it
        if isinstance(item, Mapping) and set(item) == {"b64"} and isinstance(item["b64"], str):
            try:
                return base64.b64decode(item["b64"], validate=True)
            except binascii.Error as error:
                raise PredictionInputError(
                    f"{where}: expected valid base64 in {{'b64': ...}}. Received: {error}{position}"
                ) from None
        if isinstance(item, list):
            return [decode(x, (*at, i)) for i, x in enumerate(item)]
        if item is None:
            raise PredictionInputError(
                f"{where}: expected strings (or {{'b64': ...}} objects; the model fills no "
                f"missing values in this input). Received: null{position}"
            )
        raise PredictionInputError(
            f"{where}: expected strings (or {{'b64': ...}} objects). "
            f"Received: {_describe_odd(item)}{position}"
        )

    try:
        return np.array(decode(value), dtype=object)
    except PredictionInputError:
        raise  # already says what and where
    except RecursionError:
        raise PredictionInputError(
            f"{where}: expected strings nested as deep as the input's shape. "
            "Received: lists nested too deeply to read"
        ) from None
    except ValueError as error:
        raise PredictionInputError(
            f"{where}: expected a rectangular array of strings. Received: {error}"
        ) from None


def to_array(
    value: Any,
    spec: TensorInfo,
    where: str,
    missing_ok: bool = False,
    *,
    null_text: str = "",
    missing_numbers: Sequence[float] = (),
) -> np.ndarray[Any, Any]:
    """A batch (samples on the first axis) of ``spec``'s input from a JSON value or array.

    With ``missing_ok`` (an input whose missing values the model fills), ``null`` is a
    missing value: NaN for a float input, ``null_text`` for a string input (a text the
    model reads as missing); and a float input takes NaN (not infinities). Without,
    a float input also refuses ``missing_numbers``, the values the model reads as
    missing (see :class:`FilledInputs`).

    Raises:
        PredictionInputError: for a ragged value, a wrong shape, a value of the wrong
            kind (floats or out-of-range numbers for an integer input, numbers for text),
            ``null``, NaN or one of ``missing_numbers`` where the model fills no missing
            values.

    Example:
        >>> to_array([[0, 16]], TensorInfo("x", "uint8", (None, 2)), "instances").tolist()
        [[0, 16]]
        >>> to_array([1.5, None], TensorInfo("x", "float32", (None,)), "x", True).tolist()
        [1.5, nan]
    """
    floats = spec.dtype.startswith(("float", "bfloat"))
    if spec.dtype == "string":
        array = _strings(value, where, missing_ok, null_text)
    elif isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
            if array.dtype == object and isinstance(value, list):  # e.g. a null among numbers
                if missing_ok and floats:
                    array = np.asarray(_nulls_as_nan(value))
                else:
                    _refuse_null(value, spec, where, missing_ok)
                _refuse_odd(value, spec, where)  # an object, or an integer beyond 64 bits
        except PredictionInputError:
            raise
        except ValueError:
            raise PredictionInputError(
                f"{where}: expected {expected_sample(spec)} per sample. Received: ragged nested "
                "lists (rows of different lengths)"
            ) from None
        except RecursionError:
            raise PredictionInputError(
                f"{where}: expected {expected_sample(spec)} per sample. Received: lists nested "
                "too deeply to read"
            ) from None
    if array.ndim == 0 or array.shape[0] == 0:
        raise PredictionInputError(
            f"{where}: expected a batch of at least one sample of {expected_sample(spec)}. "
            f"Received: {'a single value' if array.ndim == 0 else 'no samples'}"
        )
    if not fits_sample(tuple(array.shape[1:]), spec):
        raise PredictionInputError(
            f"{where}: expected {expected_sample(spec)} per sample. Received: {_received(array)} "
            f"per sample ({array.shape[0]} sample{'' if array.shape[0] == 1 else 's'})"
        )
    if spec.dtype == "string":
        return array
    if array.dtype.kind in "SU" and isinstance(value, list):  # numpy made text of numbers
        _refuse_odd(value, spec, where)  # among strings: name the first string sent
    converted = _cast(array, spec, where, missing_ok and floats)
    if floats and missing_numbers and not missing_ok:
        _refuse_missing_numbers(converted, spec, where, missing_numbers)
    return converted


def _refuse_missing_numbers(
    array: np.ndarray[Any, Any], spec: TensorInfo, where: str, numbers: Sequence[float]
) -> None:
    """A clear error for a number the model reads as missing, in an input whose missing
    values it does not fill (it would compute on NaN).

    Example:
        >>> spec = TensorInfo("x", "float32", (None,))
        >>> _refuse_missing_numbers(np.array([1, -999], "float32"), spec, "x", [-999.0])
        Traceback (most recent call last):
        ...
        rxpipe.errors.PredictionInputError: x: expected float32 values of shape () per
        sample, not -999.0 (a missing value in the training data, which the model does
        not fill in this input). Received: -999.0 in sample 1
    """
    hits = np.isin(array, np.asarray(numbers, array.dtype))
    if hits.any():
        index = _first(hits)
        shown = " or ".join(repr(float(n)) for n in numbers)
        raise PredictionInputError(
            f"{where}: expected {expected_sample(spec)} per sample, not {shown} (a missing "
            "value in the training data, which the model does not fill in this input). "
            f"Received: {array[index].item()!r} in {_at(index)}"
        )


def _cast(
    array: np.ndarray[Any, Any], spec: TensorInfo, where: str, nan_ok: bool = False
) -> np.ndarray[Any, Any]:
    dtype = np.dtype(spec.dtype)
    kind = array.dtype.kind
    if dtype.kind == "b":
        if kind != "b":
            raise PredictionInputError(
                f"{where}: expected booleans (true/false). Received: {_received(array)}"
            )
        return array
    if kind not in "iuf":
        raise PredictionInputError(
            f"{where}: expected {expected_sample(spec)} per sample. Received: "
            f"{_first_not_number(array)}"
        )
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if kind == "f":
            fractional = ~np.isfinite(array) | (array != np.round(array))
            if fractional.any():
                index = _first(fractional)
                raise PredictionInputError(
                    f"{where}: expected {spec.dtype} values, integers in [{info.min}, "
                    f"{info.max}], of shape {tuple(spec.sample_shape)} per sample. "
                    f"Received: {array[index].item()!r} in {_at(index)}"
                )
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            index = _first((array < info.min) | (array > info.max))
            raise PredictionInputError(
                f"{where}: expected {spec.dtype} values in [{info.min}, {info.max}]. "
                f"Received: values in [{low}, {high}] (first {array[index].item()!r} "
                f"in {_at(index)})"
            )
        return array.astype(dtype, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        converted = array.astype(dtype, copy=False)
    finite = np.isfinite(converted)
    if nan_ok:
        finite |= np.isnan(converted)  # a missing value, which the model fills
    if not finite.all():  # NaN or infinity sent, or a value too large for the dtype
        index = _first(~finite)
        value = array[index].item()
        overflow = f", which overflows {spec.dtype}" if np.isfinite(value) else ""
        kind = "finite or missing (NaN)" if nan_ok else "finite"
        raise PredictionInputError(
            f"{where}: expected {kind} {spec.dtype} values (magnitude at most "
            f"{float(np.finfo(dtype).max):.7g}). Received: {value!r}{overflow} in {_at(index)}"
        )
    return converted


def rows_to_batch(
    instances: Any,
    specs: Mapping[str, TensorInfo],
    missing_ok: Collection[str] = (),
    where: str = "instances",
) -> dict[str, np.ndarray[Any, Any]]:
    """A batch from TensorFlow Serving's row format (the value of ``"instances"``).

    ``missing_ok`` names the inputs that take missing values (see :func:`to_array`);
    errors start with ``where``, the field the rows came from.
    """
    if not isinstance(instances, list) or not instances:
        raise PredictionInputError(
            f"{where}: expected a non-empty list of samples. Received: {_json_kind(instances)}"
        )
    if len(specs) == 1:
        name, spec = next(iter(specs.items()))
        if all(isinstance(row, Mapping) and set(row) == {name} for row in instances):
            instances = [row[name] for row in instances]
        return {name: input_array(instances, name, spec, where, missing_ok)}
    required, unused = _required(specs)
    for index, row in enumerate(instances):
        if not isinstance(row, Mapping) or not set(required) <= set(row) <= set(specs):
            got = (
                key_difference(row, required, f"row {index}", unused)
                if isinstance(row, Mapping)
                else _json_kind(row)
            )
            raise PredictionInputError(
                f"{where}[{index}]: expected an object with the inputs "
                f"{_expected_inputs(required, unused)}. Received: {got}"
            )
    return {
        name: input_array(
            [row[name] if name in row else _unused_value(spec) for row in instances],
            name,
            spec,
            f"{where} (input {name!r})",
            missing_ok,
        )
        for name, spec in specs.items()
    }


def _required(specs: Mapping[str, TensorInfo]) -> tuple[list[str], list[str]]:
    """The names of the inputs a request must hold, and of those it may leave out."""
    required = sorted(name for name, spec in specs.items() if not spec.optional)
    return required, sorted(set(specs) - set(required))


def _expected_inputs(required: list[str], unused: list[str]) -> str:
    """``['age', 'city']``, and the optional inputs if any, for messages."""
    also = f" (and optionally {unused}, which the model does not use)" if unused else ""
    return f"{required}{also}"


def _unused_value(spec: TensorInfo) -> Any:
    """The JSON value that stands in for one sample of an optional input left out."""
    value = unused_batch(spec, 1)[0]
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value


def unused_batch(spec: TensorInfo, size: int) -> np.ndarray[Any, Any]:
    """``size`` samples for an input the model does not use (zeros, or empty strings).

    Example:
        >>> unused_batch(TensorInfo("notes", "string", (None,), optional=True), 2).tolist()
        ['', '']
    """
    shape = (size, *(d or 1 for d in spec.sample_shape))
    if spec.dtype == "string":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=spec.dtype)


def columns_to_batch(
    inputs: Any,
    specs: Mapping[str, TensorInfo],
    where: str = "inputs",
    missing_ok: Collection[str] = (),
) -> dict[str, np.ndarray[Any, Any]]:
    """A batch from TensorFlow Serving's columnar format (the value of ``"inputs"``).

    Errors start with ``where`` (e.g. the ``.npz`` file the arrays came from), then the
    input's name in brackets for an input that does not fit. ``missing_ok`` names the
    inputs that take missing values (see :func:`to_array`).
    """
    if isinstance(inputs, Mapping):
        required, unused = _required(specs)
        if not set(required) <= set(inputs) <= set(specs) or not inputs:
            raise PredictionInputError(
                f"{where}: expected the inputs {_expected_inputs(required, unused)}. "
                f"Received: {key_difference(inputs, required, 'an object that', unused)}"
            )
        batch = {
            name: input_array(inputs[name], name, spec, f"{where}[{name!r}]", missing_ok)
            for name, spec in specs.items()
            if name in inputs
        }
    elif len(specs) == 1:
        name, spec = next(iter(specs.items()))
        batch = {name: input_array(inputs, name, spec, where, missing_ok)}
    else:
        raise PredictionInputError(
            f"{where}: expected an object with the inputs {sorted(specs)}. "
            f"Received: {_json_kind(inputs)}"
        )
    sizes = {name: int(array.shape[0]) for name, array in batch.items()}
    if len(set(sizes.values())) > 1:
        raise PredictionInputError(
            f"{where}: expected the same number of samples in every input. Received: {sizes}"
        )
    size = next(iter(sizes.values()))
    return {
        name: batch[name] if name in batch else unused_batch(spec, size)
        for name, spec in specs.items()
    }


def parse_request(
    body: Any, specs: Mapping[str, TensorInfo], missing_ok: Collection[str] = ()
) -> tuple[dict[str, Any], bool]:
    """The batch of a ``:predict`` request body, and whether it used the row format.

    ``missing_ok`` names the inputs that take missing values (see :func:`to_array`).

    Raises:
        PredictionInputError: for a body that is not an object, has both or neither of
            ``instances`` and ``inputs``, or whose values do not fit ``specs``.
    """
    if not isinstance(body, Mapping):
        raise PredictionInputError(
            "request: expected a JSON object with 'instances' or 'inputs'. "
            f"Received: {_json_kind(body)}"
        )
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        got = "both" if has_rows else f"neither (keys {sorted(body)})"
        raise PredictionInputError(
            f"request: expected exactly one of 'instances' (row format) or 'inputs' "
            f"(columnar format). Received: {got}"
        )
    if has_rows:
        return rows_to_batch(body["instances"], specs, missing_ok), True
    return columns_to_batch(body["inputs"], specs, missing_ok=missing_ok), False


def batch_size(batch: Mapping[str, np.ndarray[Any, Any]]) -> int:
    """The number of samples in a checked batch."""
    return int(next(iter(batch.values())).shape[0])


def key_difference(
    got: Collection[Any], wanted: Collection[str], what: str, optional: Collection[str] = ()
) -> str:
    """Which ``wanted`` keys ``got`` lacks and which it has that are neither ``wanted``
    nor ``optional``, in words, after ``what``.

    Example:
        >>> key_difference({"agee": 1, "city": "Paris"}, ["age", "city"], "row 0")
        "row 0 lacks 'age' and has the unknown key 'agee'"
        >>> key_difference({"a": 1, "b": 2, "c": 3}, ["a"], "inputs", optional=["b"])
        "inputs has the unknown key 'c'"
    """
    missing = sorted(set(wanted) - set(got))
    unknown = sorted(str(key) for key in set(got) - set(wanted) - set(optional))
    parts = []
    if missing:
        parts.append(f"lacks {format_names(missing)}")
    if unknown:
        keys = "keys" if len(unknown) > 1 else "key"
        parts.append(f"has the unknown {keys} {format_names(unknown)}")
    return f"{what} {' and '.join(parts)}"


def _json_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return type(value).__name__
