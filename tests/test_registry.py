"""Tests for rxpipe.registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops

from rxpipe import ConfigError, PluginKind, Stage, UnknownPluginError, plugin, registry
from rxpipe.operators import access, collect, train
from rxpipe.registry import Registry
from rxpipe.stage import Operator


def test_builtin_plugins_of_the_demo_are_registered() -> None:
    """Every plugin of the demo pipeline is in the registry under its kind."""
    names = registry.names()
    for name in [
        "collect.digits",
        "access.split",
        "access.shuffle",
        "access.batch",
        "process.normalize",
        "models.cnn",
        "train.fit",
        "evaluate.classification",
        "deploy.export",
    ]:
        assert name in names
        assert registry.get(name).kind is PluginKind(name.split(".")[0])


def test_plugin_decorator_builds_named_stages_with_params() -> None:
    """A decorated factory returns a Stage with its name, kind and bound parameters."""

    @plugin("custom.test_scale")
    def scale(factor: float = 2.0) -> Operator[float, float]:
        """Multiply by factor."""
        return ops.map(lambda x: x * factor)

    stage = scale(3.0)
    assert isinstance(stage, Stage)
    assert (stage.name, stage.kind, dict(stage.params)) == (
        "custom.test_scale",
        PluginKind.CUSTOM,
        {"factor": 3.0},
    )
    assert reactivex.of(1.0).pipe(stage).run() == 3.0
    info = registry.get("custom.test_scale")
    assert info.summary == "Multiply by factor."
    assert [p.name for p in info.params] == ["factor"]


def test_names_need_a_known_kind_prefix() -> None:
    """Plugin names must be 'kind.name' with a known kind."""
    with pytest.raises(ValueError, match="expected a kind prefix"):
        plugin("magic.thing")
    with pytest.raises(ValueError, match=r"expected 'kind\.name'"):
        plugin("thing")


def test_unknown_plugin_suggests_close_names() -> None:
    """A misspelt name suggests the registered ones closest to it."""
    with pytest.raises(UnknownPluginError) as info:
        registry.get("train.fitt")
    assert "train.fit" in info.value.suggestions
    with pytest.raises(UnknownPluginError) as info:
        registry.get("collect.digit")
    assert "collect.digits" in info.value.suggestions


def test_create_lists_valid_parameters_for_an_unknown_one() -> None:
    """An unknown parameter error lists the valid parameter names."""
    with pytest.raises(
        ConfigError, match=r"expected parameters of 'train.fit' among: .*epochs.*Received: unknown"
    ):
        registry.create("train.fit", {"epoch": 3}, "plugins[6]")


def test_create_turns_factory_validation_into_config_errors() -> None:
    """A factory's own validation error comes back as a ConfigError with the path."""
    with pytest.raises(ConfigError, match=r"plugins\[1\]: .*train \+ validation \+ test"):
        registry.create(
            "access.split", {"train": 0.9, "validation": 0.9, "test": 0.0}, "plugins[1]"
        )


def test_registering_a_second_factory_under_a_taken_name_fails() -> None:
    """Two different factories cannot share a name."""

    @plugin("custom.test_taken")
    def first() -> Operator[int, int]:
        """First."""
        return ops.map(lambda x: x)

    with pytest.raises(ConfigError) as info:

        @plugin("custom.test_taken")
        def second() -> Operator[int, int]:
            """Second."""
            return ops.map(lambda x: x)

    here = f"{__name__}.test_registering_a_second_factory_under_a_taken_name_fails.<locals>"
    assert str(info.value) == (
        "custom.test_taken: expected a plugin name no other factory has registered. Received: "
        f"{here}.second, but {here}.first registered it first (rename one of them)"
    )
    assert registry.get("custom.test_taken").summary == "First."


def test_registering_the_same_function_again_replaces_it() -> None:
    """A re-run notebook cell or a reloaded module registers its plugin again without error."""
    cell = (
        "@plugin('custom.test_rerun')\n"
        "def rerun(x: int = NUMBER) -> Operator[int, int]:\n"
        "    'Run NUMBER.'\n"
        "    return ops.map(lambda v: v + x)\n"
    )
    for number in (1, 2):
        code = cell.replace("NUMBER", str(number))
        exec(code, {"plugin": plugin, "ops": ops, "Operator": Operator, "__name__": "notebook"})
    assert registry.get("custom.test_rerun").summary == "Run 2."


