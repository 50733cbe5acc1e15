"""Pipeline files (TOML or JSON), validated into attrs classes with errors naming the field.

Values are checked strictly against the declared types (:func:`structure_value`): a
pipeline file that says ``epochs = 3.5`` or ``epochs = "3"`` is an error, not an int.

A pipeline file::

    [pipeline]
    name = "digits"
    seed = 0

    [[plugins]]
    use = "collect.digits"

    [[plugins]]
    use = "train.fit"
    epochs = 10

Every ``[[plugins]]`` table names a registered plugin with ``use``; its other keys are
the plugin's parameters, checked against the factory's signature and type hints.
"""

from __future__ import annotations

import enum
import json
import numbers
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from rxpipe.errors import ConfigError

__all__ = ["PipelineConfig", "PluginSpec", "apply_overrides", "load_config", "structure_value"]


@attrs.frozen
class PluginSpec:
    """One ``[[plugins]]`` entry: the plugin's registered name and its parameters."""

    use: str
    params: Mapping[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The entry as it appears in a pipeline file."""
        return {"use": self.use, **self.params}


@attrs.frozen
class PipelineConfig:
    """A validated pipeline file.

    Attributes:
        name: the pipeline's name (names the run directory ``runs/<name>/...``).
        seed: base random seed of every stage.
        runs_dir: where run directories are created.
        plugins: the stages, in order.
    """

    name: str
    plugins: tuple[PluginSpec, ...]
    seed: int = 0
    runs_dir: str = "runs"

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a pipeline-file dict (what ``pipeline.toml`` records)."""
        return {
            "pipeline": {"name": self.name, "seed": self.seed, "runs_dir": self.runs_dir},
            "plugins": [p.to_dict() for p in self.plugins],
        }


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("collections.abc.", "")


def structure_value(value: Any, annotation: Any, path: str, *, python: bool = False) -> Any:
    """Check ``value`` against a type hint strictly and convert containers.

    Ints are not silently truncated, strings are not taken as numbers: the value must
    already be of the declared type (an int is accepted where a float is expected; a
    list where a tuple is). Lists become tuples where the hint says tuple.

    With ``python`` (a value given in Python code, not read from a file), NumPy numbers
    count as ints and floats, ``os.PathLike`` as a string and arrays as sequences.

    Raises:
        ConfigError: naming ``path``, the expected type and the received value.

    Example:
        >>> structure_value(3, int, "epochs")
        3
        >>> structure_value("ten", int, "plugins[3].epochs")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: plugins[3].epochs: expected int. Received: 'ten' (str)
    """

    def fail() -> typing.NoReturn:
        raise ConfigError(f"expected {_type_name(annotation)}. Received: {_describe(value)}", path)

    if annotation is Any or annotation is object:
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return structure_value(value, option, path, python=python)
            except ConfigError:
                continue
        fail()
    if origin is typing.Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        fail()
    if annotation is None or annotation is type(None):
        if value is None:
            return None
        fail()
    if annotation is bool:
        if isinstance(value, bool):
            return value
        fail()
    if annotation is int:
        if isinstance(value, numbers.Integral if python else int) and not isinstance(value, bool):
            return value
        fail()
    if annotation is float:
        if isinstance(value, numbers.Real if python else int | float) and not isinstance(
            value, bool
        ):
            return float(value)
        fail()
    if annotation is str:
        if isinstance(value, str) or (python and isinstance(value, os.PathLike)):
            return value
        fail()
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            fail()
    if origin in (tuple, list, Sequence) or annotation in (tuple, list):
        if python and type(value).__name__ == "ndarray":
            return value
        if isinstance(value, str) or not isinstance(value, Sequence):
            fail()
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                fail()
            return tuple(
                structure_value(v, a, f"{path}[{i}]", python=python)
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item_type = args[0] if args else Any
        items = [
            structure_value(v, item_type, f"{path}[{i}]", python=python)
            for i, v in enumerate(value)
        ]
        return items if origin is list else tuple(items)
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        if not isinstance(value, Mapping):
            fail()
        key_type, value_type = args or (Any, Any)
        return {
            structure_value(k, key_type, path, python=python): structure_value(
                v, value_type, f"{path}.{k}", python=python
            )
            for k, v in value.items()
        }
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        fail()
    return value  # an annotation we cannot check (a Protocol, a callable type, ...)


def _structure_plugins(raw: Any) -> tuple[PluginSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            f"expected a non-empty list of [[plugins]] tables. Received: {_describe(raw)}",
            "plugins",
        )
    specs = []
    for index, entry in enumerate(raw):
        where = f"plugins[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"expected a table. Received: {_describe(entry)}", where)
        params = dict(entry)
        use = params.pop("use", None)
        if not isinstance(use, str):
            raise ConfigError(
                f'expected a plugin name string, e.g. use = "collect.digits". '
                f"Received: {_describe(use)}",
                f"{where}.use",
            )
        specs.append(PluginSpec(use, params))
    return tuple(specs)


PIPELINE_NAME = r"(?=.*[\w-])[\w.-]+"
"""A pipeline's name: letters, digits, '_', '-' and '.', not only dots (it names its runs'
directory, ``runs/<name>/``)."""

SEEDS = range(2**32)
"""The seeds every random generator rxpipe seeds accepts (NumPy's legacy one is 32-bit)."""


def check_name(name: object, field: str) -> str:
    """``name`` if it is a valid pipeline name (:data:`PIPELINE_NAME`), else a ConfigError."""
    if not isinstance(name, str) or not re.fullmatch(PIPELINE_NAME, name):
        raise ConfigError(
            "expected letters, digits, '_', '-' or '.', not only dots (it names the run "
            f"directory). Received: {name!r}",
            field,
        )
    return name


def check_seed(seed: object, field: str) -> int:
    """``seed`` as an int if it is an integer in :data:`SEEDS` (NumPy's too), else a ConfigError."""
    if not isinstance(seed, bool) and isinstance(seed, numbers.Integral):
        value = int(seed)  # an int: range's membership test is then arithmetic
        if value in SEEDS:
            return value
    raise ConfigError(f"expected an integer from 0 to 2**32 - 1. Received: {seed!r}", field)


def parse_config(data: Mapping[str, Any], source: str = "<dict>") -> PipelineConfig:
    """Validate a pipeline-file dict into a :class:`PipelineConfig`.

    Raises:
        ConfigError: naming the field path and ``source``.
    """
    unknown = sorted(set(data) - {"pipeline", "plugins"})
    if unknown:
        raise ConfigError(
            f"unknown top-level key(s) {unknown} in {source}; expected [pipeline] and [[plugins]]"
        )
    header = data.get("pipeline", {})
    if not isinstance(header, Mapping):
        raise ConfigError(f"expected a table. Received: {_describe(header)}", "pipeline")
    fields = {k: v for k, v in typing.get_type_hints(PipelineConfig).items() if k != "plugins"}
    for key, value in header.items():
        if key not in fields:
            raise ConfigError(
                f"unknown key {key!r}; expected one of: {', '.join(sorted(fields))}",
                "pipeline",
            )
        structure_value(value, fields[key], f"pipeline.{key}")
    header = dict(header)
    if "name" not in header:  # the file's name, made a valid pipeline name
        stem = Path(source).stem if source != "<dict>" else ""
        name = re.sub(r"[^\w.-]+", "_", stem).strip("_")
        header["name"] = name if re.fullmatch(PIPELINE_NAME, name) else "pipeline"
    else:
        check_name(header["name"], "pipeline.name")
    if "seed" in header:
        check_seed(header["seed"], "pipeline.seed")
    return PipelineConfig(plugins=_structure_plugins(data.get("plugins")), **header)


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline file (``.toml`` or ``.json``).

    Raises:
        ConfigError: for a missing file, a syntax error, or an invalid field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is no syntax error
    except OSError as error:
        raise ConfigError(f"cannot read pipeline file {str(path)!r}: {error.strerror}") from error
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(
                f"pipeline file {str(path)!r}: expected a .toml or .json file. "
                f"Received: {path.suffix or 'no suffix'!r}"
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"pipeline file {str(path)!r} is not valid: {error}") from error
    if not isinstance(data, Mapping):
        raise ConfigError(f"pipeline file {str(path)!r}: expected a table at the top level")
    return parse_config(data, str(path))


def _parse_literal(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(config: PipelineConfig, overrides: Sequence[str]) -> PipelineConfig:
    """Apply ``--set TARGET.PARAM=VALUE`` overrides.

    ``TARGET`` is ``pipeline``, a plugin's full name (``train.fit``), its kind (``train``,
    when only one plugin has that kind) or its index (``plugins[3]``). ``VALUE`` is read
    as a TOML value (``3``, ``0.01``, ``"adam"``, ``[1, 2]``), or taken as a plain string.

    Raises:
        ConfigError: for a malformed override or a target that matches no plugin.

    Example:
        >>> cfg = parse_config({"plugins": [{"use": "train.fit", "epochs": 5}]})
        >>> apply_overrides(cfg, ["train.epochs=2"]).plugins[0].params["epochs"]
        2
    """
    plugins = list(config.plugins)
    header = {"name": config.name, "seed": config.seed, "runs_dir": config.runs_dir}
    for override in overrides:
        key, eq, raw = override.partition("=")
        target, dot, param = key.strip().rpartition(".")
        if not eq or not dot or not param:
            raise ConfigError(
                "--set: expected TARGET.PARAM=VALUE, e.g. train.fit.epochs=3. "
                f"Received: {override!r}"
            )
        value = _parse_literal(raw.strip())
        if target == "pipeline":
            header[param] = value
            continue
        if target.startswith("plugins[") and target.endswith("]") and target[8:-1].isdigit():
            matches = [int(target[8:-1])] if int(target[8:-1]) < len(plugins) else []
        else:
            matches = [i for i, p in enumerate(plugins) if p.use == target]
            if not matches:
                matches = [i for i, p in enumerate(plugins) if p.use.split(".")[0] == target]
        if len(matches) != 1:
            names = ", ".join(p.use for p in plugins)
            found = "no plugin" if not matches else f"{len(matches)} plugins"
            raise ConfigError(
                f"--set {override!r}: expected {target!r} to name one plugin (one of: {names}) "
                f"or 'pipeline'. Received: it matches {found}"
            )
        spec = plugins[matches[0]]
        plugins[matches[0]] = PluginSpec(spec.use, {**spec.params, param: value})
    return parse_config({"pipeline": header, "plugins": [p.to_dict() for p in plugins]})
