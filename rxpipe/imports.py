"""Python objects named in pipeline files: ``"package.module:name"`` import paths.

A pipeline file cannot hold a Python function or class, so plugins that take one (a model
of your own for ``models.keras``, a loss or metric function for ``train.fit``) also take
its import path, and a pipeline built in Python writes such objects to its run's
``pipeline.toml`` as import paths when they can be imported again (see
:func:`import_path_of`), so the run can be resumed from the file.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from rxpipe.errors import ConfigError

__all__ = ["import_object", "import_path_of", "is_import_path"]

_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def is_import_path(value: object) -> bool:
    """Whether ``value`` is a ``"package.module:name"`` string.

    Example:
        >>> is_import_path("mypackage.nets:build"), is_import_path("mse")
        (True, False)
    """
    return isinstance(value, str) and _IMPORT_PATH.fullmatch(value) is not None


def import_path_of(value: object) -> str | None:
    """The import path that gives ``value`` back, or ``None`` if there is none.

    Functions and classes defined at the top level of an importable module have one;
    objects, lambdas, nested functions and anything defined in ``__main__`` (a script
    run directly) do not.

    Example:
        >>> import json
        >>> import_path_of(json.dumps), import_path_of(lambda: 0)
        ('json:dumps', None)
    """
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__":
        return None
    path = f"{module}:{qualname}"
    if not is_import_path(path):
        return None  # "<lambda>", "f.<locals>.g"
    found = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return path if found is value else None


def import_object(path: str, field: str) -> Any:
    """The object ``"package.module:name"`` names (``name`` may be dotted: ``Class.attr``).

    The module is found as ``python -c`` would find it: in the current directory first,
    then in the installed packages.

    Raises:
        ConfigError: naming ``field``, for a string of another form, a module that is not
            found or fails to import (the error it raised, chained), or a name the module
            does not define.

    Example:
        >>> import_object("json:dumps", "plugins[3].model").__name__
        'dumps'
        >>> import_object("json:dump_s", "plugins[3].model")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: plugins[3].model: expected 'json' to define 'dump_s'. ...
    """
    if not is_import_path(path):
        raise ConfigError(
            f"expected an import path 'package.module:name'. Received: {path!r}", field
        )
    module_name, _, attribute = path.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # as `python -c` does; the rxpipe script alone would not
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        missing = getattr(error, "name", None) or ""
        if isinstance(error, ModuleNotFoundError) and (
            missing == module_name or module_name.startswith(f"{missing}.")
        ):
            raise ConfigError(
                f"expected an importable module {module_name!r} (in {cwd!r} or the installed "
                f"packages). Received: {path!r}, and there is no module {missing!r}",
                field,
            ) from None
        where = ""
        if isinstance(error, SyntaxError) and error.filename:
            where = f" ({error.filename}, line {error.lineno})"
        raise ConfigError(
            f"expected the module {module_name!r} to import. Received: {path!r}, whose module "
            f"raised {type(error).__name__}: {error}{where}",
            field,
        ) from error
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ConfigError(
                f"expected {module_name!r} to define {attribute!r}. Received: {path!r}, "
                f"and {getattr(found, '__name__', module_name)!r} has no {part!r}",
                field,
            )
        found = getattr(found, part)
    return found
