"""The model bundle: what ``deploy.export`` writes and what ``predict`` and ``serve`` read.

Layout of a bundle directory (``<run dir>/model/`` by default)::

    1/                  SavedModel in TensorFlow Serving's versioned layout; signatures
                        ``serving_default`` (raw features → ``scores``, ``class_ids``) and,
                        for image models, ``serving_images`` (encoded image bytes → same)
    model.keras         the Keras model (takes preprocessed features)
    labels.json         class index → name (classifiers)
    preprocessing.json  the transforms the SavedModel applies to raw input
    model_card.json     inputs, outputs, labels, metrics, creation time, versions
    pipeline.toml       the resolved pipeline that trained the model (when run by one)
    metrics.json        evaluation metrics by split

The SavedModel is all a consumer needs: ``tf.saved_model.load("model/1")`` answers
predictions for raw input without rxpipe installed. :class:`Bundle` adds the card, the
labels and checked conversion of JSON rows and arrays.

Example:
    >>> find_bundle("runs/digits/20260101T000000Z-abc123")  # doctest: +SKIP
    PosixPath('runs/digits/20260101T000000Z-abc123/model')
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from rxpipe.batch import FeatureSpec
from rxpipe.errors import BundleError, PredictionInputError, describe_value

if TYPE_CHECKING:
    from rxpipe.serving.inputs import FilledInputs

__all__ = [
    "BUNDLE_FORMAT",
    "CARD_FILE",
    "DEFAULT_SIGNATURE",
    "IMAGE_INPUT",
    "IMAGE_SIGNATURE",
    "SAVED_MODEL_VERSION",
    "SINGLE_INPUT",
    "Bundle",
    "TensorInfo",
    "find_bundle",
    "regression_values",
    "tf_reason",
    "top_k",
]

BUNDLE_FORMAT = "rxpipe.bundle/1"
SAVED_MODEL_VERSION = "1"
CARD_FILE = "model_card.json"
LABELS_FILE = "labels.json"
KERAS_FILE = "model.keras"
PREPROCESSING_FILE = "preprocessing.json"
PIPELINE_FILE = "pipeline.toml"
METRICS_FILE = "metrics.json"
DEFAULT_SIGNATURE = "serving_default"
IMAGE_SIGNATURE = "serving_images"
IMAGE_INPUT = "images"
SINGLE_INPUT = "features"


def find_bundle(path: str | Path) -> Path:
    """The bundle directory for ``path``: a bundle itself, or a run directory holding one.

    Raises:
        BundleError: if neither ``path`` nor ``path/model`` holds a model card.
    """
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / CARD_FILE).is_file():
            return candidate
    raise BundleError(
        f"{path}: expected a run directory with a model bundle (model/{CARD_FILE}) or a "
        f"bundle directory ({CARD_FILE}). Received: {_why_no_bundle(path)}"
    )


def _why_no_bundle(path: Path) -> str:
    """Why the run at ``path`` has no bundle, from its run.json if it has one."""
    try:
        state = json.loads((path / "run.json").read_text(encoding="utf-8"))
        status, error = str(state["status"]), str(state.get("error", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return "neither exists (did the pipeline end with deploy.export?)"
    if status == "running":
        return (
            "a run that has not finished (its run.json says running, as it does for a run "
            "killed mid-way: resume that with rxpipe run --resume)"
        )
    if status == "failed":
        return f"a run that failed before exporting a model ({error or 'no error recorded'})"
    return "a run that exported no model (did the pipeline end with deploy.export?)"


@attrs.frozen
class TensorInfo:
    """One input or output of a signature.

    Attributes:
        name: the signature's name for it (e.g. ``features``, ``scores``).
        dtype: numpy dtype name (``"string"`` for text and encoded images).
        shape: with the batch axis first; ``None`` for an unknown size.
        value_range: raw inputs' (low, high) range, where the data set declared one.
        optional: a raw input the model does not use (a CSV column that
            ``process.concat_columns`` leaves out): requests may leave it out, and what
            is sent for it is checked but changes no answer.
        columns: the name of each value of a vector input, in order, where the data
            set named them (``collect.wine``'s ``alcohol``, ``malic_acid``...; the card's
            ``columns``); ``None`` otherwise (and in a card written before).
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    value_range: tuple[float, float] | None = None
    optional: bool = False
    columns: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``value_range`` and ``columns`` only when known,
        ``optional`` when true)."""
        out: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape)}
        if self.value_range is not None:
            out["value_range"] = list(self.value_range)
        if self.optional:
            out["optional"] = True
        if self.columns is not None:
            out["columns"] = list(self.columns)
        return out

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> TensorInfo:
        """Read :meth:`to_dict`'s output."""
        value_range, columns = data.get("value_range"), data.get("columns")
        return cls(
            name,
            str(data["dtype"]),
            tuple(None if d is None else int(d) for d in data["shape"]),
            None if value_range is None else (float(value_range[0]), float(value_range[1])),
            bool(data.get("optional", False)),
            None if columns is None else tuple(map(str, columns)),
        )

    @property
    def sample_shape(self) -> tuple[int | None, ...]:
        """The shape of one sample (without the batch axis)."""
        return self.shape[1:]

    def feature_spec(self) -> FeatureSpec:
        """The raw input as a :class:`FeatureSpec` (``"object"`` dtype for strings)."""
        dtype = "object" if self.dtype == "string" else self.dtype
        return FeatureSpec(
            tuple(d or 0 for d in self.sample_shape), dtype, self.value_range, self.columns
        )


