"""What a stage's input is made of: the plugins, parameters and files upstream of it.

A folder cache (``access.cache(path=...)``) records the lineage of the data it keeps and
is rebuilt when that lineage changes. A lineage holds rxpipe's version, the run's seed, and
the name and parameters of every stage before the one reading it; a parameter naming a file
or folder that exists stands for its size and modification time (for a folder: of every
file under it). It cannot see inside an operator that is not a registered plugin (a lambda,
a hand-made :class:`~rxpipe.Stage`), a parameter that is not plain data (a function, an
object), the code of a plugin, or a Python ``source``: such a lineage is unknown (``None``).

Example:
    >>> from rxpipe.operators import process
    >>> describe = lineage([process.normalize(scale=0.5)], seed=0)
    >>> describe()["stages"][0]["params"]["scale"]
    0.5
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Describe", "current_lineage", "difference", "lineage", "lineage_of"]

Describe = Callable[[], dict[str, Any] | None]
"""A lazy lineage: called (once, memoised) when a stage asks for it."""

_UNKNOWN = object()
_current: contextvars.ContextVar[Describe | None] = contextvars.ContextVar(
    "rxpipe_lineage", default=None
)


def lineage(stages: Sequence[Any], seed: int, known_source: bool = True) -> Describe:
    """The lineage of what the stage after ``stages`` receives, computed on first call.

    Args:
        stages: the operators before the stage, in order.
        seed: the run's seed.
        known_source: False if the stages read a Python ``source`` (an unknown lineage).
    """

    @functools.cache
    def describe() -> dict[str, Any] | None:
        return _describe(stages, seed) if known_source else None

    return describe


def _describe(stages: Sequence[Any], seed: int) -> dict[str, Any] | None:
    from rxpipe import __version__
    from rxpipe.registry import registry
    from rxpipe.stage import Stage

    plugins = set(registry.names())
    described = []
    for op in stages:
        if not isinstance(op, Stage) or op.name not in plugins:
            return None
        # a cache's folder is its output, not its input (it appears after the first pass)
        params = dict(op.params) if op.name == "access.cache" else _plain(op.params)
        if params is _UNKNOWN:
            return None
        described.append({"plugin": op.name, "params": params})
    return {"rxpipe": __version__, "seed": seed, "stages": described}


def _plain(value: Any) -> Any:
    """``value`` as JSON data, files and folders stood for by their state; or ``_UNKNOWN``."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _file_state(value) if value and os.path.exists(value) else value
    if isinstance(value, Mapping):
        items = {str(k): _plain(v) for k, v in value.items()}
        return _UNKNOWN if _UNKNOWN in items.values() else items
    if isinstance(value, list | tuple):
        values = [_plain(v) for v in value]
        return _UNKNOWN if any(v is _UNKNOWN for v in values) else values
    return _UNKNOWN


def _file_state(name: str) -> dict[str, Any]:
    path = Path(name)
    if path.is_file():
        stat = path.stat()
        return {"path": name, "bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}
    digest = hashlib.sha256()
    files = total = 0
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for file in sorted(names):
            full = os.path.join(root, file)
            try:
                stat = os.stat(full)
            except OSError:  # removed while we walk, a dangling link
                continue
            files += 1
            total += stat.st_size
            relative = os.path.relpath(full, path)
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"path": name, "files": files, "bytes": total, "digest": digest.hexdigest()[:16]}


def current_lineage() -> dict[str, Any] | None:
    """The lineage of the input of the pipeline stage being subscribed (``None``: unknown).

    Like :func:`~rxpipe.flow.current_tally`, call it while your operator is subscribed.
    Outside a pipeline (``Pipeline.run``, ``Pipeline.collect``), the lineage is unknown.
    """
    describe = _current.get()
    return None if describe is None else describe()


@contextmanager
def lineage_of(describe: Describe | None) -> Iterator[None]:
    """Make ``describe`` the current lineage within the ``with`` block."""
    token = _current.set(describe)
    try:
        yield
    finally:
        _current.reset(token)


def difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first difference between two lineages, for people; ``None`` if they are equal.

    Example:
        >>> a = {"seed": 0, "stages": [{"plugin": "process.normalize", "params": {"scale": 1}}]}
        >>> b = {"seed": 0, "stages": [{"plugin": "process.normalize", "params": {"scale": 2}}]}
        >>> difference(a, b)
        'process.normalize.scale: 1 → 2'
    """
    if old == new:
        return None
    before = old.get("stages", [])
    after = new.get("stages", [])
    names = [s.get("plugin") for s in before], [s.get("plugin") for s in after]
    if names[0] != names[1]:
        return f"stages before the cache: {names[0]} → {names[1]}"
    for a, b in zip(before, after, strict=True):
        found = _first_change(a.get("params"), b.get("params"), a["plugin"])
        if found is not None:
            return found
    for key in sorted((set(old) | set(new)) - {"stages"}):
        found = _first_change(old.get(key), new.get(key), key)
        if found is not None:
            return found
    return None


def _first_change(old: Any, new: Any, where: str) -> str | None:
    if old == new:
        return None
    if isinstance(old, dict) and isinstance(new, dict):
        if "path" in old and old.get("path") == new.get("path"):
            then, now = _state(old), _state(new)
            change = f"{then} → {now}" if then != now else "modified"
            return f"{where}: {old['path']!r} changed ({change})"
        for key in sorted(set(old) | set(new)):
            found = _first_change(old.get(key), new.get(key), f"{where}.{key}")
            if found is not None:
                return found
    return f"{where}: {old!r} → {new!r}"


def _state(value: dict[str, Any]) -> str:
    if "files" in value:
        return f"{value['files']} files, {value['bytes']} bytes"
    return f"{value['bytes']} bytes"
