"""models.load: a saved Keras model (.keras, or a SavedModel) to fine-tune or keep training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import reactivex

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import BatchError, ConfigError
from rxpipe.model import ModelPlan
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from ._heads import add_head, check_head, label_stats

KERAS_SUFFIXES = (".keras", ".h5")


def resolve(path: str) -> tuple[str, Path]:
    """``("keras", file)`` or ``("saved_model", folder)`` for ``path``.

    A folder holding ``model.keras`` (an ``rxpipe`` model bundle) loads that file.

    Raises:
        ConfigError: naming the path and what was expected.
    """
    where = Path(path).expanduser()
    if where.is_file() and where.suffix in KERAS_SUFFIXES:
        return "keras", where
    if where.is_dir():
        if (where / "model.keras").is_file():
            return "keras", where / "model.keras"
        if (where / "saved_model.pb").is_file():
            return "saved_model", where
    state = "does not exist" if not where.exists() else "is neither"
    raise ConfigError(
        "expected a .keras (or .h5) file, a SavedModel folder (with saved_model.pb) or a "
        f"model bundle folder (with model.keras). Received: {path!r}, which {state}",
        "models.load.path",
    )


def _check_input(model: Any, meta: DatasetMetadata) -> None:
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple):
        return  # several inputs: Keras checks them when the model is called
    expected, received = tuple(shape[1:]), meta.feature_spec.shape
    if len(expected) != len(received) or any(
        e is not None and e != r for e, r in zip(expected, received, strict=True)
    ):
        raise BatchError(
            f"models.load: the loaded model expects samples of shape {expected}. "
            f"Received: samples of shape {received}"
        )


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
    import keras

    spec = meta.feature_spec
    if kind == "keras":
        loaded = keras.saving.load_model(where, compile=False)
        _check_input(loaded, meta)
        if not new_head:
            if freeze:
                for layer in loaded.layers[:-1]:
                    layer.trainable = False
            return loaded
        inputs = loaded.inputs
        x = loaded.layers[-2].output
        base = keras.Model(inputs, x, name=f"{loaded.name}_base")
        base.trainable = not freeze
        new_inputs = keras.Input(spec.shape, dtype=spec.dtype, name="features")
        features = base(new_inputs, training=False if freeze else None)
        outputs = add_head(features, meta, head, "models.load", stats)
        return keras.Model(new_inputs, outputs, name=loaded.name)
    layer = keras.layers.TFSMLayer(
        str(where), call_endpoint="serving_default", trainable=not freeze
    )
    inputs = keras.Input(spec.shape, dtype=spec.dtype, name="features")
    out = layer(inputs)
    if isinstance(out, dict):
        out = out["scores"] if "scores" in out else next(iter(out.values()))
    if new_head:
        out = add_head(out, meta, head, "models.load", stats)
    elif freeze:
        raise BatchError(
            "models.load: a frozen SavedModel without a new head leaves nothing to train; "
            "expected new_head=True or freeze=False"
        )
    return keras.Model(inputs, out, name="loaded")


@plugin("models.load")
def load(
    path: str, freeze: bool = False, new_head: bool = False, head: str = "auto"
) -> Operator[Batch, ModelPlan]:
    """Continue training a saved model: a ``.keras`` file, a SavedModel, or a model bundle.

    ``new_head`` replaces the model's output layer (the last layer of a ``.keras``
    model; a SavedModel keeps its outputs and gets the head on top) with one sized for
    the data: transfer learning to new classes. ``freeze`` keeps the loaded weights as
    they are: with a new head only the head trains; without one, only the last layer.

    Args:
        path: a ``.keras``/``.h5`` file, a SavedModel folder, or a folder holding
            ``model.keras`` (e.g. a run's ``model/`` bundle from ``deploy.export``).
        freeze: do not train the loaded weights (see above).
        new_head: replace the output layer by one sized for this data.
        head: the new head: ``"auto"``, ``"classification"`` or ``"regression"``.

    Example:
        >>> load("missing.keras")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: models.load.path: expected a .keras (or .h5) file, ...
    """
    kind, where = resolve(path)
    check_head("models.load", head)

    def operator(source: reactivex.Observable[Batch]) -> reactivex.Observable[ModelPlan]:
        def build(meta: DatasetMetadata) -> Any:
            return load_model(
                kind, where, meta, freeze, new_head, head, lambda: label_stats(source)
            )

        return reactivex.just(ModelPlan("loaded", source, build))

    return operator