def describe_spec(name: str, spec: Any) -> TensorInfo:
    """A :class:`TensorInfo` for a ``tf.TensorSpec`` (``"string"`` for ``tf.string``)."""
    dtype = "string" if spec.dtype.name == "string" else np.dtype(spec.dtype.as_numpy_dtype).name
    shape = tuple(spec.shape.as_list()) if spec.shape.rank is not None else ()
    return TensorInfo(name, dtype, shape)


def describe_signature(function: Any) -> dict[str, dict[str, TensorInfo]]:
    """Inputs and outputs of a concrete TF function or a loaded signature."""
    args, kwargs = function.structured_input_signature
    specs = dict(kwargs)
    for arg in args:  # a concrete function before saving takes positional specs
        if isinstance(arg, Mapping):
            specs.update(arg)
        else:
            specs[arg.name] = arg
    outputs = function.structured_outputs
    return {
        "inputs": {name: describe_spec(name, s) for name, s in sorted(specs.items())},
        "outputs": {name: describe_spec(name, s) for name, s in sorted(outputs.items())},
    }


def top_k(
    scores: np.ndarray[Any, Any], labels: Sequence[str] | None, k: int
) -> list[list[dict[str, Any]]]:
    """The ``k`` best ``{"label", "score"}`` of each row of ``scores``, best first.

    Without label names, a class is named by its index.

    Example:
        >>> top_k(np.array([[0.1, 0.7, 0.2]]), ["a", "b", "c"], 2)
        [[{'label': 'b', 'score': 0.7}, {'label': 'c', 'score': 0.2}]]
    """
    scores = np.asarray(scores)
    if scores.ndim == 1:
        scores = scores[:, np.newaxis]
    k = max(1, min(k, scores.shape[-1]))
    order = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    return [
        [
            {"label": labels[i] if labels is not None else str(i), "score": float(row[i])}
            for i in index
        ]
        for row, index in zip(scores, order, strict=True)
    ]


def regression_values(scores: np.ndarray[Any, Any]) -> list[float | list[float]]:
    """Each row of a regression model's outputs: a number, or a list for several targets.

    Example:
        >>> regression_values(np.array([[239.5], [51.0]], "float32"))
        [239.5, 51.0]
    """
    rows = np.asarray(scores, dtype=np.float64)
    rows = rows.reshape(len(rows), -1)
    return [float(row[0]) if row.size == 1 else row.tolist() for row in rows]


