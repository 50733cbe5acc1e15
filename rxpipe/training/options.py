"""Training options, validated at construction (so a pipeline fails before it starts)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from rxpipe.errors import ConfigError

PRECISIONS = ("mixed_float16", "mixed_bfloat16")
STRATEGIES = ("mirrored", "multi_worker")


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _objects(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _positive(name: str) -> Any:
    def check(_: Any, __: Any, value: Any) -> None:
        if value is not None and value < 1:
            raise ConfigError(f"{name}: expected an int >= 1. Received: {value!r}")

    return check


def _one_of(name: str, choices: tuple[str, ...]) -> Any:
    def check(_: Any, __: Any, value: Any) -> None:
        if value is not None and value not in choices:
            raise ConfigError(f"{name}: expected None or one of {choices}. Received: {value!r}")

    return check


@attrs.frozen
class TrainOptions:
    """How ``train.fit`` trains. See :func:`rxpipe.operators.train.fit` for each option."""

    epochs: int = attrs.field(default=10, validator=_positive("epochs"))
    batch_size: int | None = attrs.field(default=None, validator=_positive("batch_size"))
    optimizer: Any = "adam"
    learning_rate: float = 1e-3
    loss: str | None = None
    metrics: tuple[str, ...] = attrs.field(default=("accuracy",), converter=_strings)
    prefetch: int = attrs.field(default=4, validator=_positive("prefetch"))
    validate: bool = True
    progress_every_s: float = 0.25
    callbacks: tuple[Any, ...] = attrs.field(default=(), converter=_objects)
    patience: int | None = attrs.field(default=None, validator=_positive("patience"))
    monitor: str = "val_loss"
    min_delta: float = 0.0
    restore_best_weights: bool = True
    checkpoint: bool = True
    precision: str | None = attrs.field(default=None, validator=_one_of("precision", PRECISIONS))
    jit_compile: bool = False
    device: str | None = None
    memory_growth: bool = False
    deterministic: bool = False
    strategy: str | None = attrs.field(default=None, validator=_one_of("strategy", STRATEGIES))
    steps_per_epoch: int | None = attrs.field(default=None, validator=_positive("steps_per_epoch"))

    def __attrs_post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ConfigError(
                f"learning_rate: expected a number > 0. Received: {self.learning_rate!r}"
            )
        if self.device is not None and not self.device.upper().lstrip("/").startswith(
            ("CPU", "GPU", "TPU", "DEVICE:")
        ):
            raise ConfigError(
                f"device: expected a TensorFlow device such as '/GPU:0' or '/CPU:0'. "
                f"Received: {self.device!r}"
            )
