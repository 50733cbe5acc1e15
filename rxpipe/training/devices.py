"""Device set-up for training: placement, GPU memory growth, precision policy, determinism."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rxpipe.errors import ConfigError

__all__ = [
    "check_device",
    "choose_device",
    "device_key",
    "dtype_policy",
    "op_determinism",
    "set_memory_growth",
]


def set_memory_growth() -> list[str]:
    """Let TensorFlow grow GPU memory as needed instead of taking it all at start.

    Must run before the GPUs are initialised; GPUs already initialised keep their mode.

    Returns:
        The GPUs switched to memory growth (empty on a machine without GPUs).
    """
    import tensorflow as tf

    switched = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
            switched.append(gpu.name)
        except RuntimeError:  # already initialised: the setting can no longer change
            pass
    return switched


def device_key(name: str) -> tuple[str, int]:
    """A device name as ``(type, index)``, for comparing names written differently.

    Example:
        >>> device_key("/device:gpu:1"), device_key("/CPU")
        (('GPU', 1), ('CPU', 0))
    """
    import tensorflow as tf

    spec = tf.DeviceSpec.from_string(name)
    return (spec.device_type or "").upper(), spec.device_index or 0


def choose_device(requested: str | None) -> str:
    """The device to train on: ``requested``, else the first GPU, else the CPU.

    Raises:
        ConfigError: if ``requested`` is not one of this machine's logical devices
            (TensorFlow would otherwise fall back to the CPU without a word).

    Example:
        >>> choose_device("/CPU:0")
        '/CPU:0'
    """
    import tensorflow as tf

    if requested is None:
        return "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"

    # TensorFlow would quietly place the ops on the CPU instead of a missing device.
    available = ["/" + d.name.removeprefix("/device:") for d in tf.config.list_logical_devices()]
    if device_key(requested) not in {device_key(name) for name in available}:
        raise ConfigError(
            f"device: expected one of this machine's devices {available}. Received: {requested!r}"
        )
    return requested


def configured_devices() -> list[str]:
    """This machine's logical devices as they will be, without starting TensorFlow's runtime.

    Each visible physical device gives one logical device, or as many as its logical
    device configuration says. Unlike ``tf.config.list_logical_devices()``, this leaves
    memory growth and the device configuration free to change.

    Example:
        >>> "/CPU:0" in configured_devices()
        True
    """
    import tensorflow as tf

    counts: dict[str, int] = {}
    for device in tf.config.get_visible_devices():
        logical = tf.config.get_logical_device_configuration(device)
        counts[device.device_type] = counts.get(device.device_type, 0) + len(logical or [None])
    return [f"/{kind}:{index}" for kind, count in counts.items() for index in range(count)]


def check_device(requested: str, path: str) -> None:
    """Raise a :class:`ConfigError` at ``path`` unless this machine will have ``requested``.

    Checked without starting TensorFlow's runtime (see :func:`configured_devices`), so a
    pipeline can check it when it is built; :func:`choose_device` checks again at run time.

    Example:
        >>> check_device("/GPU:7", "train.fit.device")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: train.fit.device: expected one of this machine's devices ...
    """
    available = configured_devices()
    if device_key(requested) not in {device_key(name) for name in available}:
        raise ConfigError(
            f"expected one of this machine's devices {available}. Received: {requested!r}",
            path,
        )


@contextmanager
def dtype_policy(precision: str | None) -> Iterator[None]:
    """Build models under a mixed-precision policy, restoring the global policy afterwards."""
    if precision is None:
        yield
        return
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextmanager
def op_determinism(enabled: bool) -> Iterator[None]:
    """Run with TensorFlow's deterministic op implementations (slower; same results)."""
    if not enabled:
        yield
        return
    # The public API can only switch determinism on; the framework module can also tell
    # whether it is on and switch it back off, so one deterministic run leaves no trace.
    from tensorflow.python.framework import config as framework_config

    was_enabled: Any = framework_config.is_op_determinism_enabled()
    framework_config.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            framework_config.disable_op_determinism()
