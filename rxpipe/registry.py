"""The plugin registry: plugin factories by name, extensible through entry points.

Built-in plugins live in :mod:`rxpipe.operators` and register themselves with
:func:`plugin` when imported. Third-party packages add plugins by declaring a module (or
a decorated factory) in the ``rxpipe.operators`` entry-point group::

    [project.entry-points."rxpipe.operators"]
    my_plugins = "my_package.plugins"
"""

from __future__ import annotations

import difflib
import functools
import inspect
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from importlib import import_module, metadata
from typing import Any, ParamSpec, TypeVar, get_type_hints

import attrs
import reactivex

from rxpipe.config import structure_value
from rxpipe.errors import ConfigError, UnknownPluginError, describe_value
from rxpipe.stage import Operator, PluginKind, Stage

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "Registry", "plugin", "registry"]

ENTRY_POINT_GROUP = "rxpipe.operators"

P = ParamSpec("P")
A = TypeVar("A")
B = TypeVar("B")


@attrs.frozen
class ParamInfo:
    """One parameter of a plugin factory."""

    name: str
    annotation: Any
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        """True if the parameter has no default."""
        return self.default is inspect.Parameter.empty


@attrs.frozen
class PluginInfo:
    """A registered plugin.

    Attributes:
        name: ``"kind.name"``.
        kind: the plugin kind.
        factory: builds the stage from parameters.
        params: the factory's keyword parameters.
        summary: the first line of the factory's docstring.
    """

    name: str
    kind: PluginKind
    factory: Callable[..., Stage[Any, Any]]
    params: tuple[ParamInfo, ...]
    summary: str
    doc: str


def _kind_of(name: str) -> PluginKind:
    prefix, dot, rest = name.partition(".")
    if not dot or not rest:
        raise ValueError(f"plugin name: expected 'kind.name'. Received: {name!r}")
    try:
        return PluginKind(prefix)
    except ValueError:
        kinds = ", ".join(k.value for k in PluginKind)
        raise ValueError(
            f"plugin name {name!r}: expected a kind prefix among {kinds}. Received: {prefix!r}"
        ) from None