def test_a_name_of_a_built_in_fails_where_it_is_registered() -> None:
    """Registering process.normalize before any lookup fails at the decorator, and every
    built-in stays (the first lookup used to fail, then leave the registry half-loaded)."""
    script = (
        "from reactivex import operators as ops\n"
        "from rxpipe import plugin, registry\n"
        "try:\n"
        "    @plugin('process.normalize')\n"
        "    def normalize(x: int = 1):\n"
        "        'Mine.'\n"
        "        return ops.map(lambda b: b)\n"
        "except Exception as error:\n"
        "    print(error)\n"
        "print(registry.get('process.normalize').factory.__module__, len(registry.names()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    first, second = out.stdout.strip().splitlines()
    assert first == (
        "process.normalize: expected a plugin name no other factory has registered. Received: "
        "__main__.normalize, but rxpipe.operators.process._normalize.normalize (package rxpipe) "
        "registered it first (rename one of them)"
    )
    alone = "from rxpipe import registry\nprint(len(registry.names()))\n"  # a fresh process
    builtins = subprocess.run(
        [sys.executable, "-c", alone], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert second == f"rxpipe.operators.process._normalize {builtins}"


def test_a_parameter_without_a_type_hint_fails_at_registration() -> None:
    """The registry checks file values against hints, so every parameter needs one."""
    with pytest.raises(ConfigError) as info:

        @plugin("custom.test_no_hint")
        def scale(factor=2.0) -> Operator[float, float]:  # type: ignore[no-untyped-def]
            """No hint."""
            return ops.map(lambda x: x * factor)

    assert str(info.value) == (
        "custom.test_no_hint.factor: expected a type hint (pipeline-file values are checked "
        "against it; write `factor: Any` to accept anything). Received: a parameter without one"
    )
    assert "custom.test_no_hint" not in registry.names()


def test_a_default_of_the_wrong_type_fails_at_registration() -> None:
    """`size: int = 0.5` is caught where it is written, not when a file leaves size out."""
    with pytest.raises(ConfigError) as info:

        @plugin("custom.test_bad_default")
        def batch(size: int = 0.5) -> Operator[int, int]:  # type: ignore[assignment]
            """Bad default."""
            return ops.map(lambda x: x)

    assert str(info.value) == (
        "custom.test_bad_default.size: expected int. Received: 0.5 (float) "
        "(the default of the parameter)"
    )


def test_a_hint_that_does_not_resolve_names_the_plugin() -> None:
    """A hint naming a TYPE_CHECKING-only import is a ConfigError naming the plugin."""
    with pytest.raises(ConfigError, match=r"^custom\.test_hint: expected type hints that resolve"):

        @plugin("custom.test_hint")
        def pick(value: NotImportedHere = None) -> Operator[int, int]:  # type: ignore[name-defined]  # noqa: F821
            """Unresolvable hint."""
            return ops.map(lambda x: x)


@pytest.mark.parametrize(
    ("made", "received"),
    [
        (42, "Received: 42 (int)"),
        (reactivex.empty(), "(Observable); return a function of the source, e.g. `lambda"),
    ],
)
def test_a_factory_returning_no_operator_fails_naming_the_plugin(
    made: object, received: str
) -> None:
    """A factory that returns something other than an operator fails when called."""

    @plugin("custom.test_not_operator")
    def broken() -> Operator[int, int]:
        """Return the parametrized value."""
        return made  # type: ignore[return-value]

    with pytest.raises(ConfigError) as info:
        broken()
    assert str(info.value).startswith(
        "custom.test_not_operator: expected the factory to return an operator, a callable "
        "from the source Observable to an Observable. Received: "
    )
    assert received in str(info.value)


def test_a_failing_entry_point_costs_only_its_own_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken entry point is warned about and named on lookup; the other entry points load."""
    for name, target in [("broken", "no_such_module_here"), ("good", "rxpipe_test_good_ep")]:
        info = tmp_path / f"{name}_plugins-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-plugins\n")
        (info / "entry_points.txt").write_text(f"[rxpipe.operators]\n{name} = {target}\n")
    (tmp_path / "rxpipe_test_good_ep.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh = Registry()
    with pytest.warns(RuntimeWarning, match="entry point 'broken'"):
        fresh.names()
    assert sys.modules["rxpipe_test_good_ep"].LOADED
    [error] = fresh.load_errors()
    assert str(error) == (
        "entry point 'broken' = 'no_such_module_here' of broken-plugins: expected a module or "
        "plugin factory that imports cleanly. Received: ModuleNotFoundError: No module named "
        "'no_such_module_here' (its plugins are missing; fix or uninstall broken-plugins)"
    )
    with pytest.raises(UnknownPluginError) as lookup:
        fresh.get("process.from_broken")
    assert str(lookup.value).endswith(f"It may be in a package that failed to load: {error}")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: access.batch("3"), r"access\.batch\.size: expected int. Received: '3' \(str\)"),
        (lambda: access.batch(2.5), r"access\.batch\.size: expected int. Received: 2\.5"),
        (lambda: train.fit(epochs="3"), r"train\.fit\.epochs: expected int"),
        (lambda: train.fit(metrics="accuracy"), r"train\.fit\.metrics: expected Sequence\[str \| "),
    ],
)
def test_plugins_built_in_python_check_their_parameter_types(build: object, message: str) -> None:
    """A wrong type from Python fails at construction, naming kind.name.param."""
    with pytest.raises(ConfigError, match=message):
        build()  # type: ignore[operator]


def test_python_values_of_the_right_kind_are_accepted_unchanged(tmp_path: Path) -> None:
    """NumPy numbers pass as ints and floats, paths as strings; the factory gets them as given."""
    size = np.int64(3)
    assert access.batch(size).params["size"] is size
    assert train.fit(learning_rate=np.float32(0.01), epochs=np.int32(2)).params["epochs"] == 2
    (tmp_path / "t.csv").write_text("a,label\n1,0\n")
    assert collect.csv(tmp_path / "t.csv", label="label").params["path"] == tmp_path / "t.csv"


def test_check_structures_parameters_without_building_the_stage() -> None:
    """Registry.check checks names and types and returns the values; only create builds."""
    built: list[int] = []

    @plugin("custom.test_check_only")
    def counted(size: int = 1) -> Operator[int, int]:
        """Count the builds."""
        built.append(size)
        return ops.map(lambda x: x)

    assert registry.check("custom.test_check_only", {"size": 3}, "plugins[0]") == {"size": 3}
    with pytest.raises(ConfigError) as info:
        registry.check("custom.test_check_only", {"size": "3"}, "plugins[0]")
    assert str(info.value) == "plugins[0].size: expected int. Received: '3' (str)"
    with pytest.raises(UnknownPluginError):
        registry.check("custom.test_check_onyl", {}, "plugins[0]")
    assert built == []
    registry.create("custom.test_check_only", {"size": 3})
    assert built == [3]


def test_a_misspelt_keyword_from_python_names_the_plugin_and_the_closest() -> None:
    """train.fit(epoch=3) is a ConfigError naming train.fit, its parameters and 'epochs'."""
    with pytest.raises(ConfigError) as info:
        train.fit(epoch=3)  # type: ignore[call-arg]
    message = str(info.value)
    assert message.startswith("train.fit: expected parameters among (epochs, batch_size, ")
    assert message.endswith(". Received: 'epoch' (did you mean 'epochs'?)")
    assert info.value.path == "train.fit"


def test_a_missing_required_argument_from_python_names_the_plugin() -> None:
    """collect.csv() without its path is a ConfigError naming collect.csv and 'path'."""
    with pytest.raises(ConfigError) as info:
        collect.csv()  # type: ignore[call-arg]
    assert str(info.value) == (
        "collect.csv: expected a value for the required parameter(s) 'path'. Received: no arguments"
    )


def test_extra_positional_arguments_from_python_name_the_plugin() -> None:
    """Too many positional arguments: a ConfigError naming the plugin and its parameters."""
    with pytest.raises(ConfigError) as info:
        access.batch(32, False, 7)  # type: ignore[call-arg]
    assert str(info.value) == (
        "access.batch: expected parameters among (size, drop_remainder). "
        "Received: 32, False, 7 (too many positional arguments)"
    )
