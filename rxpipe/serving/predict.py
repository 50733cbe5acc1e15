"""``rxpipe predict RUN_DIR INPUT...``: top-k labels (or regression values) for files and rows.

Each INPUT is read by what it is:

- an image file (PNG, JPEG, GIF, BMP): decoded, resized and preprocessed by the
  bundle's ``serving_images`` signature;
- ``.npy``: one sample, or a batch of samples on the first axis; ``.npz``: one array per
  named input;
- ``.json``: a list of rows, a single row, or ``{"instances": ...}`` / ``{"inputs": ...}``
  as in TensorFlow Serving; ``.jsonl``: one row per line;
- ``.csv`` (for a model on a table, e.g. trained on ``collect.csv``): one sample per
  row, its columns matched to the model's inputs by name, read and predicted ``chunk``
  rows at a time, so a file of any size takes the memory of a chunk (see
  :mod:`rxpipe.serving.csv_input`);
- ``.txt`` (for a text model): the file's text is one sample;
- anything else that is not a file: text for a text model, otherwise JSON (a row or
  a list of rows).

A classifier's answer is the top-k labels with their scores; a regression model's (model
card ``task = "regression"``) is the predicted value, or a list of values for several
targets. An input that cannot be read (a corrupt or pickled ``.npy``, a ``.jsonl`` line
that is not JSON) raises :class:`~rxpipe.errors.PredictionInputError` naming the file
(and line), and so does a file whose content does not fit the model's inputs: the
message gives the input's dtype and shape per sample, and what the file holds. Every
input is read and checked before the first prediction, except a CSV file's rows: its
header is checked first, its rows as they are predicted (a bad row stops the
predictions there, naming the file, the line and the column).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from rxpipe.errors import PredictionInputError
from rxpipe.serving.bundle import (
    Bundle,
    TensorInfo,
    regression_values,
    top_k,
)
from rxpipe.serving.csv_input import CsvTable, read_csv
from rxpipe.serving.images import check_image
from rxpipe.serving.inputs import (
    columns_to_batch,
    expected_sample,
    fits_sample,
    parse_request,
    rows_to_batch,
    to_array,
)

__all__ = [
    "Inputs",
    "Prediction",
    "format_predictions",
    "predict_inputs",
    "prediction_lines",
    "read_input",
    "read_inputs",
]

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp"})


@attrs.frozen
class Prediction:
    """The top-k labels of one sample, or a regression model's value for it.

    Attributes:
        input: what the sample was (``digit.png``, ``rows.json[2]``).
        top_k: ``{"label", "score"}`` objects, best first (empty for a regression).
        value: a regression model's prediction (a list for several targets), else ``None``.
    """

    input: str
    top_k: list[dict[str, Any]]
    value: float | list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"input", "predictions": [...]}`` (regression: ``{"input", "value"}``)."""
        if self.value is not None:
            return {"input": self.input, "value": self.value}
        return {"input": self.input, "predictions": self.top_k}

    def describe(self) -> str:
        """The answer in words: ``3 (0.900)  8 (0.050)``, or the value (``239.705``)."""
        if self.value is not None:
            values = self.value if isinstance(self.value, list) else [self.value]
            return "  ".join(f"{v:.6g}" for v in values)
        return "  ".join(f"{item['label']} ({item['score']:.3f})" for item in self.top_k)


@attrs.frozen
class _Samples:
    names: list[str]
    batch: dict[str, Any] | None = None  # checked arrays for serving_default
    images: list[bytes] | None = None  # encoded images for serving_images


def _names(source: str, count: int) -> list[str]:
    return [source] if count == 1 else [f"{source}[{i}]" for i in range(count)]


def _from_json(value: Any, source: str, bundle: Bundle, where: str | None = None) -> _Samples:
    """The samples of a JSON value read from ``source``; errors start with ``where``
    (default ``source``). An empty list is no samples, an error."""
    specs, where = bundle.inputs, where or source
    if isinstance(value, Mapping) and ({"instances", "inputs"} & set(value)):
        with _naming(where):
            batch, _ = parse_request(value, specs, bundle.filled_inputs)
    elif isinstance(value, list) and (not value or len(specs) > 1 or _is_batch(value, specs)):
        batch = rows_to_batch(value, specs, bundle.filled_inputs, where)
    else:
        batch = rows_to_batch([value], specs, bundle.filled_inputs, where)
    count = int(next(iter(batch.values())).shape[0])
    return _Samples(_names(source, count), batch=batch)


