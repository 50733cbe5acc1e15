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

Example:
    >>> spec = TensorInfo("features", "float32", (None, 2))
    >>> rows_to_batch([[1, 2], [3, 4]], {"features": spec})["features"].dtype
    dtype('float32')
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import numpy as np

from rxpipe.errors import PredictionInputError
from rxpipe.serving.bundle import TensorInfo

__all__ = ["batch_size", "columns_to_batch", "parse_request", "rows_to_batch", "to_array"]


def _received(array: np.ndarray[Any, Any]) -> str:
    kinds = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers", "U": "strings"}
    kind = kinds.get(array.dtype.kind, "mixed values")
    return f"{kind} of shape {tuple(array.shape[1:])}"


def _expected(spec: TensorInfo) -> str:
    what = "strings" if spec.dtype == "string" else f"{spec.dtype} values"
    return f"{what} of shape {tuple(spec.sample_shape)}"


def _strings(value: Any, where: str) -> np.ndarray[Any, Any]:
    def decode(item: Any) -> Any:
        if isinstance(item, str | bytes):
            return item
        if isinstance(item, Mapping) and set(item) == {"b64"} and isinstance(item["b64"], str):
            try:
                return base64.b64decode(item["b64"], validate=True)
            except binascii.Error as error:
                raise PredictionInputError(
                    f"{where}: expected valid base64 in {{'b64': ...}}. Received: {error}"
                ) from None
        if isinstance(item, list):
            return [decode(i) for i in item]
        raise PredictionInputError(
            f"{where}: expected strings (or {{'b64': ...}} objects). "
            f"Received: {type(item).__name__}"
        )

    try:
        return np.array(decode(value), dtype=object)
    except ValueError as error:
        raise PredictionInputError(
            f"{where}: expected a rectangular array of strings. Received: {error}"
        ) from None


def to_array(value: Any, spec: TensorInfo, where: str) -> np.ndarray[Any, Any]:
    """A batch (samples on the first axis) of ``spec``'s input from a JSON value or array.

    Raises:
        PredictionInputError: for a ragged value, a wrong shape, a value of the wrong
            kind (floats or out-of-range numbers for an integer input, numbers for text).

    Example:
        >>> to_array([[0, 16]], TensorInfo("x", "uint8", (None, 2)), "instances").tolist()
        [[0, 16]]
    """
    if spec.dtype == "string":
        array = _strings(value, where)
    elif isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except ValueError:
            raise PredictionInputError(
                f"{where}: expected {_expected(spec)} per sample. Received: ragged nested "
                "lists (rows of different lengths)"
            ) from None
    if array.ndim == 0 or array.shape[0] == 0:
        raise PredictionInputError(
            f"{where}: expected a batch of at least one sample of {_expected(spec)}. "
            f"Received: {'a single value' if array.ndim == 0 else 'no samples'}"
        )
    wanted = spec.sample_shape
    if len(array.shape) - 1 != len(wanted) or any(
        w is not None and w != got for w, got in zip(wanted, array.shape[1:], strict=False)
    ):
        raise PredictionInputError(
            f"{where}: expected {_expected(spec)} per sample. Received: {_received(array)} "
            f"per sample ({array.shape[0]} sample{'' if array.shape[0] == 1 else 's'})"
        )
    if spec.dtype == "string":
        return array
    return _cast(array, spec, where)


def _cast(array: np.ndarray[Any, Any], spec: TensorInfo, where: str) -> np.ndarray[Any, Any]:
    dtype = np.dtype(spec.dtype)
    kind = array.dtype.kind
    if dtype.kind == "b":
        if kind != "b":
            raise PredictionInputError(
                f"{where}: expected booleans (true/false). Received: {_received(array)}"
            )
        return array
    if kind not in "iuf" or (kind == "f" and dtype.kind in "iu" and not _integral(array)):
        raise PredictionInputError(
            f"{where}: expected {_expected(spec)} per sample. Received: {_received(array)}"
        )
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            raise PredictionInputError(
                f"{where}: expected {spec.dtype} values in [{info.min}, {info.max}]. "
                f"Received: values in [{low}, {high}]"
            )
    return array.astype(dtype, copy=False)


def _integral(array: np.ndarray[Any, Any]) -> bool:
    return bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)))


def rows_to_batch(
    instances: Any, specs: Mapping[str, TensorInfo]
) -> dict[str, np.ndarray[Any, Any]]:
    """A batch from TensorFlow Serving's row format (the value of ``"instances"``)."""
    if not isinstance(instances, list) or not instances:
        raise PredictionInputError(
            f"instances: expected a non-empty list of samples. Received: {_json_kind(instances)}"
        )
    if len(specs) == 1:
        name, spec = next(iter(specs.items()))
        if all(isinstance(row, Mapping) and set(row) == {name} for row in instances):
            instances = [row[name] for row in instances]
        return {name: to_array(instances, spec, "instances")}
    for index, row in enumerate(instances):
        if not isinstance(row, Mapping) or set(row) != set(specs):
            raise PredictionInputError(
                f"instances[{index}]: expected an object with the inputs {sorted(specs)}. "
                f"Received: {sorted(row) if isinstance(row, Mapping) else _json_kind(row)}"
            )
    return {
        name: to_array([row[name] for row in instances], spec, f"instances (input {name!r})")
        for name, spec in specs.items()
    }


def columns_to_batch(
    inputs: Any, specs: Mapping[str, TensorInfo]
) -> dict[str, np.ndarray[Any, Any]]:
    """A batch from TensorFlow Serving's columnar format (the value of ``"inputs"``)."""
    if isinstance(inputs, Mapping):
        if set(inputs) != set(specs):
            raise PredictionInputError(
                f"inputs: expected the inputs {sorted(specs)}. Received: {sorted(inputs)}"
            )
        batch = {
            name: to_array(inputs[name], spec, f"inputs[{name!r}]") for name, spec in specs.items()
        }
    elif len(specs) == 1:
        name, spec = next(iter(specs.items()))
        batch = {name: to_array(inputs, spec, "inputs")}
    else:
        raise PredictionInputError(
            f"inputs: expected an object with the inputs {sorted(specs)}. "
            f"Received: {_json_kind(inputs)}"
        )
    sizes = {name: int(array.shape[0]) for name, array in batch.items()}
    if len(set(sizes.values())) > 1:
        raise PredictionInputError(
            f"inputs: expected the same number of samples in every input. Received: {sizes}"
        )
    return batch


def parse_request(body: Any, specs: Mapping[str, TensorInfo]) -> tuple[dict[str, Any], bool]:
    """The batch of a ``:predict`` request body, and whether it used the row format.

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
        return rows_to_batch(body["instances"], specs), True
    return columns_to_batch(body["inputs"], specs), False


def batch_size(batch: Mapping[str, np.ndarray[Any, Any]]) -> int:
    """The number of samples in a checked batch."""
    return int(next(iter(batch.values())).shape[0])


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
