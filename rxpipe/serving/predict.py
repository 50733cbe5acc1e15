"""``rxpipe predict RUN_DIR INPUT...``: top-k labels for image files, arrays, JSON rows or text.

Each INPUT is read by what it is:

- an image file (PNG, JPEG, GIF, BMP): decoded, resized and preprocessed by the
  bundle's ``serving_images`` signature;
- ``.npy``: one sample, or a batch of samples on the first axis; ``.npz``: one array per
  named input;
- ``.json``: a list of rows, a single row, or ``{"instances": ...}`` / ``{"inputs": ...}``
  as in TensorFlow Serving; ``.jsonl``: one row per line;
- ``.txt`` (for a text model): the file's text is one sample;
- anything else that is not a file: text for a text model, otherwise JSON (a row or
  a list of rows).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from rxpipe.errors import PredictionInputError
from rxpipe.serving.bundle import Bundle, top_k
from rxpipe.serving.images import check_image
from rxpipe.serving.inputs import columns_to_batch, parse_request, rows_to_batch, to_array

__all__ = ["Prediction", "format_predictions", "predict_inputs", "read_input"]

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp"})


@attrs.frozen
class Prediction:
    """The top-k labels of one sample.

    Attributes:
        input: what the sample was (``digit.png``, ``rows.json[2]``).
        top_k: ``{"label", "score"}`` objects, best first.
    """

    input: str
    top_k: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"input": ..., "predictions": [{"label", "score"}, ...]}``."""
        return {"input": self.input, "predictions": self.top_k}


@attrs.frozen
class _Samples:
    names: list[str]
    batch: dict[str, Any] | None = None  # checked arrays for serving_default
    images: list[bytes] | None = None  # encoded images for serving_images


def _names(source: str, count: int) -> list[str]:
    return [source] if count == 1 else [f"{source}[{i}]" for i in range(count)]


def _from_json(value: Any, source: str, bundle: Bundle) -> _Samples:
    specs = bundle.inputs
    if isinstance(value, Mapping) and ({"instances", "inputs"} & set(value)):
        batch, _ = parse_request(value, specs)
    elif isinstance(value, list) and (len(specs) > 1 or _is_batch(value, specs)):
        batch = rows_to_batch(value, specs)
    else:
        batch = rows_to_batch([value], specs)
    count = int(next(iter(batch.values())).shape[0])
    return _Samples(_names(source, count), batch=batch)


def _is_batch(value: list[Any], specs: Mapping[str, Any]) -> bool:
    """Whether a JSON list holds several samples (one more axis than a sample has)."""
    spec = next(iter(specs.values()))
    depth, item = 0, value
    while isinstance(item, list) and item:
        depth, item = depth + 1, item[0]
    return depth > len(spec.sample_shape)


def read_input(text: str, bundle: Bundle) -> _Samples:
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
            raise PredictionInputError(
                f"{text}: expected an existing file (image, .npy, .npz, .json, .jsonl) or a "
                "JSON row. Received: neither"
            ) from None
        return _from_json(value, "argument", bundle)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        name, spec = next(iter(bundle.inputs.items()))
        if len(bundle.inputs) == 1 and array.ndim == len(spec.sample_shape):
            array = array[np.newaxis]
        batch = columns_to_batch(array, bundle.inputs)
        return _Samples(_names(text, int(array.shape[0])), batch=batch)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            batch = columns_to_batch({k: arrays[k] for k in arrays.files}, bundle.inputs)
        return _Samples(_names(text, int(next(iter(batch.values())).shape[0])), batch=batch)
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return _Samples(_names(text, len(rows)), batch=rows_to_batch(rows, bundle.inputs))
    if suffix == ".json":
        try:
            value = json.loads(path.read_text())
        except ValueError as error:
            raise PredictionInputError(f"{text}: expected JSON. Received: {error}") from None
        return _from_json(value, text, bundle)
    if suffix == ".txt" and bundle.accepts_text:
        name, spec = next(iter(bundle.inputs.items()))
        return _Samples([text], batch={name: to_array([path.read_text()], spec, text)})
    data = path.read_bytes()
    try:
        check_image(data, text)
    except PredictionInputError:
        if suffix in _IMAGE_SUFFIXES:
            raise
        raise PredictionInputError(
            f"{text}: expected an image, .npy, .npz, .json, .jsonl"
            f"{' or .txt' if bundle.accepts_text else ''} file. Received: "
            f"{suffix or 'a file without suffix'} that is none of these"
        ) from None
    return _Samples([text], images=[data])


def predict_inputs(bundle: Bundle, inputs: Sequence[str], k: int = 3) -> Iterator[Prediction]:
    """The top ``k`` labels of every sample in ``inputs``, in order.

    Images are predicted together in one call; every other input in one call each.

    Raises:
        PredictionInputError: for an input that is unreadable or does not fit the model.
    """
    read = [read_input(text, bundle) for text in inputs]
    images = [image for samples in read for image in (samples.images or [])]
    image_scores = iter(
        top_k(bundle.predict_images(images)["scores"], bundle.labels, k) if images else []
    )
    for samples in read:
        if samples.images is not None:
            for name in samples.names:
                yield Prediction(name, next(image_scores))
            continue
        assert samples.batch is not None
        best = top_k(bundle.predict(samples.batch)["scores"], bundle.labels, k)
        for name, labels in zip(samples.names, best, strict=True):
            yield Prediction(name, labels)


def format_predictions(predictions: Sequence[Prediction], as_json: bool = False) -> str:
    """Render predictions: one line per sample, or a JSON list with ``as_json``.

    Example:
        >>> p = Prediction("a.png", [{"label": "3", "score": 0.9}, {"label": "8", "score": 0.05}])
        >>> print(format_predictions([p]))
        a.png  3 (0.900)  8 (0.050)
    """
    if as_json:
        return json.dumps([p.to_dict() for p in predictions], indent=2)
    width = max((len(p.input) for p in predictions), default=0)
    return "\n".join(
        f"{p.input:<{width}}  "
        + "  ".join(f"{item['label']} ({item['score']:.3f})" for item in p.top_k)
        for p in predictions
    )