def _is_batch(value: list[Any], specs: Mapping[str, Any]) -> bool:
    """Whether a JSON list holds several samples (one more axis than a sample has)."""
    spec = next(iter(specs.values()))
    depth, item = 0, value
    while isinstance(item, list) and item:
        depth, item = depth + 1, item[0]
    return depth > len(spec.sample_shape)


def read_input(text: str, bundle: Bundle) -> _Samples | CsvTable:
    """Read one command-line INPUT as samples for ``bundle`` (see the module docstring).

    Raises:
        PredictionInputError: if the input is unreadable or does not fit the model.
    """
    path = Path(text)
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a JSON row too long to be a file name
        is_file = False
    if not is_file:
        if bundle.accepts_text:
            name, spec = next(iter(bundle.inputs.items()))
            return _Samples([repr(text)], batch={name: to_array([text], spec, "text")})
        try:
            value = json.loads(text)
        except ValueError:
            try:
                found = "a directory" if path.is_dir() else "no such file, and not JSON"
            except OSError:
                found = "not JSON, nor a file name"
            raise PredictionInputError(
                f"{text}: expected an existing file (image, .npy, .npz, .json, .jsonl, .csv) "
                f"or a JSON row. Received: {found}"
            ) from None
        return _from_json(value, "argument", bundle, where=f"argument {_clip(text)}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _from_npy(_load_array(path, text), text, bundle)
    if suffix == ".npz":
        return _from_npz(_load_arrays(path, text), text, bundle)
    if suffix == ".jsonl":
        rows = _json_lines(path, text)
        batch = rows_to_batch(rows, bundle.inputs, bundle.filled_inputs, text)
        return _Samples(_names(text, len(rows)), batch=batch)
    if suffix == ".json":
        try:
            value = json.loads(path.read_text())
        except ValueError as error:
            raise PredictionInputError(f"{text}: expected JSON. Received: {error}") from None
        except RecursionError:
            raise PredictionInputError(
                f"{text}: expected JSON rows. Received: arrays nested too deeply to read"
            ) from None
        return _from_json(value, text, bundle)
    if suffix == ".txt" and bundle.accepts_text:
        name, spec = next(iter(bundle.inputs.items()))
        return _Samples([text], batch={name: to_array([_read_text(path, text)], spec, text)})
    if suffix == ".csv":
        return read_csv(path, bundle, text)
    data = path.read_bytes()
    try:
        check_image(data, text)
    except PredictionInputError:
        if suffix in _IMAGE_SUFFIXES or _image_format(data) is not None:
            raise  # an image file, or an image in a format TensorFlow does not decode
        raise PredictionInputError(
            f"{text}: expected an image, .npy, .npz, .json, .jsonl, .csv"
            f"{' or .txt' if bundle.accepts_text else ''} file. Received: "
            f"{suffix or 'a file without suffix'} that is none of these"
        ) from None
    if not bundle.accepts_images:
        raise PredictionInputError(
            f"{text}: expected {_ROWS} for model {bundle.name!r}, whose input is "
            f"{bundle.describe_inputs()}. Received: a {_image_format(data)} image (the model "
            "takes no images)"
        )
    return _Samples([text], images=[data])


_ROWS = "arrays or rows (.npy, .npz, .json, .jsonl, .csv, or a JSON row)"


def _image_format(data: bytes) -> str | None:
    """The image format Pillow recognises in ``data`` (``"PNG"``, ``"WEBP"``...), or ``None``."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return str(image.format)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _refuse_arrays_for_images(
    array: np.ndarray[Any, Any], name: str, where: str, bundle: Bundle
) -> None:
    """Refuse a numeric array for ``name``, an input of encoded images (a file's bytes)."""
    if bundle.input_kinds.get(name) == "image" and array.dtype.kind not in "SUO":
        raise PredictionInputError(
            f"{where}: expected image files (PNG, JPEG, GIF, BMP) for model {bundle.name!r}, "
            f"whose input {name!r} is encoded images. Received: {_a(array.dtype)} array of "
            f"shape {_shape(array.shape)}"
        )


def _a(dtype: np.dtype[Any]) -> str:
    """``"a uint8"``, ``"an int64"``: a dtype's name with its article."""
    name = str(dtype)
    return f"{'an' if name.startswith(('int', 'o')) else 'a'} {name}"


@contextmanager
def _naming(text: str) -> Iterator[None]:
    """Prefix ``text: `` (the file) to a :class:`PredictionInputError` that does not name it."""
    try:
        yield
    except PredictionInputError as error:
        if str(error).startswith(text):
            raise
        raise PredictionInputError(f"{text}: {error}") from None


def _shape(dims: Sequence[int | str | None]) -> str:
    """``(n, 8, 8, 1)``: a shape in words (``(8,)`` for one axis)."""
    return str(tuple(dims)).replace("'", "")


def _batch_shaped(
    array: np.ndarray[Any, Any], spec: TensorInfo, where: str, one_sample: bool
) -> np.ndarray[Any, Any]:
    """``array`` with the samples of ``spec``'s input on its first axis, else an error.

    With ``one_sample``, an array of one sample's shape is that sample. The error names
    ``where``, the input's dtype and shape per sample, and the array's dtype and shape.
    """
    sample = tuple(spec.sample_shape)
    if one_sample and fits_sample(tuple(array.shape), spec):
        return array[np.newaxis]
    if array.ndim == 0 or not fits_sample(tuple(array.shape[1:]), spec):
        many = f"{_shape(('n', *sample))} for n samples"
        forms = f"{_shape(sample)} for one sample, or {many}" if one_sample else many
        raise PredictionInputError(
            f"{where}: expected {expected_sample(spec)} per sample: an array of shape "
            f"{forms}. Received: {_a(array.dtype)} array of shape {_shape(array.shape)}"
        )
    return array


def _from_npy(array: np.ndarray[Any, Any], text: str, bundle: Bundle) -> _Samples:
    """A ``.npy`` file's samples: one sample of the model's input, or a batch of them."""
    if len(bundle.inputs) != 1:
        raise PredictionInputError(
            f"{text}: expected a .npz file with one array per input {sorted(bundle.inputs)} "
            f"(a .npy file holds one array). Received: {_a(array.dtype)} array of shape "
            f"{_shape(array.shape)}"
        )
    name, spec = next(iter(bundle.inputs.items()))
    _refuse_arrays_for_images(array, name, text, bundle)
    array = to_array(_batch_shaped(array, spec, text, one_sample=True), spec, text)
    return _Samples(_names(text, int(array.shape[0])), batch={name: array})


def _from_npz(arrays: dict[str, np.ndarray[Any, Any]], text: str, bundle: Bundle) -> _Samples:
    """A ``.npz`` file's samples: one batch per named input, as many samples in each."""
    required = sorted(name for name, spec in bundle.inputs.items() if not spec.optional)
    if not set(required) <= set(arrays) <= set(bundle.inputs):
        call = ", ".join(
            f"{name}=..." if name.isidentifier() else f"**{{{name!r}: ...}}" for name in required
        )
        unused = sorted(set(bundle.inputs) - set(required))
        also = f" (and optionally {unused}, which the model does not use)" if unused else ""
        raise PredictionInputError(
            f"{text}: expected one array per model input, named {required}{also} "
            f"(numpy.savez(path, {call})). Received: arrays named {sorted(arrays)}"
        )
    for name in arrays:
        _refuse_arrays_for_images(arrays[name], name, f"{text}[{name!r}]", bundle)
    arrays = {
        name: _batch_shaped(arrays[name], spec, f"{text}[{name!r}]", one_sample=False)
        for name, spec in bundle.inputs.items()
        if name in arrays
    }
    batch = columns_to_batch(arrays, bundle.inputs, text, bundle.filled_inputs)
    return _Samples(_names(text, int(next(iter(batch.values())).shape[0])), batch=batch)


_NPY_MAGIC = b"\x93NUMPY"
_NPY_EXPECTED = "a numeric array saved by numpy.save (no pickled objects)"
_NPZ_EXPECTED = "numeric arrays saved by numpy.savez (no pickled objects)"


def _np_read(path: Path, text: str, expected: str) -> Any:
    """What ``np.load`` reads: an array (.npy) or arrays by name (.npz); errors name the file."""
    with path.open("rb") as file:  # ours to close, whatever numpy raises
        try:
            loaded = np.load(file, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            with loaded:
                return {k: loaded[k] for k in loaded.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise PredictionInputError(
                f"{text}: expected {expected}. Received: a file numpy cannot read as one "
                f"({type(error).__name__}: {error})"
            ) from None


def _load_array(path: Path, text: str) -> np.ndarray[Any, Any]:
    """A ``.npy`` file's array, or :class:`PredictionInputError` naming the file."""
    with path.open("rb") as file:
        magic = file.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:  # numpy would take it for a pickle and say so, misleadingly
        raise PredictionInputError(
            f"{text}: expected {_NPY_EXPECTED}. Received: a file that is not in .npy format "
            f"(it starts with {magic!r}, not {_NPY_MAGIC!r})"
        )
    array = _np_read(path, text, _NPY_EXPECTED)
    assert isinstance(array, np.ndarray)  # the magic says .npy
    return array


def _load_arrays(path: Path, text: str) -> dict[str, np.ndarray[Any, Any]]:
    """A ``.npz`` file's arrays by name, or :class:`PredictionInputError` naming the file."""
    arrays = _np_read(path, text, _NPZ_EXPECTED)
    if isinstance(arrays, np.ndarray):
        raise PredictionInputError(
            f"{text}: expected {_NPZ_EXPECTED}. Received: a single array (.npy content)"
        )
    return dict(arrays)


def _read_text(path: Path, text: str) -> str:
    """The UTF-8 text of ``path`` without a byte-order mark (as collect.text_folder reads)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise PredictionInputError(
            f"{text}: expected UTF-8 text. Received: the byte "
            f"0x{error.object[error.start]:02x} at offset {error.start}"
        ) from None


def _json_lines(path: Path, text: str) -> list[Any]:
    """The rows of a ``.jsonl`` file (blank lines skipped), naming the line that is not JSON."""
    rows = []
    for number, line in enumerate(_read_text(path, text).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as error:
            raise PredictionInputError(
                f"{text}, line {number}: expected one JSON row per line. Received: "
                f"{_clip(line)} ({error})"
            ) from None
        except RecursionError:
            raise PredictionInputError(
                f"{text}, line {number}: expected one JSON row per line. Received: "
                "arrays nested too deeply to read"
            ) from None
    if not rows:
        raise PredictionInputError(f"{text}: expected JSON rows, one per line. Received: none")
    return rows


def _clip(line: str, limit: int = 60) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "...")


CHUNK_SAMPLES = 256
"""The most samples :func:`predict_inputs` gives the model in one call: a file of a
million samples takes as much memory as 256 of them (the model's activations), not 4000
times more."""


@attrs.frozen
class Inputs:
    """Inputs read and checked for a model (see :func:`read_inputs`), not yet predicted
    (a CSV file's rows are read as they are predicted)."""

    samples: tuple[_Samples | CsvTable, ...]

    @property
    def width(self) -> int:
        """The length of the longest sample name (``digit.png``, ``rows.json[2]``), for
        aligned lines; for a CSV file, of the longest its size allows (``rows.csv[999]``)."""
        return max(
            (
                samples.width if isinstance(samples, CsvTable) else max(map(len, samples.names))
                for samples in self.samples
            ),
            default=0,
        )

    @property
    def notes(self) -> list[str]:
        """What to tell the user about the inputs (a CSV file's columns not read)."""
        return [note for s in self.samples if isinstance(s, CsvTable) for note in s.notes]


def read_inputs(bundle: Bundle, inputs: Sequence[str]) -> Inputs:
    """Read and check every input for ``bundle`` (see :func:`read_input`).

    Raises:
        PredictionInputError: for an input that is unreadable or does not fit the model.
    """
    return Inputs(tuple(read_input(text, bundle) for text in inputs))


def predict_inputs(
    bundle: Bundle, inputs: Sequence[str] | Inputs, k: int = 3, chunk: int = CHUNK_SAMPLES
) -> Iterator[Prediction]:
    """The top ``k`` labels (a regression: the value) of every sample in ``inputs``, in order.

    Every input is read (and checked) first, unless given as :class:`Inputs` already
    read; a CSV file's rows are read ``chunk`` at a time as they are predicted. The
    images of all inputs are then predicted together, every other input on its own,
    ``chunk`` samples a call at most.

    Raises:
        PredictionInputError: for an input that is unreadable or does not fit the model.
    """

    def answers(names: list[str], scores: np.ndarray[Any, Any]) -> Iterator[Prediction]:
        if bundle.is_regression:
            for name, value in zip(names, regression_values(scores), strict=True):
                yield Prediction(name, [], value)
        else:
            for name, labels in zip(names, top_k(scores, bundle.labels, k), strict=True):
                yield Prediction(name, labels)

    def image_answers(images: list[bytes], names: list[str]) -> Iterator[Prediction]:
        for start in range(0, len(images), chunk):
            part = images[start : start + chunk]
            try:
                scores = bundle.predict_images(part)["scores"]
            except PredictionInputError as error:
                call = lambda i, part=part: bundle.predict_images(part[i : i + 1])  # noqa: E731
                raise _rejected(error, names[start : start + chunk], call) from None
            yield from answers(names[start : start + chunk], scores)

    def part_answers(names: list[str], part: dict[str, Any]) -> Iterator[Prediction]:
        try:
            scores = bundle.predict(part)["scores"]
        except PredictionInputError as error:
            call = lambda i: bundle.predict({n: a[i : i + 1] for n, a in part.items()})  # noqa: E731
            raise _rejected(error, names, call) from None
        yield from answers(names, scores)

    def batch_answers(samples: _Samples) -> Iterator[Prediction]:
        assert samples.batch is not None
        for start in range(0, len(samples.names), chunk):
            part = {name: array[start : start + chunk] for name, array in samples.batch.items()}
            yield from part_answers(samples.names[start : start + chunk], part)

    if chunk < 1:
        raise ValueError(f"chunk: expected an int >= 1. Received: {chunk}")

    read = (inputs if isinstance(inputs, Inputs) else read_inputs(bundle, inputs)).samples
    in_memory = [samples for samples in read if isinstance(samples, _Samples)]
    images = [image for samples in in_memory for image in (samples.images or [])]
    image_names = [n for samples in in_memory if samples.images is not None for n in samples.names]
    from_images = image_answers(images, image_names)
    for samples in read:
        if isinstance(samples, CsvTable):
            for names, part in samples.batches(bundle, chunk):
                yield from part_answers(names, part)
        elif samples.images is not None:
            for _ in samples.names:
                yield next(from_images)
        else:
            yield from batch_answers(samples)


def _rejected(
    error: PredictionInputError, names: list[str], call: Callable[[int], object]
) -> PredictionInputError:
    """``error`` (the model rejected a call on the samples ``names``), naming the sample.

    The model answers for a whole call, so each sample is tried alone (``call(i)``) to
    find the first it rejects: e.g. a JPEG whose header reads but whose data does not
    decode.
    """
    if len(names) > 1:
        for i, name in enumerate(names):
            try:
                call(i)
            except PredictionInputError as own:
                return PredictionInputError(f"{name}: {own}")
    return PredictionInputError(f"{names[0]}: {error}" if len(names) == 1 else str(error))


def prediction_lines(
    predictions: Iterable[Prediction], width: int, as_json: bool = False
) -> Iterator[str]:
    """The lines :func:`format_predictions` prints, one prediction at a time (the first
    is printed before the next is predicted); ``width``: the names' column.

    Example:
        >>> p = Prediction("a.png", [{"label": "3", "score": 0.9}])
        >>> list(prediction_lines([p, p], 6))
        ['a.png   3 (0.900)', 'a.png   3 (0.900)']
        >>> lines = prediction_lines([p, p], 6, as_json=True)
        >>> list(lines) == format_predictions([p, p], as_json=True).splitlines()
        True
    """
    if not as_json:
        for p in predictions:
            yield f"{p.input:<{width}}  {p.describe()}"
        return
    yield "["
    previous: str | None = None
    for p in predictions:  # as json.dumps(list, indent=2) writes it
        if previous is not None:
            yield from f"{previous},".splitlines()
        previous = "  " + json.dumps(p.to_dict(), indent=2).replace("\n", "\n  ")
    if previous is not None:
        yield from previous.splitlines()
    yield "]"


def format_predictions(predictions: Sequence[Prediction], as_json: bool = False) -> str:
    """Render predictions: one line per sample, or a JSON list with ``as_json``.

    Example:
        >>> p = Prediction("a.png", [{"label": "3", "score": 0.9}, {"label": "8", "score": 0.05}])
        >>> print(format_predictions([p, Prediction("row.json", [], 239.705)]))
        a.png     3 (0.900)  8 (0.050)
        row.json  239.705
    """
    if as_json:
        return json.dumps([p.to_dict() for p in predictions], indent=2)
    width = max((len(p.input) for p in predictions), default=0)
    return "\n".join(prediction_lines(predictions, width))