class Registry:
    """Plugins by name. Built-ins and entry points are loaded on first lookup.

    An entry point that fails to import costs only its own plugins: the others load, the
    failure is warned about, listed by :meth:`load_errors` and named when a missing
    plugin is looked up.
    """

    def __init__(self) -> None:
        self._plugins: dict[str, PluginInfo] = {}
        self._builtins_loaded = False
        self._entry_points_loaded = False
        self._load_errors: list[ConfigError] = []
        self._lock = threading.RLock()

    def add(self, name: str, factory: Callable[..., Stage[Any, Any]]) -> PluginInfo:
        """Register ``factory`` under ``name`` (``"kind.name"``).

        The factory's parameters need type hints (pipeline-file values are checked against
        them) and defaults of their hinted type. Registering a name again from the same
        module and function (a reloaded module, a re-run notebook cell) replaces the plugin;
        from another function it fails.

        Raises:
            ConfigError: naming the plugin, for a parameter without a type hint, a hint
                that cannot be resolved, a default of the wrong type, or a name another
                factory (a built-in or another package's) has registered.
        """
        original = inspect.unwrap(factory)
        if not _is_builtin(original):
            self._load_builtins()  # so a name clash with a built-in fails here, not later
        params = _params_of(name, original)
        doc = inspect.getdoc(original) or ""
        info = PluginInfo(name, _kind_of(name), factory, params, doc.split("\n", 1)[0], doc)
        with self._lock:
            existing = self._plugins.get(name)
            if existing is not None and _origin(existing.factory) != _origin(factory):
                raise ConfigError(
                    "expected a plugin name no other factory has registered. Received: "
                    f"{_origin_text(factory)}, but {_origin_text(existing.factory)} "
                    "registered it first (rename one of them)",
                    name,
                )
            self._plugins[name] = info
        return info

    def load_errors(self) -> tuple[ConfigError, ...]:
        """The entry points that failed to load, one error each (their plugins are missing).

        Example:
            >>> registry.load_errors()
            ()
        """
        self._load()
        return tuple(self._load_errors)

    def _load_builtins(self) -> None:
        with self._lock:
            if self._builtins_loaded:
                return
            self._builtins_loaded = True  # the import below registers through add()
            try:
                import_module("rxpipe.operators")
            except BaseException:
                self._builtins_loaded = False
                raise

    def _load(self) -> None:
        with self._lock:
            self._load_builtins()
            if self._entry_points_loaded:
                return
            self._entry_points_loaded = True
            for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
                before = set(self._plugins)
                try:
                    entry_point.load()
                except Exception as error:
                    for added in set(self._plugins) - before:  # a module that failed midway
                        if _origin(self._plugins[added].factory)[0] not in sys.modules:
                            del self._plugins[added]
                    self._load_errors.append(_entry_point_error(entry_point, error))
            for failure in self._load_errors:  # after the loop: a warning filter may raise
                warnings.warn(str(failure), RuntimeWarning, stacklevel=3)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load()
        return sorted(self._plugins)

    def infos(self) -> list[PluginInfo]:
        """All registered plugins, sorted by name."""
        self._load()
        return [self._plugins[n] for n in sorted(self._plugins)]

    def get(self, name: str, path: str = "") -> PluginInfo:
        """The plugin registered as ``name``.

        Raises:
            UnknownPluginError: naming the closest registered names.
        """
        self._load()
        try:
            return self._plugins[name]
        except KeyError:
            lowered = {n.lower(): n for n in self._plugins}
            if name.lower() in lowered:  # "TRAIN.FIT": the name in its case
                close = [lowered[name.lower()]]
            else:
                close = difflib.get_close_matches(name, self._plugins, n=3, cutoff=0.5)
            if not close:
                tail = name.rpartition(".")[2]
                close = [n for n in sorted(self._plugins) if n.endswith("." + tail)][:3]
            error = UnknownPluginError(name, close, path)
            if self._load_errors:  # the plugin may be one of theirs: say so
                failed = "; ".join(str(e) for e in self._load_errors)
                error.args = (f"{error} It may be in a package that failed to load: {failed}",)
            raise error from None

    def check(self, name: str, params: Mapping[str, Any], path: str = "") -> dict[str, Any]:
        """Check ``params`` against the factory of ``name``, without building the stage.

        The names must be the factory's parameters, every required one given, and each
        value of its parameter's type. Nothing is built, so nothing heavy is imported: the
        command line checks a whole pipeline file this way before it imports TensorFlow.

        Args:
            name: the registered plugin name.
            params: keyword parameters for its factory.
            path: where the parameters came from, for errors (e.g. ``plugins[2]``).

        Returns:
            The parameters structured for the factory (e.g. lists as tuples).

        Raises:
            UnknownPluginError: for an unknown name.
            ConfigError: for an unknown or missing parameter, or a value of the wrong type.

        Example:
            >>> registry.check("access.batch", {"size": 64})
            {'size': 64}
            >>> registry.check("access.batch", {"size": "64"}, "plugins[1]")
            Traceback (most recent call last):
            ...
            rxpipe.errors.ConfigError: plugins[1].size: expected int. Received: '64' (str)
        """
        info = self.get(name, f"{path}.use" if path else "")
        known = {p.name: p for p in info.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            close = _closest(unknown, known)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"expected parameters of {name!r} among: {', '.join(sorted(known)) or '(none)'}. "
                f"Received: unknown parameter(s) {', '.join(map(repr, unknown))}.{hint}",
                path,
            )
        missing = [p.name for p in info.params if p.required and p.name not in params]
        if missing:
            raise ConfigError(
                f"expected the parameter(s) {', '.join(map(repr, missing))} that {name!r} "
                "needs. Received: none",
                path,
            )
        return {
            key: structure_value(value, known[key].annotation, f"{path}.{key}" if path else key)
            for key, value in params.items()
        }

    def create(self, name: str, params: Mapping[str, Any], path: str = "") -> Stage[Any, Any]:
        """Build the stage ``name`` from ``params``, checking names and types first.

        The checks are :meth:`check`'s; then the factory runs (and may check more, e.g.
        that a file exists).

        Args:
            name: the registered plugin name.
            params: keyword parameters for its factory.
            path: where the parameters came from, for errors (e.g. ``plugins[2]``).

        Raises:
            UnknownPluginError: for an unknown name.
            ConfigError: for an unknown or missing parameter, a value of the wrong type, or
                a value the factory rejects.
        """
        values = self.check(name, params, path)
        info = self.get(name)
        try:
            return info.factory(**values)
        except ConfigError as error:
            if not path:
                raise
            raise _relocate(error, name, path, {p.name: p for p in info.params}) from error
        except (TypeError, ValueError) as error:
            raise ConfigError(f"plugin {name!r}: {error}", path) from error


