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

import contextlib
import datetime
import difflib
import enum
import json
import numbers
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from rxpipe.errors import ConfigError, describe_value

__all__ = [
    "PipelineConfig",
    "PluginSpec",
    "apply_overrides",
    "load_config",
    "naming_origin",
    "structure_value",
]


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
        raise ConfigError(
            f"expected {_type_name(annotation)}. Received: {describe_value(value)}", path
        )

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


_MISSING: Any = object()  # a key the file does not have (not even as null)


def _structure_plugins(raw: Any) -> tuple[PluginSpec, ...]:
    if not isinstance(raw, list) or not raw:
        received = "no [[plugins]] table" if raw is _MISSING else describe_value(raw)
        raise ConfigError(
            f"expected a non-empty list of [[plugins]] tables. Received: {received}", "plugins"
        )
    specs = []
    for index, entry in enumerate(raw):
        where = f"plugins[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"expected a table. Received: {describe_value(entry)}", where)
        params = dict(entry)
        use = params.pop("use", _MISSING)
        if not isinstance(use, str):
            received = "no 'use' key" if use is _MISSING else describe_value(use)
            raise ConfigError(
                f'expected a plugin name string, e.g. use = "collect.digits". Received: {received}',
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


_HEADER_FIELDS: Mapping[str, Any] = {
    key: hint for key, hint in typing.get_type_hints(PipelineConfig).items() if key != "plugins"
}
"""The keys of ``[pipeline]`` and their types."""

_TOP_LEVEL = {"pipeline": "[pipeline]", "plugins": "[[plugins]]"}
"""The keys of a pipeline file's top level, as a TOML file writes them."""


def _unknown_keys(unknown: Sequence[object], known: Mapping[str, str]) -> str:
    """The unknown keys for an error message, each with the closest known one (ignoring case).

    ``known`` maps each known key to how the message shows it.

    Example:
        >>> _unknown_keys(["nme", "colour"], {"name": "'name'", "seed": "'seed'"})
        "'nme' (did you mean 'name'?), 'colour'"
    """
    shown = []
    for key in unknown:
        close = difflib.get_close_matches(str(key).lower(), list(known), n=1, cutoff=0.6)
        shown.append(f"{key!r}" + (f" (did you mean {known[close[0]]}?)" if close else ""))
    return ", ".join(shown)


def _check_header_value(key: str, value: object) -> None:
    """Raise a ConfigError naming ``pipeline.<key>`` unless ``value`` is valid for it."""
    structure_value(value, _HEADER_FIELDS[key], f"pipeline.{key}")
    if key == "name":
        check_name(value, "pipeline.name")
    elif key == "seed":
        check_seed(value, "pipeline.seed")


def _in_file(error: ConfigError, source: str) -> ConfigError:
    """``error`` naming the pipeline file ``source`` too (after the field path, if any).

    Example:
        >>> error = ConfigError("expected int. Received: 'x' (str)", "pipeline.seed")
        >>> print(_in_file(error, "p.toml"))
        pipeline.seed: expected int. Received: 'x' (str) in pipeline file 'p.toml'
    """
    if not error.path:
        return ConfigError(f"pipeline file {source!r}: {error}")
    message = str(error).removeprefix(f"{error.path}: ")
    return ConfigError(f"{message} in pipeline file {source!r}", error.path)


def parse_config(data: Mapping[str, Any], source: str = "<dict>") -> PipelineConfig:
    """Validate a pipeline-file dict into a :class:`PipelineConfig`.

    Args:
        data: the pipeline file's content.
        source: the file it was read from (names the pipeline when ``[pipeline]`` has no
            name, and every error names it); ``"<dict>"`` for data from no file.

    Raises:
        ConfigError: naming the field path (and ``source``, if a file).

    Example:
        >>> parse_config({"pipeline": {"nme": "x"}, "plugins": []}, "p.toml")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: pipeline: expected keys among name, runs_dir, seed. Received: 'nme' (did you mean 'name'?) in pipeline file 'p.toml'
    """  # noqa: E501
    try:
        return _parse_config(data, source)
    except ConfigError as error:
        if source == "<dict>":
            raise
        raise _in_file(error, source).with_traceback(error.__traceback__) from None


def _parse_config(data: Mapping[str, Any], source: str) -> PipelineConfig:
    unknown = [key for key in data if key not in _TOP_LEVEL]
    if unknown:
        raise ConfigError(
            "expected only the tables [pipeline] and [[plugins]] at the top level. "
            f"Received: {_unknown_keys(unknown, _TOP_LEVEL)}"
        )
    header = data.get("pipeline", {})
    if not isinstance(header, Mapping):
        raise ConfigError(f"expected a table. Received: {describe_value(header)}", "pipeline")
    unknown = [key for key in header if key not in _HEADER_FIELDS]
    if unknown:
        raise ConfigError(
            f"expected keys among {', '.join(sorted(_HEADER_FIELDS))}. "
            f"Received: {_unknown_keys(unknown, {k: repr(k) for k in _HEADER_FIELDS})}",
            "pipeline",
        )
    for key, value in header.items():
        _check_header_value(key, value)
    header = dict(header)
    if "name" not in header:  # the file's name, made a valid pipeline name
        stem = Path(source).stem if source != "<dict>" else ""
        name = re.sub(r"[^\w.-]+", "_", stem).strip("_")
        header["name"] = name if re.fullmatch(PIPELINE_NAME, name) else "pipeline"
    plugins = _structure_plugins(data.get("plugins", _MISSING))
    return PipelineConfig(plugins=plugins, **header)


def _unique_keys(source: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A ``json`` object hook refusing a key given twice in one object (as TOML does)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                keys = ", ".join(dict.fromkeys(repr(k) for k, _ in pairs))
                raise ConfigError(
                    f"pipeline file {source!r}: expected each key once in a JSON object. "
                    f"Received: {key!r} twice, in the object with keys {keys}"
                )
            result[key] = value
        return result

    return hook


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline file (``.toml`` or ``.json``, in UTF-8).

    Raises:
        ConfigError: for a missing file, text that is not UTF-8, a syntax error, a key
            given twice, or an invalid field, naming the file.

    Example:
        >>> load_config("missing.toml")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: pipeline file 'missing.toml': expected a readable file. Received: No such file or directory
    """  # noqa: E501
    path = Path(path)
    where = f"pipeline file {str(path)!r}"
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ConfigError(
            f"{where}: expected a .toml or .json file. Received: {path.suffix or 'no suffix'!r}"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is no syntax error
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise ConfigError(
            f"{where}: expected UTF-8 text. Received: byte 0x{error.object[error.start]:02x} "
            f"on line {line}"
        ) from None
    except OSError as error:
        raise ConfigError(
            f"{where}: expected a readable file. Received: {error.strerror or error}"
        ) from error
    try:
        if suffix == ".json":
            data = json.loads(text, object_pairs_hook=_unique_keys(str(path)))
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(
            f"{where}: expected valid {suffix[1:].upper()}. Received: {error}"
        ) from error
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: expected a JSON object at the top level. Received: {type(data).__name__}"
        )
    return parse_config(data, str(path))


_NEEDS_TOML = ('"', "'", "[", "{")
"""How a ``--set`` value that must be valid TOML starts (a string, a list, a table)."""


def _parse_literal(raw: str, key: str, override: str) -> Any:
    """The value of ``--set KEY=RAW`` (see :func:`apply_overrides`)."""
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError as error:
        if not raw.startswith(_NEEDS_TOML):
            return raw  # a bare word is a string
        problem = re.sub(
            r"\(at line 1, column (\d+)\)", lambda m: f"(at column {int(m[1]) - 4})", str(error)
        )
        problem = re.sub(r" \((at [^)]*)\)$", r" \1", problem).replace("end of document", "the end")
        if problem.endswith("at the end") or problem.startswith(("Unclosed", "Unterminated")):
            hint = (
                "a list, table or string needs its closing bracket or quote (put an override "
                "with spaces in single quotes, or the shell splits it)"
            )
        else:
            hint = (
                'strings inside lists and tables need quotes, e.g. ["accuracy"] (put the '
                "override in single quotes, so that the shell keeps them)"
            )
        raise ConfigError(
            f"--set {override!r}: expected a TOML value. Received: {raw!r}, which is not "
            f"valid TOML ({problem}); {hint}"
        ) from None
    if len(parsed) != 1:  # raw went on to a new line with more keys
        if raw.startswith(_NEEDS_TOML):
            raise ConfigError(
                f"--set {override!r}: expected one TOML value. Received: {raw!r}, which goes "
                "on with more lines after the value"
            )
        return raw
    value = parsed["v"]
    if isinstance(value, datetime.date | datetime.time):
        return raw  # a name or a path that looks like a date is text
    return value


def _find_plugin(plugins: Sequence[PluginSpec], key: str, override: str) -> tuple[int, str]:
    """The index of the plugin ``--set KEY=...`` targets and the parameter it sets.

    Raises:
        ConfigError: unless ``KEY`` is ``TARGET.PARAM`` with ``TARGET`` naming one plugin.
    """
    where = f"--set {override!r}"
    target, _, param = key.rpartition(".")
    by_index = re.fullmatch(r"plugins\[(\d+)\]", target)
    if by_index:
        index = int(by_index[1])
        if index < len(plugins):
            return index, param
        raise ConfigError(
            f"{where}: expected plugins[N] with N from 0 to {len(plugins) - 1}. "
            f"Received: plugins[{index}]"
        )
    matches = [i for i, p in enumerate(plugins) if p.use == target]
    if not matches:
        matches = [i for i, p in enumerate(plugins) if p.use.split(".")[0] == target]
    if len(matches) == 1:
        return matches[0], param
    if matches:
        listed = ", ".join(f"plugins[{i}] ({plugins[i].use})" for i in matches)
        raise ConfigError(
            f"{where}: expected {target!r} to name one plugin. Received: it matches {listed}; "
            f"name one as plugins[N].PARAM, e.g. --set 'plugins[{matches[0]}].{param}=...'"
        )
    nested = re.match(r"plugins\[(\d+)\]\.", key)
    if nested and int(nested[1]) < len(plugins):
        index, head = int(nested[1]), nested[0][:-1]
    else:
        heads = [(i, p.use) for i, p in enumerate(plugins) if key.startswith(p.use + ".")]
        index, head = max(heads, key=lambda h: len(h[1]), default=(-1, ""))
    if head:
        first, *rest = key[len(head) + 1 :].split(".")
        raise ConfigError(
            f"{where}: expected TARGET.PARAM=VALUE with PARAM a parameter of {head}. "
            f"Received: {'.'.join(rest)!r}, a key nested in {first!r}; nested keys are not "
            f"supported: give the whole value as an inline TOML table, "
            f"--set '{head}.{first}={{key = value, ...}}'"
        )
    kinds = dict.fromkeys(p.use.split(".")[0] for p in plugins)
    targets = {t: repr(t) for t in ["pipeline", *(p.use for p in plugins), *kinds]}
    raise ConfigError(
        f"{where}: expected TARGET to be 'pipeline', a plugin of the pipeline "
        f"({', '.join(dict.fromkeys(p.use for p in plugins))}), a kind of one "
        f"({', '.join(kinds)}) or plugins[N]. Received: {_unknown_keys([target], targets)}, "
        "which matches no plugin"
    )


def apply_overrides(config: PipelineConfig, overrides: Sequence[str]) -> PipelineConfig:
    """Apply ``--set TARGET.PARAM=VALUE`` overrides.

    ``TARGET`` is ``pipeline``, a plugin's full name (``train.fit``), its kind (``train``,
    when only one plugin has that kind) or its index (``plugins[3]``, for a plugin used
    twice). ``PARAM`` is one parameter: a key nested in a parameter's table is not
    supported, give the whole table instead (``--set 'train.fit.optimizer={...}'``).

    ``VALUE`` is a TOML value: ``3``, ``0.01``, ``true``, ``"adam"``, ``["accuracy"]``,
    ``{class_name = "SGD"}``. A bare word (``adam``, ``data/train.csv``) or one that reads
    as a TOML date or time (``2024-01-01``) is taken as a string; a value starting with a
    quote or a bracket must be valid TOML (strings inside lists need quotes, so put the
    whole override in single quotes: ``--set 'train.fit.metrics=["accuracy"]'``).

    Raises:
        ConfigError: for a malformed override or value, a target that matches no plugin
            or several, or an invalid ``pipeline`` value, naming the override.

    Example:
        >>> cfg = parse_config({"plugins": [{"use": "train.fit", "epochs": 5}]})
        >>> apply_overrides(cfg, ["train.epochs=2"]).plugins[0].params["epochs"]
        2
        >>> apply_overrides(cfg, ["train.metrics=[accuracy]"])
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: --set 'train.metrics=[accuracy]': expected a TOML value. Received: '[accuracy]', which is not valid TOML (Invalid value at column 2); strings inside lists and tables need quotes, e.g. ["accuracy"] (put the override in single quotes, so that the shell keeps them)
    """  # noqa: E501
    plugins = list(config.plugins)
    header = {"name": config.name, "seed": config.seed, "runs_dir": config.runs_dir}
    for override in overrides:
        key, eq, raw = override.partition("=")
        key, raw = key.strip(), raw.strip()
        target, dot, param = key.rpartition(".")
        if not eq or not dot or not param or not target:
            raise ConfigError(
                "--set: expected TARGET.PARAM=VALUE, e.g. train.fit.epochs=3. "
                f"Received: {override!r}"
            )
        value = _parse_literal(raw, key, override)
        if key.startswith("pipeline."):
            _set_header(header, key.removeprefix("pipeline."), value, raw, override)
            continue
        index, param = _find_plugin(plugins, key, override)
        spec = plugins[index]
        plugins[index] = PluginSpec(spec.use, {**spec.params, param: value})
    return parse_config({"pipeline": header, "plugins": [p.to_dict() for p in plugins]})


@contextlib.contextmanager
def naming_origin(
    config: PipelineConfig, source: str | Path, overrides: Sequence[str] = ()
) -> Iterator[None]:
    """Name where a plugin's parameters came from in a :class:`ConfigError` raised inside.

    Plugins check their parameters when they are checked or built, after the file was
    read and the ``--set`` overrides applied, so their errors name only the field
    (``plugins[6].epochs``). Inside this context such an error also names the pipeline
    file ``source``, or the ``--set`` override that gave the value. The error keeps its
    type and attributes; only its message grows.

    Args:
        config: the configuration read from ``source`` with ``overrides`` applied.
        source: the pipeline file.
        overrides: the ``--set TARGET.PARAM=VALUE`` overrides applied to it.

    Example:
        >>> config = parse_config({"plugins": [{"use": "train.fit", "epochs": 5}]})
        >>> config = apply_overrides(config, ["train.epochs=-1"])
        >>> with naming_origin(config, "p.toml", ["train.epochs=-1"]):
        ...     raise ConfigError("expected an int >= 1. Received: -1", "plugins[0].epochs")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: plugins[0].epochs: expected an int >= 1. Received: -1 (set by --set 'train.epochs=-1')
    """  # noqa: E501
    try:
        yield
    except ConfigError as error:
        field = re.match(r"plugins\[(\d+)\](?:\.(\w+))?", error.path)
        if field is None or str(source) in str(error):
            raise
        target = (int(field[1]), field[2])
        origin = f"in pipeline file {str(source)!r}"
        for override in reversed(overrides):
            key = override.partition("=")[0].strip()
            if (
                not key.startswith("pipeline.")
                and _find_plugin(config.plugins, key, override) == target
            ):
                origin = f"(set by --set {override!r})"
                break
        error.args = (f"{error} {origin}",)
        raise


def _set_header(header: dict[str, Any], param: str, value: object, raw: str, override: str) -> None:
    """Set ``[pipeline]``'s ``param`` for ``--set pipeline.PARAM=RAW``, checking it first."""
    if param not in _HEADER_FIELDS:
        known = {k: repr(k) for k in _HEADER_FIELDS}
        raise ConfigError(
            f"--set {override!r}: expected pipeline.PARAM with PARAM among "
            f"{', '.join(sorted(_HEADER_FIELDS))}. Received: {_unknown_keys([param], known)}"
        )
    try:
        _check_header_value(param, value)
    except ConfigError as error:
        message = str(error).removeprefix(f"{error.path}: ")
        hint = ""
        if _HEADER_FIELDS[param] is str and not isinstance(value, str):
            hint = f"; to give text, quote it: --set 'pipeline.{param}=\"{raw}\"'"
        raise ConfigError(f"{message} from --set {override!r}{hint}", error.path) from None
    header[param] = value
