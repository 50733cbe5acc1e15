"""Event fields as plain JSON data, for events.jsonl and the log lines."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any


def plain(value: Any, *, finite: bool = True) -> Any:
    """``value`` as plain Python data that ``json.dumps`` writes as strict JSON.

    Numpy scalars and arrays become numbers and lists (not their text), mappings dicts with
    text keys, tuples and sets lists, paths text; anything else unknown its ``str``. With
    ``finite``, NaN and infinities become ``None`` (JSON ``null``): JSON has no token for
    them, and ``NaN``/``Infinity`` break strict parsers (``JSON.parse``, Go, serde).

    Args:
        value: an event field, e.g. an :class:`~rxpipe.events.EpochEnded`'s ``logs``.
        finite: write non-finite floats as ``None`` (for JSON); ``False`` keeps them
            (for the console's lines).

    Returns:
        The value made of dicts, lists, str, int, float, bool and None only.

    Example:
        >>> import numpy as np
        >>> plain({"loss": np.float32(0.5), "val_loss": float("nan"), "ids": (np.int64(4),)})
        {'loss': 0.5, 'val_loss': None, 'ids': [4]}
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):  # np.float64 too
        return None if finite and not math.isfinite(value) else float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): plain(item, finite=finite) for key, item in value.items()}
    if isinstance(value, list | tuple | AbstractSet):
        return [plain(item, finite=finite) for item in value]
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    to_list = getattr(value, "tolist", None)  # numpy scalars and arrays, without numpy
    if callable(to_list):
        return plain(to_list(), finite=finite)
    return str(value)