def _is_builtin(factory: Callable[..., Any]) -> bool:
    return str(getattr(factory, "__module__", "")).startswith("rxpipe.")


def _origin(factory: Callable[..., Any]) -> tuple[str, str]:
    """Where a factory is defined: its module and qualified name."""
    original = inspect.unwrap(factory)
    return (
        str(getattr(original, "__module__", "?")),
        str(getattr(original, "__qualname__", repr(original))),
    )


def _origin_text(factory: Callable[..., Any]) -> str:
    """A factory as ``module.function``, with its installed package where one is known."""
    module, qualname = _origin(factory)
    packages = sorted(set(metadata.packages_distributions().get(module.partition(".")[0], [])))
    return f"{module}.{qualname}" + (f" (package {', '.join(packages)})" if packages else "")


def _params_of(name: str, factory: Callable[..., Any]) -> tuple[ParamInfo, ...]:
    """The keyword parameters of a plugin factory, each with its type hint and default."""
    try:
        hints = get_type_hints(factory)
    except Exception as error:  # a hint naming something not importable at run time
        raise ConfigError(
            "expected type hints that resolve when the module is imported. Received: "
            f"{type(error).__name__}: {error} (import the names the hints use at run time)",
            name,
        ) from error
    params = []
    for p in inspect.signature(factory).parameters.values():
        if p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        if p.name not in hints:
            raise ConfigError(
                "expected a type hint (pipeline-file values are checked against it; write "
                f"`{p.name}: Any` to accept anything). Received: a parameter without one",
                f"{name}.{p.name}",
            )
        info = ParamInfo(p.name, hints[p.name], p.default)
        if not info.required:
            try:
                structure_value(p.default, info.annotation, f"{name}.{p.name}", python=True)
            except ConfigError as error:
                raise ConfigError(
                    f"{error.args[0].partition(': ')[2]} (the default of the parameter)",
                    error.path,
                ) from None
        params.append(info)
    return tuple(params)


def _entry_point_error(entry_point: metadata.EntryPoint, error: Exception) -> ConfigError:
    """The error of an entry point that failed to load, naming it and its package."""
    package = entry_point.dist.name if entry_point.dist else "an unknown package"
    return ConfigError(
        "expected a module or plugin factory that imports cleanly. Received: "
        f"{type(error).__name__}: {error} (its plugins are missing; fix or uninstall {package})",
        f"entry point {entry_point.name!r} = {entry_point.value!r} of {package}",
    )


def _closest(unknown: Iterable[str], known: Iterable[str]) -> list[str]:
    """The known parameter name closest to each unknown one (where one is close).

    Example:
        >>> _closest(["epoch", "zzz"], ["epochs", "batch_size"])
        ['epochs']
    """
    names = list(known)
    return [
        match for key in unknown for match in difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    ]


