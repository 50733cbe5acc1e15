"""models.mobilenet_v2 and models.resnet50: keras.applications networks, never downloaded.

The networks are built with random weights (``weights=None``), or with weights from a
local file (for example ImageNet weights you copied to the machine, "no top" variant).
Nothing is ever fetched from the internet. The network sees the features as they
arrive: normalize them as the weights expect (MobileNetV2: [-1, 1], e.g.
``process.normalize(scale=0.00784313725490196, offset=-1.0)`` on 0–255 pixels).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import BatchError, ConfigError
from rxpipe.model import ModelPlan
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import fraction
from ._heads import check_head, plan

MIN_SIZE = 32


def _weights(plugin_name: str, weights: str | None) -> str | None:
    if weights is None:
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        hint = (
            " (rxpipe never downloads weights: copy the file to this machine and pass its path)"
            if weights in ("imagenet",) or "://" in weights
            else ""
        )
        raise ConfigError(
            f"expected None or the path of a local weights file. Received: {weights!r}, "
            f"which is not a file{hint}",
            f"{plugin_name}.weights",
        )
    return str(path)


def _load_weights(plugin_name: str, base: Any, weights: str, alpha: float | None) -> None:
    """Load ``weights`` into ``base``; a file of another network (or alpha) is a ConfigError.

    Keras warns about each part of the network that a mismatched file skips, then fails;
    those warnings are dropped when it fails (the error says it all) and passed on when it
    loads.
    """
    failure: ValueError | OSError | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            base.load_weights(weights)
        except (ValueError, OSError) as error:
            failure = error
    if failure is None:
        for warning in caught:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        return
    network = f"{base.name} without its top (include_top=False)"
    if alpha is not None:
        network += f" and alpha={alpha}"
    detail = " ".join(str(failure).split()).partition(" Target variable:")[0]
    if len(detail) > 400:
        detail = detail[:400] + "..."
    hint = (
        " (a weights file only fits the alpha it was saved with: set alpha to that one)"
        if alpha is not None
        else ""
    )
    raise ConfigError(
        f"expected a weights file of the same architecture, {network}. Received: "
        f"{weights!r}, which does not fit it: {detail}{hint}",
        f"{plugin_name}.weights",
    )


def application_body(
    plugin_name: str,
    meta: DatasetMetadata,
    network: str,
    weights: str | None,
    freeze_base: bool,
    dropout: float,
    alpha: float = 1.0,
) -> tuple[Any, Any]:
    """Input → keras.applications network (no top, average pooling) → dropout."""
    import keras

    spec = meta.feature_spec
    if len(spec.shape) != 3 or min(spec.shape[:2]) < MIN_SIZE:
        raise BatchError(
            f"{plugin_name}: expected images of shape (height, width, channels), at least "
            f"{MIN_SIZE}×{MIN_SIZE}. Received: samples of shape {spec.shape} (resize them with "
            "process.resize or process.decode_image(size=...))"
        )
    if weights is not None and spec.shape[2] != 3:
        raise BatchError(
            f"{plugin_name}: expected 3-channel images for pretrained weights. Received: "
            f"{spec.shape[2]} channel(s)"
        )
    inputs = keras.Input(spec.shape, name="features")
    options: dict[str, Any] = {
        "include_top": False,
        "weights": None,
        "input_shape": spec.shape,
        "pooling": "avg",
    }
    if network == "mobilenet_v2":
        base = keras.applications.MobileNetV2(alpha=alpha, **options)
    else:
        base = keras.applications.ResNet50(**options)
    if weights is not None:
        _load_weights(plugin_name, base, weights, alpha if network == "mobilenet_v2" else None)
    base.trainable = not freeze_base
    x = base(inputs, training=False if freeze_base else None)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    return inputs, x


def _application(
    network: str,
    weights: str | None,
    freeze_base: bool,
    dropout: float,
    head: str,
    *extra: Any,
) -> Operator[Batch, ModelPlan]:
    """Check the parameters shared by the keras.applications plugins and plan the model."""
    name = f"models.{network}"
    path = _weights(name, weights)
    fraction(name, "dropout", dropout, upper_open=True)
    check_head(name, head)
    if freeze_base and path is None:
        raise ConfigError(
            "expected weights to freeze. Received: freeze_base with random weights",
            f"{name}.freeze_base",
        )
    return plan(
        network,
        head,
        lambda meta: application_body(name, meta, network, path, freeze_base, dropout, *extra),
    )


@plugin("models.mobilenet_v2")
def mobilenet_v2(
    weights: str | None = None,
    alpha: float = 1.0,
    freeze_base: bool = False,
    dropout: float = 0.2,
    head: str = "auto",
) -> Operator[Batch, ModelPlan]:
    """MobileNetV2 (keras.applications) with a new head; random or local-file weights.

    Args:
        weights: ``None`` (random) or the path of a local weights file for the network
            without its top (never downloaded).
        alpha: width multiplier (0.35, 0.5, 0.75, 1.0, 1.3 or 1.4).
        freeze_base: train only the head (the network's weights stay as loaded).
        dropout: dropout rate before the head.
        head: ``"auto"``, ``"classification"`` or ``"regression"``.

    Example:
        >>> mobilenet_v2(alpha=0.35).params["weights"] is None
        True
    """
    if alpha not in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        raise ConfigError(
            f"expected one of 0.35, 0.5, 0.75, 1.0, 1.3, 1.4. Received: {alpha!r}",
            "models.mobilenet_v2.alpha",
        )
    return _application("mobilenet_v2", weights, freeze_base, dropout, head, alpha)


@plugin("models.resnet50")
def resnet50(
    weights: str | None = None,
    freeze_base: bool = False,
    dropout: float = 0.2,
    head: str = "auto",
) -> Operator[Batch, ModelPlan]:
    """ResNet50 (keras.applications) with a new head; random or local-file weights.

    Args:
        weights: ``None`` (random) or the path of a local weights file for the network
            without its top (never downloaded).
        freeze_base: train only the head.
        dropout: dropout rate before the head.
        head: ``"auto"``, ``"classification"`` or ``"regression"``.

    Example:
        >>> resnet50(weights="imagenet")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: models.resnet50.weights: expected None or the path ...
    """
    return _application("resnet50", weights, freeze_base, dropout, head)