_TF_NOISE = re.compile(
    r"^(Graph execution error:|Detected at node|<stack traces unavailable>|File \"|Node: |\[\[)"
)


def tf_reason(message: str) -> str:
    """The line of a TensorFlow error message that says what is wrong.

    A graph execution error starts with ``Graph execution error:``, then where the op
    was defined, then the reason, then the node; only the reason helps a caller.

    Example:
        >>> tf_reason("Graph execution error:\\n\\nDetected at node d defined at ...:\\n"
        ...           "<stack traces unavailable>\\nbad image\\n\\t [[{{node d}}]] [Op:f]")
        'bad image'
    """
    lines = [line.strip() for line in message.splitlines()]
    reasons = [line for line in lines if line and not _TF_NOISE.match(line)]
    if not reasons:
        return message.strip() or "no reason given"
    reason = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", reasons[-1])
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", reason) or reasons[-1]


def _check_card(card: Any, file: Path) -> None:
    """Raise :class:`BundleError` naming ``file`` unless ``card`` has a model card's form.

    Example:
        >>> _check_card({"format": BUNDLE_FORMAT, "labels": "abc"}, Path("model_card.json"))
        Traceback (most recent call last):
        ...
        rxpipe.errors.BundleError: model_card.json: expected labels as a list of strings. \
Received: 'abc'
    """
    if not isinstance(card, Mapping):
        raise BundleError(
            f"{file}: expected a JSON object (a model card). Received: {type(card).__name__}"
        )
    if card.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"{file}: expected format {BUNDLE_FORMAT!r}. Received: {card.get('format')!r}"
        )
    labels = card.get("labels")
    if labels is not None and not (
        isinstance(labels, list) and all(isinstance(label, str) for label in labels)
    ):
        raise BundleError(f"{file}: expected labels as a list of strings. Received: {labels!r}")
    for field, kind in (("inputs", Mapping), ("saved_model", Mapping), ("preprocessing", list)):
        value = card.get(field)
        if value is not None and not isinstance(value, kind):
            raise BundleError(
                f"{file}: expected {field} as a JSON {'object' if kind is Mapping else 'list'}. "
                f"Received: {type(value).__name__}"
            )


def _input_columns(
    card_inputs: Mapping[str, Any], inputs: Mapping[str, TensorInfo], file: Path
) -> dict[str, tuple[str, ...]]:
    """The ``columns`` the card gives a vector input (the name of each of its values), by
    input name; checked against the input's shape.

    Example:
        >>> spec = TensorInfo("features", "float32", (None, 2))
        >>> _input_columns({"features": {"columns": ["age", "bmi"]}}, {"features": spec},
        ...                Path("model_card.json"))
        {'features': ('age', 'bmi')}
        >>> _input_columns({"features": {"columns": ["age"]}}, {"features": spec},
        ...                Path("model_card.json"))
        Traceback (most recent call last):
        ...
        rxpipe.errors.BundleError: model_card.json: expected inputs.features.columns to \
name each value of the input float32[2] once (2 distinct strings). Received: ['age'] (list)
    """
    found: dict[str, tuple[str, ...]] = {}
    for name, spec in card_inputs.items():
        columns = spec.get("columns") if isinstance(spec, Mapping) else None
        if columns is None or name not in inputs:
            continue
        info = inputs[name]
        shape = info.sample_shape
        if not (
            isinstance(columns, list)
            and all(isinstance(c, str) for c in columns)
            and len(set(columns)) == len(columns)
            and len(shape) == 1
            and shape[0] == len(columns)
        ):
            raise BundleError(
                f"{file}: expected inputs.{name}.columns to name each value of the input "
                f"{info.dtype}{list(shape)} once"
                f"{f' ({shape[0]} distinct strings)' if len(shape) == 1 else ''}. "
                f"Received: {describe_value(columns)}"
            )
        found[str(name)] = tuple(columns)
    return found