def _call_error(
    name: str,
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    error: TypeError,
) -> ConfigError:
    """The :class:`ConfigError` for a plugin factory called from Python with bad arguments.

    ``error`` is what binding ``args`` and ``kwargs`` to ``signature`` raised; the message
    names the plugin, the parameters it takes and, for a misspelt one, the closest.
    """
    params = signature.parameters
    named = [p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    among = f"expected parameters among ({', '.join(named)})"
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [] if takes_any else [key for key in kwargs if key not in named]
    if unknown:
        close = _closest(unknown, named)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        return ConfigError(f"{among}. Received: {', '.join(map(repr, unknown))}{hint}", name)
    try:
        given = signature.bind_partial(*args, **kwargs).arguments
    except TypeError:
        given = None
    if given is not None:
        missing = [
            p.name
            for p in params.values()
            if p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.name not in given
        ]
        if missing:
            return ConfigError(
                f"expected a value for the required parameter(s) {', '.join(map(repr, missing))}"
                f". Received: {_described(args, kwargs)}",
                name,
            )
    return ConfigError(f"{among}. Received: {_described(args, kwargs)} ({error})", name)


def _described(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """The arguments of a call as they were written, e.g. ``3, epochs=2`` (or ``no arguments``)."""
    written = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return ", ".join(written) or "no arguments"


def _relocate(
    error: ConfigError, name: str, path: str, params: Mapping[str, ParamInfo]
) -> ConfigError:
    """A factory's error re-labelled with its place in the pipeline file.

    Plugins label parameter errors ``kind.name.param`` (older ones start the message with
    ``param: ``); in a pipeline file the same error reads ``plugins[3].param: ...``.
    """
    message = str(error)
    where = error.path
    if where and message.startswith(f"{where}: "):
        message = message[len(where) + 2 :]
    if where.startswith(name + "."):
        return ConfigError(message, f"{path}.{where[len(name) + 1 :]}")
    if not where:
        head, colon, rest = message.partition(": ")
        if colon and head in params:
            return ConfigError(rest, f"{path}.{head}")
    elif where != name:
        message = f"{where}: {message}"
    return ConfigError(f"plugin {name!r}: {message}", path)


registry = Registry()
"""The process-wide plugin registry."""


def _operator(name: str, made: object) -> Operator[Any, Any]:
    """What a plugin factory returned, if it is an operator (else a :class:`ConfigError`)."""
    if callable(made) and not isinstance(made, reactivex.Observable):
        return made
    hint = (
        "; return a function of the source, e.g. `lambda source: source.pipe(...)`, "
        "or an rxpipe.flow operator"
        if isinstance(made, reactivex.Observable)
        else ""
    )
    raise ConfigError(
        "expected the factory to return an operator, a callable from the source Observable "
        f"to an Observable. Received: {describe_value(made)}{hint}",
        name,
    )


def plugin(name: str) -> Callable[[Callable[P, Operator[A, B]]], Callable[P, Stage[A, B]]]:
    """Register an operator factory as the plugin ``name`` (``"kind.name"``).

    The decorated factory returns a :class:`~rxpipe.stage.Stage` carrying the name, the
    kind and the parameters it was called with.

    Example:
        >>> from reactivex import operators as ops
        >>> @plugin("custom.scale_doc_example")
        ... def scale(factor: float = 2.0) -> Operator[float, float]:
        ...     '''Multiply every item by ``factor``.'''
        ...     return ops.map(lambda x: x * factor)
        >>> scale(factor=3.0).params
        {'factor': 3.0}
    """

    kind = _kind_of(name)

    def decorate(factory: Callable[P, Operator[A, B]]) -> Callable[P, Stage[A, B]]:
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def build(*args: P.args, **kwargs: P.kwargs) -> Stage[A, B]:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as error:  # a misspelt, missing or extra argument
                raise _call_error(name, signature, args, kwargs, error) from None
            for param in info.params:  # checked as from a file, leniently; passed unchanged
                value = bound.arguments.get(param.name, param.default)
                if value is not param.default:
                    structure_value(value, param.annotation, f"{name}.{param.name}", python=True)
            bound.apply_defaults()
            return Stage(
                name, _operator(name, factory(*args, **kwargs)), kind, dict(bound.arguments)
            )

        info = registry.add(name, build)
        build.plugin_name = name  # type: ignore[attr-defined]  # Pipeline names it if uncalled
        return build

    return decorate
