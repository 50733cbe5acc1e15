"""The model card: a small JSON description of a bundle, for people and for ``rxpipe serve``."""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Collection, Mapping
from typing import Any

from rxpipe.model import TrainedModel, is_binary
from rxpipe.serving.bundle import (
    BUNDLE_FORMAT,
    DEFAULT_SIGNATURE,
    KERAS_FILE,
    SAVED_MODEL_VERSION,
    TensorInfo,
)

from ._signatures import input_specs, signature_names


def versions() -> dict[str, str]:
    """The versions of what made the bundle (rxpipe, TensorFlow, Keras, numpy, Python)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from rxpipe import __version__

    return {
        "rxpipe": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def metric_summary(metrics: Mapping[str, Any]) -> dict[str, dict[str, float | int]]:
    """The scalar metrics of each split (per-class tables stay in ``metrics.json``).

    Example:
        >>> metric_summary({"test": {"accuracy": 0.9, "per_class": {}, "samples": 10}})
        {'test': {'accuracy': 0.9, 'samples': 10}}
    """
    return {
        str(split): {
            str(k): v
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        for split, values in metrics.items()
        if isinstance(values, Mapping)
    }


def input_kind(spec: TensorInfo, first_step: str | None) -> str:
    """What a raw input holds: ``"image"`` (encoded image bytes), ``"text"`` or ``"array"``.

    A string input is taken as encoded images when the first preprocessing step decodes
    images (``process`` plugins record it as ``decode_image``).
    """
    if spec.dtype != "string":
        return "array"
    return "image" if first_step == "decode_image" else "text"


def _inputs(
    trained: TrainedModel, signature: Mapping[str, TensorInfo], unused: Collection[str]
) -> Any:
    """The raw inputs by their names in the data (a CSV's column names), with the
    SavedModel's name for each one it names otherwise (``signature_input``),
    ``optional`` for those the model does not use, and ``columns``, the name of each
    value of a vector input whose data set names them (``collect.wine``'s)."""
    meta = trained.metadata
    first = meta.preprocessing[0].name if meta.preprocessing else None
    served = signature_names(meta.raw_features)
    return {
        name: {
            **signature[served[name]].to_dict(),
            **({"value_range": list(spec.value_range)} if spec.value_range is not None else {}),
            "kind": input_kind(signature[served[name]], first),
            **({} if served[name] == name else {"signature_input": served[name]}),
            **({"optional": True} if name in unused else {}),
            **({"columns": list(spec.columns)} if spec.columns is not None else {}),
        }
        for name, spec in input_specs(meta.raw_features).items()
    }


def model_card(
    trained: TrainedModel,
    name: str,
    signatures: Mapping[str, Mapping[str, Mapping[str, TensorInfo]]],
    files: list[str],
    run: Mapping[str, str] | None = None,
    *,
    keras_skipped: str | None = None,
    unused: Collection[str] = (),
) -> dict[str, Any]:
    """The model card of a bundle.

    ``task`` is the model's (:attr:`~rxpipe.TrainedModel.task`); ``labels`` the class
    names of a classifier, ``None`` for a regressor (even on a data set with label
    names). ``keras_model`` gives the ``.keras`` file's path, or ``None`` and the
    ``reason`` it was not written. ``inputs`` are named as in the data (a CSV's
    columns); an input the SavedModel names otherwise (TensorFlow takes only ASCII
    identifiers, see :func:`~rxpipe.operators.deploy._signatures.signature_names`) says
    its SavedModel name as ``signature_input``. A vector input whose values the data
    set names (``collect.wine``'s 13 measurements) lists them, in order, as
    ``columns``.

    Args:
        trained: the trained model being exported.
        name: the model's served name.
        signatures: inputs and outputs of each SavedModel signature.
        files: the bundle's files, relative to it.
        run: the run that trained the model (``run_id``, ``pipeline``), if any.
        keras_skipped: why the bundle has no ``.keras`` file, if it has none.
        unused: the raw inputs the model does not use (``optional`` in ``inputs``:
            serving does not ask for them).
    """
    meta = trained.metadata
    classify = trained.task == "classification" and meta.label_names is not None
    default = signatures[DEFAULT_SIGNATURE]
    history = list(trained.history)
    return {
        "format": BUNDLE_FORMAT,
        "name": name,
        "model": trained.name,
        "dataset": meta.name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "task": "classification" if classify else "regression",
        "inputs": _inputs(trained, default["inputs"], unused),
        "outputs": {k: v.to_dict() for k, v in default["outputs"].items()},
        "scores": _scores(trained, classify),
        "labels": list(meta.label_names or ()) if classify else None,
        "preprocessing": [{"name": s.name, **s.to_config()} for s in meta.preprocessing],
        "metrics": metric_summary(trained.metrics),
        "training": {"epochs": len(history), "final": dict(history[-1]) if history else {}},
        "saved_model": {
            "path": SAVED_MODEL_VERSION,
            "signatures": {
                sig: {
                    part: {k: v.to_dict() for k, v in infos.items()} for part, infos in io.items()
                }
                for sig, io in signatures.items()
            },
        },
        "keras_model": (
            {"path": KERAS_FILE}
            if keras_skipped is None
            else {"path": None, "reason": keras_skipped}
        ),
        "run": dict(run) if run else None,
        "files": sorted(files),
    }


def _scores(trained: TrainedModel, classify: bool) -> str:
    """What the served ``scores`` are, for the card."""
    if not classify:
        return "the predicted values"
    if is_binary(trained.model, trained.metadata.label_names):
        made = "the sigmoid of its logit" if trained.logits else "its output"
        return f"both classes' probabilities, from the model's one output ({made})"
    return "softmax of the model's logits" if trained.logits else "the model's outputs"
