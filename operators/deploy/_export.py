"""deploy.export: a SavedModel that takes raw input, a .keras file and the label names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rxpipe.batch import FeatureSpec
from rxpipe.context import atomic_write, current_run
from rxpipe.errors import BatchError
from rxpipe.flow import map_batches
from rxpipe.model import TrainedModel
from rxpipe.registry import plugin
from rxpipe.stage import Operator

SAVED_MODEL_VERSION = "1"


def write_bundle(trained: TrainedModel, target: Path) -> None:
    """Write the model bundle into the (new, empty) directory ``target``.

    Layout::

        target/1/            SavedModel (TensorFlow Serving's versioned layout); its
                             ``serving_default`` signature takes raw features and returns
                             ``scores`` (and ``class_ids`` for classifiers)
        target/model.keras   the Keras model (takes preprocessed features)
        target/labels.json   class index -> name (classifiers)
        target/preprocessing.json  the transforms the SavedModel applies to raw input
    """
    import keras
    import tensorflow as tf

    meta = trained.metadata
    raw = meta.raw_features
    if not isinstance(raw, FeatureSpec):
        raise BatchError(
            "deploy.export: expected a single raw feature array. "
            f"Received: named features {sorted(raw)}"
        )
    model = trained.model
    steps = meta.preprocessing
    classify = meta.label_names is not None

    def serve(features: tf.Tensor) -> dict[str, tf.Tensor]:
        x = features
        for step in steps:
            x = step.apply_tf(x)
        scores = model(x, training=False)
        out = {"scores": scores}
        if classify:
            out["class_ids"] = tf.argmax(scores, axis=-1)
        return out

    target.mkdir(parents=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=serve,
        input_signature=[
            tf.TensorSpec((None, *raw.shape), tf.as_dtype(raw.dtype), name="features")
        ],
    )
    archive.write_out(str(target / SAVED_MODEL_VERSION), verbose=False)
    model.save(target / "model.keras")
    if classify:
        (target / "labels.json").write_text(json.dumps(list(meta.label_names or ())))
    preprocessing: list[dict[str, Any]] = [{"name": s.name, **s.to_config()} for s in steps]
    (target / "preprocessing.json").write_text(
        json.dumps(
            {"input": {"shape": list(raw.shape), "dtype": raw.dtype}, "steps": preprocessing},
            indent=2,
        )
    )


@plugin("deploy.export")
def export(path: str | None = None) -> Operator[TrainedModel, TrainedModel]:
    """Export the trained model: SavedModel with preprocessing, ``.keras``, ``labels.json``.

    The bundle is written to a temporary directory and renamed into place when
    complete, so a reader never sees half an export.

    Args:
        path: the bundle directory; default ``<run dir>/model``.

    Example:
        >>> export().params
        {'path': None}
    """

    def save(trained: TrainedModel) -> TrainedModel:
        run = current_run()
        target = Path(path) if path is not None else run.require_run_dir("deploy.export") / "model"
        with atomic_write(target) as tmp:
            write_bundle(trained, tmp)
        run.add_artifact("model", target)
        return trained.evolve(artifacts={**trained.artifacts, "model": str(target)})

    return map_batches("deploy.export", save)