def _signature_inputs(card_inputs: Mapping[str, Any]) -> dict[str, str]:
    """The SavedModel's name of each input the card names otherwise, by the card's name.

    ``deploy.export`` records ``signature_input`` for a raw input whose name TensorFlow
    does not take as it is (a CSV column ``od280/od315``); a card without (a bundle
    exported before) names the inputs as the SavedModel does.

    Example:
        >>> _signature_inputs({"a/b": {"signature_input": "a_b_2"}, "c": {"dtype": "int64"}})
        {'a/b': 'a_b_2'}
    """
    return {
        str(name): str(spec["signature_input"])
        for name, spec in card_inputs.items()
        if isinstance(spec, Mapping) and "signature_input" in spec
    }


class Bundle:
    """A loaded model bundle: its card, labels and SavedModel signatures.

    Calling :meth:`predict` runs a signature of the SavedModel (TensorFlow releases the
    GIL while it computes). Loading imports TensorFlow.

    Inputs are named as in the data the model was trained on (a CSV's column names,
    ``od280/od315_of_diluted_wines``), even where the SavedModel names them otherwise
    (``signature_input`` in the card): :attr:`signatures`, :attr:`inputs` and
    :meth:`predict` use those names, and the :class:`TensorInfo` of each keeps the
    SavedModel's name.

    Attributes:
        path: the bundle directory.
        card: the parsed model card.
        name: the model's name (the pipeline's, by default the served model name).
        labels: class names, or ``None`` for a model without label names.
        signatures: inputs and outputs of each signature, by signature name.

    Example:
        >>> bundle = Bundle.load("runs/digits/latest")  # doctest: +SKIP
        >>> bundle.predict({"features": digits})["class_ids"]  # doctest: +SKIP
        array([0, 1, 2])
    """

    def __init__(self, path: Path, card: Mapping[str, Any], saved_model: Any) -> None:
        self.path = path
        self.card = card
        self.name = str(card.get("name") or path.parent.name)
        labels = card.get("labels")
        self.labels: tuple[str, ...] | None = None if labels is None else tuple(labels)
        self._saved_model = saved_model
        self._functions = {name: saved_model.signatures[name] for name in saved_model.signatures}
        self.signatures = {name: describe_signature(f) for name, f in self._functions.items()}
        card_inputs = card.get("inputs", {})
        ranges = {name: spec.get("value_range") for name, spec in card_inputs.items()}
        self.input_kinds = {name: str(spec.get("kind", "")) for name, spec in card_inputs.items()}
        optional = {name for name, spec in card_inputs.items() if spec.get("optional") is True}
        self._arguments = {DEFAULT_SIGNATURE: _signature_inputs(card_inputs)}
        default = self.signatures[DEFAULT_SIGNATURE]["inputs"]
        unknown = sorted(set(self._arguments[DEFAULT_SIGNATURE].values()) - set(default))
        if unknown:
            raise BundleError(
                f"{path / CARD_FILE}: expected signature_input names of the SavedModel's "
                f"inputs {sorted(default)}. Received: {unknown}"
            )
        for signature, info in self.signatures.items():
            public = {arg: name for name, arg in self._arguments.get(signature, {}).items()}
            named = dict(sorted((public.get(a, a), s) for a, s in info["inputs"].items()))
            columns = (
                _input_columns(card_inputs, named, path / CARD_FILE)
                if signature == DEFAULT_SIGNATURE
                else {}
            )
            info["inputs"] = {
                name: attrs.evolve(
                    spec,
                    value_range=None if ranges.get(name) is None else tuple(ranges[name]),
                    optional=signature == DEFAULT_SIGNATURE and name in optional,
                    columns=columns.get(name),
                )
                for name, spec in named.items()
            }

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        """Load the bundle at ``path`` (a bundle directory or a run directory).

        Raises:
            BundleError: if the bundle is missing or its files are unreadable.
        """
        import tensorflow as tf

        directory = find_bundle(path)
        try:
            card = json.loads((directory / CARD_FILE).read_text())
        except (OSError, ValueError) as error:
            raise BundleError(
                f"{directory / CARD_FILE}: expected a JSON model card. Received: {error}"
            ) from error
        _check_card(card, directory / CARD_FILE)
        saved = directory / str(card.get("saved_model", {}).get("path", SAVED_MODEL_VERSION))
        try:
            saved_model = tf.saved_model.load(str(saved))
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise BundleError(
                f"{saved}: expected a SavedModel. Received: {type(error).__name__}: {error}"
            ) from error
        if DEFAULT_SIGNATURE not in getattr(saved_model, "signatures", {}):
            raise BundleError(
                f"{saved}: expected a SavedModel with the signature {DEFAULT_SIGNATURE!r}. "
                f"Received: signatures {sorted(getattr(saved_model, 'signatures', {}))}"
            )
        try:
            bundle = cls(directory, card, saved_model)
        except BundleError:
            raise  # already names the card and what is wrong
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise BundleError(
                f"{directory / CARD_FILE}: expected a model card as deploy.export writes it. "
                f"Received: one that fails to read ({type(error).__name__}: {error})"
            ) from error
        bundle._check_labels()
        return bundle

    def _check_labels(self) -> None:
        """Raise :class:`BundleError` unless the card's labels name every class scored."""
        scores = self.signatures[DEFAULT_SIGNATURE]["outputs"].get("scores")
        width = scores.shape[-1] if scores is not None and scores.shape else None
        if self.labels is not None and width is not None and len(self.labels) != width:
            raise BundleError(
                f"{self.path / CARD_FILE}: expected {width} labels, one per class the model "
                f"scores. Received: {len(self.labels)} labels"
            )

    @property
    def version(self) -> str:
        """The SavedModel's version (its directory name)."""
        return str(self.card.get("saved_model", {}).get("path", SAVED_MODEL_VERSION))

    @property
    def inputs(self) -> dict[str, TensorInfo]:
        """The raw inputs of ``serving_default``, by name."""
        return self.signatures[DEFAULT_SIGNATURE]["inputs"]

    @functools.cached_property
    def filled_inputs(self) -> FilledInputs:
        """The raw inputs whose missing values (``null``, NaN) the model's preprocessing
        fills, as in training, with the text ``null`` is in each string input and the
        numbers that mean missing in each float input (see
        :func:`rxpipe.serving.inputs.filled_inputs`)."""
        from rxpipe.serving.inputs import filled_inputs

        return filled_inputs(self.card.get("preprocessing", []), self.inputs)

    @property
    def image_input(self) -> tuple[str, str] | None:
        """``(signature, input name)`` that takes encoded images, or ``None``.

        ``serving_images`` for a model on raw pixel arrays; ``serving_default`` itself
        for a model whose raw input is encoded images (decoded by its preprocessing).
        """
        if IMAGE_SIGNATURE in self.signatures:
            return IMAGE_SIGNATURE, IMAGE_INPUT
        inputs = self.inputs
        if len(inputs) == 1:
            name, info = next(iter(inputs.items()))
            if info.dtype == "string" and self.input_kinds.get(name) == "image":
                return DEFAULT_SIGNATURE, name
        return None

    @property
    def is_regression(self) -> bool:
        """True if the model answers values (its card's task is ``regression``), not labels."""
        return self.card.get("task") == "regression"

    @property
    def accepts_images(self) -> bool:
        """True if the model answers for encoded images (PNG, JPEG, GIF, BMP)."""
        return self.image_input is not None

    @property
    def accepts_text(self) -> bool:
        """True if the model's one input takes raw text."""
        inputs = self.inputs
        if len(inputs) != 1:
            return False
        name, info = next(iter(inputs.items()))
        return info.dtype == "string" and self.input_kinds.get(name) != "image"

    def predict(
        self, inputs: Mapping[str, Any], signature: str = DEFAULT_SIGNATURE
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Run ``signature`` on a batch of inputs; numpy outputs by name.

        Each input is checked first, as the server checks requests
        (:func:`rxpipe.serving.inputs.to_array`): the sample shape, the dtype and the
        values must fit the signature, so that TensorFlow never sees a tensor it cannot
        take. ``None`` (or NaN) is a missing value in the inputs whose missing values
        the model fills (:attr:`filled_inputs`), as the training data's missing value.

        Raises:
            PredictionInputError: if ``inputs`` is not a mapping of the signature's input
                names to arrays that fit them, or the model rejects them (the message
                gives TensorFlow's reason).
        """
        import tensorflow as tf

        from rxpipe.serving.inputs import input_array, key_difference, unused_batch

        if not isinstance(inputs, Mapping):  # untyped callers pass a bare array
            example = "{" + repr(next(iter(self.inputs), "features")) + ": batch}"  # type: ignore[unreachable]
            raise PredictionInputError(
                f"{signature}: expected a mapping of input names to arrays, e.g. {example}, "
                f"for {self.describe_inputs()}. Received: {type(inputs).__name__}"
            )
        if signature not in self._functions:
            raise PredictionInputError(
                f"signature: expected one of {sorted(self._functions)}. Received: {signature!r}"
            )
        specs = self.signatures[signature]["inputs"]
        required = [name for name, spec in specs.items() if not spec.optional]
        if not set(required) <= set(inputs) <= set(specs):
            unused = sorted(set(specs) - set(required))
            also = f" (and optionally {unused}, which the model does not use)" if unused else ""
            difference = key_difference(inputs, required, "a mapping that", unused)
            raise PredictionInputError(
                f"{signature}: expected the inputs {sorted(required)}{also}. Received: {difference}"
            )
        batch = {
            name: input_array(
                inputs[name], name, spec, f"{signature} input {name!r}", self.filled_inputs
            )
            for name, spec in specs.items()
            if name in inputs
        }
        sizes = {name: int(array.shape[0]) for name, array in batch.items()}
        if len(set(sizes.values())) > 1:
            raise PredictionInputError(
                f"{signature}: expected the same number of samples in every input. "
                f"Received: {sizes}"
            )
        if not batch:
            raise PredictionInputError(
                f"{signature}: expected at least one of the inputs {sorted(specs)}. Received: none"
            )
        size = next(iter(sizes.values()))
        batch.update({n: unused_batch(s, size) for n, s in specs.items() if n not in batch})
        function = self._functions[signature]
        arguments = self._arguments.get(signature, {})
        try:
            outputs = function(
                **{arguments.get(name, name): tf.constant(value) for name, value in batch.items()}
            )
        except tf.errors.InvalidArgumentError as error:
            raise PredictionInputError(
                f"{signature}: expected input the model can compute on. Received: input it "
                f"rejected ({tf_reason(error.message or str(error))})"
            ) from None
        return {name: value.numpy() for name, value in outputs.items()}

    def predict_images(self, images: Sequence[bytes]) -> dict[str, np.ndarray[Any, Any]]:
        """Predict encoded images (PNG, JPEG, GIF or BMP) through :attr:`image_input`.

        Raises:
            PredictionInputError: if the model does not take images.
        """
        target = self.image_input
        if target is None:
            raise PredictionInputError(
                f"model {self.name!r}: expected an image model to predict from image files. "
                f"Received: a model whose input is {self.describe_inputs()}"
            )
        signature, name = target
        batch = np.empty(len(images), dtype=object)
        batch[:] = list(images)
        return self.predict({name: batch}, signature)

    def describe_inputs(self) -> str:
        """The inputs in words, for error messages: ``features uint8[8, 8, 1]``."""
        return ", ".join(
            f"{name} {info.dtype}{list(info.sample_shape)}" for name, info in self.inputs.items()
        )
