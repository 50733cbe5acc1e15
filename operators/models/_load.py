"""models.load: a saved Keras model (.keras, or a SavedModel) to fine-tune or keep training.

What loads: a ``.keras`` (or ``.h5``) file; a model bundle folder (``deploy.export``'s
``model/``), whose ``model.keras`` takes the preprocessed features the pipeline feeds; or
a plain SavedModel folder, wrapped in a ``keras.layers.TFSMLayer`` that calls its
``serving_default`` signature. A bundle's own SavedModel (``model/1``) takes *raw*
input and preprocesses it itself, so for it the bundle's ``model.keras`` loads instead.

A model trained on top of a SavedModel keeps the TFSMLayer, which only refers to that
SavedModel folder: its bundle has no ``model.keras`` (the card says why), and a ``.keras``
file of it (saved by hand, or by an older ``deploy.export``) does not load in Keras's safe
mode (it would run the SavedModel's graph code). Either way ``models.load`` raises a
:class:`~rxpipe.errors.ConfigError` with the reason, not Keras's raw message.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import reactivex

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import BatchError, ConfigError
from rxpipe.model import ModelPlan
from rxpipe.registry import plugin
from rxpipe.serving.bundle import CARD_FILE, DEFAULT_SIGNATURE, KERAS_FILE
from rxpipe.stage import Operator

from ._heads import OUTPUT_LAYER, REGRESSION_UNIT_LAYER, add_head, check_head, label_stats

KERAS_SUFFIXES = (".keras", ".h5")
SAVED_MODEL_FILE = "saved_model.pb"


def _no_keras_reason(bundle: Path) -> str:
    """Why the bundle has no ``model.keras``, as its model card says (or a general reason)."""
    try:
        card = json.loads((bundle / CARD_FILE).read_text())
        reason = card["keras_model"]["reason"]
    except (OSError, ValueError, KeyError, TypeError):
        reason = None
    return str(reason) if reason else f"the bundle has no {KERAS_FILE}"


def resolve(path: str) -> tuple[str, Path]:
    """``("keras", file)`` or ``("saved_model", folder)`` for ``path``.

    A folder holding ``model.keras`` (an ``rxpipe`` model bundle) loads that file, and
    so does a bundle's SavedModel version folder (``model/1``), whose SavedModel takes raw
    input while the pipeline feeds preprocessed features.

    Raises:
        ConfigError: naming the path and what was expected; for a bundle without
            ``model.keras`` (a model built on a SavedModel has none), the reason.

    Example:
        >>> resolve("missing.keras")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: models.load.path: expected a .keras (or .h5) file, ...
    """
    where = Path(path).expanduser()
    if where.is_file() and where.suffix in KERAS_SUFFIXES:
        return "keras", where
    if where.is_dir():
        if (where / KERAS_FILE).is_file():
            return "keras", where / KERAS_FILE
        if (where / CARD_FILE).is_file():
            raise ConfigError(
                f"expected a model bundle holding {KERAS_FILE}, the Keras model that takes "
                f"the preprocessed features the pipeline feeds. Received: {path!r}, a bundle "
                f"without it: {_no_keras_reason(where)}",
                "models.load.path",
            )
        if (where / SAVED_MODEL_FILE).is_file():
            bundle = where.parent
            if not (bundle / CARD_FILE).is_file():
                return "saved_model", where
            if (bundle / KERAS_FILE).is_file():
                return "keras", bundle / KERAS_FILE
            raise ConfigError(
                f"expected the bundle folder ({bundle}), whose {KERAS_FILE} takes the "
                f"preprocessed features the pipeline feeds. Received: {path!r}, the SavedModel "
                f"inside it, which takes raw input; and {_no_keras_reason(bundle)}",
                "models.load.path",
            )
    state = "does not exist" if not where.exists() else "is neither"
    raise ConfigError(
        "expected a .keras (or .h5) file, a SavedModel folder (with saved_model.pb) or a "
        f"model bundle folder (with model.keras). Received: {path!r}, which {state}",
        "models.load.path",
    )


def check_input(
    model: Any, meta: DatasetMetadata, plugin: str = "models.load", what: str = "the loaded model"
) -> None:
    """Raise a :class:`BatchError` if ``model``'s one input does not take ``meta``'s samples."""
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return  # not known before the model is called
    if not isinstance(shape, tuple):
        return  # several inputs: Keras checks them when the model is called
    expected, received = tuple(shape[1:]), meta.feature_spec.shape
    if not _shape_fits(expected, received):
        raise BatchError(
            f"{plugin}: {what} expects samples of shape {expected}. "
            f"Received: samples of shape {received}"
        )


def _shape_fits(expected: tuple[int | None, ...], received: tuple[int, ...]) -> bool:
    return len(expected) == len(received) and all(
        e is None or e == r for e, r in zip(expected, received, strict=True)
    )


def _saved_models_inside(file: Path) -> list[str]:
    """The SavedModel folders the TFSMLayers of a ``.keras`` file refer to (best effort)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "TFSMLayer":
                found.append(str(node.get("config", {}).get("filepath", "?")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    try:
        with zipfile.ZipFile(file) as archive:
            walk(json.loads(archive.read("config.json")))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    return found


def load_keras(file: Path) -> Any:
    """The model of a ``.keras``/``.h5`` file, uncompiled.

    Raises:
        ConfigError: when the file holds a ``TFSMLayer`` (a model trained on top of a
            SavedModel), which Keras does not load in safe mode.
    """
    import keras

    try:
        return keras.saving.load_model(file, compile=False)
    except ValueError as error:
        if "TFSMLayer" not in str(error):
            raise
        sources = ", ".join(_saved_models_inside(file)) or "a SavedModel folder"
        raise ConfigError(
            f"expected a model made of Keras layers. Received: {str(file)!r}, which wraps "
            f"the SavedModel {sources} in a TFSMLayer (a model trained after models.load of "
            "that SavedModel): Keras does not load a TFSMLayer in safe mode, since it runs "
            "the SavedModel's graph code, and it needs that folder. Load the SavedModel "
            "itself with models.load, or start from a .keras model",
            "models.load.path",
        ) from None


def _head_input(model: Any) -> Any:
    """The tensor the model's head sits on.

    That is the input of the output layer, or for an rxpipe regression head (a linear
    ``unit_scores`` layer, then the ``scores`` rescaling) the input of ``unit_scores``.
    """
    import keras

    top = model.layers[-1]
    if top.name == OUTPUT_LAYER and isinstance(top, keras.layers.Rescaling):
        names = {layer.name for layer in model.layers}
        if REGRESSION_UNIT_LAYER in names:
            unit = model.get_layer(REGRESSION_UNIT_LAYER)
            if top.input is unit.output:
                top = unit
    features = top.input
    if isinstance(features, list | tuple | dict):
        raise BatchError(
            "models.load: expected a model whose output layer takes one tensor, to put a new "
            f"head there. Received: output layer {top.name!r}, which takes {len(features)}"
        )
    return features


def _freeze_below_top(model: Any, where: Path) -> None:
    """Freeze every layer but the last one with trainable weights."""
    weighted = [layer for layer in model.layers if layer.trainable_weights]
    if not weighted:
        raise ConfigError(
            "expected a model with a layer left to train: freeze=True trains only the last "
            f"layer with trainable weights. Received: {str(where)!r}, which has no trainable "
            "weights (use new_head=True to train a new output layer)",
            "models.load.freeze",
        )
    top = weighted[-1]
    for layer in model.layers:
        if layer is not top:
            layer.trainable = False


def _keras_model(
    where: Path, meta: DatasetMetadata, freeze: bool, new_head: bool, head: str, stats: Any
) -> Any:
    import keras

    loaded = load_keras(where)
    check_input(loaded, meta)
    if not new_head:
        if freeze:
            _freeze_below_top(loaded, where)
        return loaded
    base = keras.Model(loaded.inputs, _head_input(loaded), name=f"{loaded.name}_base")
    base.trainable = not freeze
    spec = meta.feature_spec
    new_inputs = keras.Input(spec.shape, dtype=spec.dtype, name="features")
    features = base(new_inputs, training=False if freeze else None)
    outputs = add_head(features, meta, head, "models.load", stats)
    return keras.Model(new_inputs, outputs, name=loaded.name)


def _input_dtype(layer: Any, where: Path, meta: DatasetMetadata) -> str:
    """The dtype of the SavedModel's one input; checks the data's shape against it."""
    spec = meta.feature_spec
    signature = getattr(layer.call_endpoint_fn, "structured_input_signature", None)
    if not signature:
        return spec.dtype
    args, kwargs = signature
    inputs = [*args, *kwargs.values()]
    if len(inputs) != 1:
        raise BatchError(
            f"models.load: expected a SavedModel whose {DEFAULT_SIGNATURE!r} signature takes "
            f"one input, the features. Received: {str(where)!r}, whose signature takes "
            f"{len(inputs)} ({', '.join(sorted(map(str, kwargs))) or 'positional'})"
        )
    [tensor] = inputs
    expected = tuple(tensor.shape.as_list()[1:])
    dtype = str(tensor.dtype.name)
    numeric = ("float", "int", "uint", "bool")
    if not _shape_fits(expected, spec.shape) or (
        dtype != spec.dtype and not (dtype.startswith(numeric) and spec.dtype.startswith(numeric))
    ):
        raise BatchError(
            f"models.load: the loaded SavedModel expects samples of shape {expected}, dtype "
            f"{dtype}. Received: samples of shape {spec.shape}, dtype {spec.dtype}"
        )
    return dtype  # numeric data is cast to it by the model


def _saved_model(
    where: Path, meta: DatasetMetadata, freeze: bool, new_head: bool, head: str, stats: Any
) -> Any:
    import keras

    try:
        layer = keras.layers.TFSMLayer(
            str(where), call_endpoint=DEFAULT_SIGNATURE, trainable=not freeze
        )
    except ValueError as error:
        found = str(error).rpartition("Available endpoints for this SavedModel: ")[2]
        raise ConfigError(
            f"expected a SavedModel with a {DEFAULT_SIGNATURE!r} signature. Received: "
            f"{str(where)!r}, whose signatures are {found}",
            "models.load.path",
        ) from None
    spec = meta.feature_spec
    inputs = keras.Input(spec.shape, dtype=_input_dtype(layer, where, meta), name="features")
    out = layer(inputs)
    if isinstance(out, dict):
        out = out[OUTPUT_LAYER] if OUTPUT_LAYER in out else next(iter(out.values()))
    if new_head:
        out = add_head(out, meta, head, "models.load", stats)
    return keras.Model(inputs, out, name="loaded")


def load_model(
    kind: str,
    where: Path,
    meta: DatasetMetadata,
    freeze: bool,
    new_head: bool,
    head: str,
    stats: Any,
) -> Any:
    """The loaded model, frozen and re-headed as asked, for ``meta``'s data."""
    build = _keras_model if kind == "keras" else _saved_model
    return build(where, meta, freeze, new_head, head, stats)


@plugin("models.load")
def load(
    path: str, freeze: bool = False, new_head: bool = False, head: str = "auto"
) -> Operator[Batch, ModelPlan]:
    """Continue training a saved model: a ``.keras`` file, a SavedModel, or a model bundle.

    ``new_head`` replaces the model's head with one sized for the data: transfer learning
    to new classes. The head of a ``.keras`` model is its output layer (both layers of an
    rxpipe regression head); a SavedModel keeps its outputs and gets the head on top.
    ``freeze`` keeps the loaded weights as they are: with a new head only the head trains;
    without one, only the last layer with trainable weights.

    A model trained on top of a plain SavedModel wraps it in a ``TFSMLayer``: its bundle
    serves, but has no loadable ``model.keras``, so ``models.load`` of that bundle fails
    with a ``ConfigError`` saying why.

    Args:
        path: a ``.keras``/``.h5`` file, a SavedModel folder, or a folder holding
            ``model.keras`` (e.g. a run's ``model/`` bundle from ``deploy.export``; its
            ``model/1`` SavedModel loads the bundle's ``model.keras`` too).
        freeze: do not train the loaded weights (see above). ``False`` changes nothing:
            layers that were saved frozen (e.g. the base of a model trained with
            ``freeze=True, new_head=True``) stay frozen.
        new_head: replace the output layer by one sized for this data.
        head: the new head: ``"auto"``, ``"classification"`` or ``"regression"``.

    Raises:
        ConfigError: for a path that is none of the above, a bundle without
            ``model.keras``, or ``freeze`` on a SavedModel without a new head.

    Example:
        >>> load("missing.keras")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: models.load.path: expected a .keras (or .h5) file, ...
    """
    kind, where = resolve(path)
    check_head("models.load", head)
    if kind == "saved_model" and freeze and not new_head:
        raise ConfigError(
            "expected new_head=True with freeze=True for a SavedModel: it loads as one "
            "layer, so freezing it leaves nothing to train. Received: freeze=True, "
            f"new_head=False for the SavedModel {path!r}",
            "models.load.freeze",
        )

    def operator(source: reactivex.Observable[Batch]) -> reactivex.Observable[ModelPlan]:
        def build(meta: DatasetMetadata) -> Any:
            return load_model(
                kind, where, meta, freeze, new_head, head, lambda: label_stats(source)
            )

        return reactivex.just(ModelPlan("loaded", source, build))

    return operator
