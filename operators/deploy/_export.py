"""deploy.export: the self-contained model bundle (SavedModel taking raw input, and friends)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rxpipe.context import atomic_write, current_run, not_replaceable
from rxpipe.errors import BatchError, ConfigError
from rxpipe.flow import map_batches
from rxpipe.model import TrainedModel, is_binary
from rxpipe.registry import plugin
from rxpipe.serving.bundle import (
    CARD_FILE,
    DEFAULT_SIGNATURE,
    KERAS_FILE,
    LABELS_FILE,
    METRICS_FILE,
    PIPELINE_FILE,
    PREPROCESSING_FILE,
    SAVED_MODEL_VERSION,
    describe_signature,
)
from rxpipe.stage import Operator

from ._card import model_card
from ._signatures import build_endpoints, input_specs, signature_names, unused_inputs

__all__ = ["export", "write_bundle"]

SERVED_NAME = r"(?=.*[\w-])[\w.-]+"
"""A served model's name: letters, digits, '_', '-' and '.', not only dots (it is a path
segment of the serving routes, ``/v1/models/<name>``), as pipeline names are."""


def _json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    for attr in ("item", "tolist"):  # numpy scalars and arrays
        convert = getattr(value, attr, None)
        if callable(convert):
            return convert()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _layers(layer: Any) -> Iterator[Any]:
    for inner in getattr(layer, "layers", None) or ():
        yield inner
        yield from _layers(inner)


def external_saved_model(model: Any) -> str | None:
    """Why ``model`` cannot be saved as a self-contained ``.keras`` file, or ``None``.

    A ``keras.layers.TFSMLayer`` (what ``models.load`` of a SavedModel builds) only
    refers to its SavedModel by path: a ``.keras`` file of it needs that folder to exist
    when loaded, and Keras refuses to load it without ``safe_mode=False``.
    """
    import keras

    for layer in _layers(model):
        if isinstance(layer, keras.layers.TFSMLayer):
            return (
                f"the model calls the SavedModel at {str(layer.filepath)!r} through a "
                "TFSMLayer (models.load of a SavedModel), which a .keras file would only "
                "refer to, not hold; the SavedModel in 1/ holds the whole model"
            )
    return None


def write_bundle(
    trained: TrainedModel,
    target: Path,
    *,
    name: str | None = None,
    pipeline_file: Path | None = None,
    run: Mapping[str, str] | None = None,
) -> None:
    """Write the model bundle into the (new) directory ``target``.

    See :mod:`rxpipe.serving.bundle` for the layout. Write it through
    :func:`~rxpipe.context.atomic_write` (as :func:`export` does) so that no reader
    ever sees part of a bundle.

    The bundle is a classifier's (``class_ids`` output, ``labels.json``) when
    ``trained.task`` is ``"classification"``: a regression head trained on a data set
    with label names exports a regressor. A classifier trained on logits
    (``trained.logits``) serves their softmax as its scores (its ``model.keras`` gives
    the logits, as trained); a binary classifier of one output serves both classes'
    probabilities. ``model.keras`` is left out, the card saying
    why (``keras_model.reason``), when the model is not self-contained (see
    :func:`external_saved_model`).

    Args:
        trained: the trained model, with its metadata (raw input spec, preprocessing,
            label names), history and metrics.
        target: the directory to create.
        name: the model's served name (default: the data set's name).
        pipeline_file: the resolved pipeline file to copy in, if any.
        run: the run that trained the model (``run_id``, ``pipeline``), for the card.

    Example:
        >>> write_bundle(trained, Path("bundle"), name="digits")  # doctest: +SKIP
    """
    import keras

    meta = trained.metadata
    classify = trained.task == "classification" and meta.label_names is not None
    binary = classify and is_binary(trained.model, meta.label_names)
    endpoints = build_endpoints(
        trained.model, meta.raw_features, meta.preprocessing, classify, trained.logits, binary
    )
    target.mkdir(parents=True)
    archive = keras.export.ExportArchive()
    archive.track(trained.model)
    signatures = {}
    for endpoint, (fn, input_signature) in endpoints.items():
        function = archive.add_endpoint(name=endpoint, fn=fn, input_signature=input_signature)
        signatures[endpoint] = describe_signature(function.get_concrete_function())
    archive.write_out(str(target / SAVED_MODEL_VERSION), verbose=False)
    served = signatures[DEFAULT_SIGNATURE]["inputs"]
    unused = unused_inputs(meta.raw_features, meta.preprocessing)
    keras_skipped = external_saved_model(trained.model)
    if keras_skipped is None:
        trained.model.save(target / KERAS_FILE)
    if classify:
        _json(target / LABELS_FILE, list(meta.label_names or ()))
    _json(
        target / PREPROCESSING_FILE,
        {
            "inputs": {
                name: {
                    **served[signature].to_dict(),
                    **({} if signature == name else {"signature_input": signature}),
                    **({"optional": True} if name in unused else {}),
                }
                for name, signature in signature_names(meta.raw_features).items()
            },
            "raw": {
                k: {"shape": list(s.shape), "dtype": s.dtype}
                for k, s in input_specs(meta.raw_features).items()
            },
            "steps": [{"name": s.name, **s.to_config()} for s in meta.preprocessing],
        },
    )
    _json(target / METRICS_FILE, dict(trained.metrics))
    if pipeline_file is not None and pipeline_file.is_file():
        shutil.copyfile(pipeline_file, target / PIPELINE_FILE)
    files = [str(p.relative_to(target)) for p in target.iterdir()] + [CARD_FILE]
    card = model_card(
        trained,
        name or meta.name,
        signatures,
        files,
        run,
        keras_skipped=keras_skipped,
        unused=unused,
    )
    _json(target / CARD_FILE, card)


@plugin("deploy.export")
def export(
    path: str | None = None, name: str | None = None
) -> Operator[TrainedModel, TrainedModel]:
    """Write the self-contained model bundle: SavedModel taking raw input, model card, ...

    The bundle holds a SavedModel in TensorFlow Serving's layout (``model/1``) whose
    signatures apply the recorded preprocessing to raw input (arrays, text, tabular rows,
    or encoded images for image models), the ``.keras`` model, the label names, the
    resolved pipeline, the metrics and a model card (``model_card.json``). It is written
    to a temporary directory and renamed into place when complete, so a reader never
    sees part of a bundle. ``rxpipe predict`` and ``rxpipe serve`` read it. The card's
    ``inputs`` describe the raw inputs; a vector input whose data set names its values
    (``collect.wine``'s ``alcohol``, ``malic_acid``...) lists them in order as
    ``columns``, by which ``rxpipe predict`` reads a CSV for the model.

    The card's ``task`` is the model's (:attr:`~rxpipe.TrainedModel.task`): a regression
    head on a data set with label names is exported as a regressor, without
    ``class_ids`` or labels. A model built on a SavedModel by ``models.load`` (a
    ``TFSMLayer``) has no self-contained ``.keras`` form: its bundle has no
    ``model.keras`` and the card's ``keras_model.reason`` says why; the SavedModel in
    ``model/1`` serves it as any other.

    Under ``train.fit(strategy="multi_worker")`` only worker 0 exports (every worker holds
    the same weights): the others pass the model on without writing, so that workers
    sharing a ``path`` do not race.

    Args:
        path: the bundle directory; default ``<run dir>/model``. It must not exist yet,
            be empty, or hold a bundle (which is replaced): a folder of other files is
            an error, never deleted.
        name: the model's name when served (letters, digits, ``-``, ``_`` and ``.``,
            not only dots); default the pipeline's name.

    Raises:
        ConfigError: for a ``path`` holding other files, or a ``name`` that cannot name
            a served model (empty, or with ``/``, spaces, ...).

    Example:
        >>> export().params
        {'path': None, 'name': None}
    """
    if name is not None and (not isinstance(name, str) or not re.fullmatch(SERVED_NAME, name)):
        raise ConfigError(
            "expected a non-empty name of letters, digits, '-', '_' and '.', not only dots "
            f"(it names the model in the serving routes). Received: {name!r}",
            "deploy.export.name",
        )
    problem = None if path is None else not_replaceable(Path(path).expanduser(), CARD_FILE)
    if problem is not None:
        raise ConfigError(problem, "deploy.export.path")

    def save(trained: TrainedModel) -> TrainedModel:
        if not isinstance(trained, TrainedModel):
            raise BatchError(
                "deploy.export: expected a TrainedModel from a train.* stage. "
                f"Received: {type(trained).__name__}"
            )
        if trained.stats.get("worker", 0) != 0:
            return trained  # multi_worker: worker 0 writes the bundle
        run = current_run()
        target = (
            Path(path).expanduser()
            if path is not None
            else run.require_run_dir("deploy.export") / "model"
        )
        pipeline_file = None if run.run_dir is None else run.run_dir / PIPELINE_FILE
        about = None if run.run_dir is None else {"run_id": run.run_id, "pipeline": run.pipeline}
        served = name or (run.pipeline if run.run_dir is not None else None)
        with atomic_write(target, marker=CARD_FILE) as tmp:
            write_bundle(trained, tmp, name=served, pipeline_file=pipeline_file, run=about)
        run.add_artifact("model", target)
        return trained.evolve(artifacts={**trained.artifacts, "model": str(target)})

    return map_batches("deploy.export", save)
