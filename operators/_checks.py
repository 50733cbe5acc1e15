"""Parameter checks shared by the plugins: fail at construction, naming plugin and parameter.

Every check raises :class:`~rxpipe.errors.ConfigError` with the path ``"kind.name.param"``,
so a message reads ``collect.csv.chunk_size: expected an int >= 1. Received: 0``; when the
plugin is built from a pipeline file, the registry re-labels the path with the file's
position (``plugins[0].chunk_size: ...``).

Example:
    >>> positive_int("access.batch", "size", 0)
    Traceback (most recent call last):
    ...
    rxpipe.errors.ConfigError: access.batch.size: expected an int >= 1. Received: 0
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rxpipe.batch import Split
from rxpipe.errors import ConfigError

T = TypeVar("T")

MISSING = ("", "NA", "N/A", "NaN", "nan", "null", "None")
"""The text cells that mean "missing" by default, once stripped (``collect.csv``, and the
``process.fill_missing`` and ``process.one_hot`` steps that must agree with it)."""

ON_ERROR = ("raise", "skip")


def fail(plugin: str, param: str, expected: str, received: Any) -> ConfigError:
    """The error for ``plugin``'s parameter ``param`` (returned, for ``raise fail(...)``)."""
    return ConfigError(f"expected {expected}. Received: {received!r}", f"{plugin}.{param}")


def positive_int(plugin: str, param: str, value: int) -> int:
    """``value`` if it is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(plugin, param, "an int >= 1", value)
    return value


def optional_positive_int(plugin: str, param: str, value: int | None) -> int | None:
    """``value`` if it is ``None`` or an int >= 1."""
    return None if value is None else positive_int(plugin, param, value)


def non_negative_int(plugin: str, param: str, value: int) -> int:
    """``value`` if it is an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(plugin, param, "an int >= 0", value)
    return value


def fraction(plugin: str, param: str, value: float, *, upper_open: bool = False) -> float:
    """``value`` if it is a number in [0, 1] (or [0, 1) with ``upper_open``)."""
    high_ok = value < 1.0 if upper_open else value <= 1.0
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value >= 0.0 and high_ok)
    ):
        raise fail(plugin, param, f"a number in [0, 1{')' if upper_open else ']'}", value)
    return float(value)


def one_of(plugin: str, param: str, value: T, options: Collection[T]) -> T:
    """``value`` if it is one of ``options``."""
    if value not in options:
        shown = ", ".join(repr(o) for o in options)
        raise fail(plugin, param, f"one of {shown}", value)
    return value


def on_error(plugin: str, value: str) -> str:
    """``value`` if it is ``"raise"`` or ``"skip"`` (what to do with a bad record)."""
    return one_of(plugin, "on_error", value, ON_ERROR)


def split_name(plugin: str, param: str, value: str) -> Split:
    """The :class:`~rxpipe.Split` named ``value``."""
    try:
        return Split(value)
    except ValueError:
        raise fail(plugin, param, f"one of {[s.value for s in Split]}", value) from None


def size2(plugin: str, param: str, value: Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from a pair of ints >= 1."""
    pair = tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise fail(plugin, param, "[height, width], two ints >= 1", list(pair))
    return int(pair[0]), int(pair[1])


def existing_path(plugin: str, param: str, value: str, *, kind: str = "any") -> Path:
    """``value`` as a path that exists (``kind``: ``"file"``, ``"dir"`` or ``"any"``)."""
    path = Path(value).expanduser()
    if not path.exists():
        where = "" if path.is_absolute() else f" in the current directory, {str(Path.cwd())!r}"
        raise ConfigError(
            f"expected an existing {'directory' if kind == 'dir' else 'file'}. "
            f"Received: {value!r}, which does not exist{where}",
            f"{plugin}.{param}",
        )
    if kind == "dir" and not path.is_dir():
        raise ConfigError(
            f"expected a directory. Received: {value!r}, which is a file", f"{plugin}.{param}"
        )
    if kind == "file" and not path.is_file():
        raise ConfigError(
            f"expected a file. Received: {value!r}, which is a directory", f"{plugin}.{param}"
        )
    return path


def names(plugin: str, param: str, value: Sequence[str] | None) -> tuple[str, ...] | None:
    """``value`` as a tuple of distinct, non-empty strings (or ``None``)."""
    if value is None:
        return None
    items = tuple(value)
    if isinstance(value, str) or any(not isinstance(v, str) or not v for v in items):
        raise fail(plugin, param, "a list of non-empty strings", value)
    if len(set(items)) != len(items):
        raise fail(plugin, param, "distinct names", list(items))
    return items


def missing_strings(plugin: str, value: Sequence[str]) -> tuple[str, ...]:
    """``value`` as a tuple of strings (the text values that mean "missing").

    Example:
        >>> missing_strings("process.one_hot", ["", "NA"])
        ('', 'NA')
    """
    items = tuple(value) if not isinstance(value, str) else None
    if items is None or any(not isinstance(v, str) for v in items):
        raise ConfigError(
            f'expected a list of strings, e.g. ["", "NA"]. Received: {value!r}',
            f"{plugin}.missing",
        )
    return items
