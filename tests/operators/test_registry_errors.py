"""Pipeline-file errors name the field, and every built-in plugin documents itself."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest

from rxpipe import ConfigError, Pipeline, UnknownPluginError, registry
from rxpipe.config import structure_value
from rxpipe.operators import collect

FILE = """
[pipeline]
name = "broken"

[[plugins]]
use = "collect.wine"

[[plugins]]
use = "access.split"

[[plugins]]
use = "models.mlp"

[[plugins]]
use = "train.fit"
{line}
"""


def load(tmp_path: Path, line: str) -> Pipeline:
    """Build the pipeline of FILE with ``line`` added to its fourth plugin."""
    path = tmp_path / "p.toml"
    path.write_text(FILE.format(line=line))
    return Pipeline.from_file(path)


def test_a_wrong_type_names_the_field(tmp_path: Path) -> None:
    """The message reads like plugins[3].epochs: expected int. Received: 'ten' (str) in
    pipeline file 'p.toml'."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, 'epochs = "ten"')
    assert str(info.value) == (
        f"plugins[3].epochs: expected int. Received: 'ten' (str) in pipeline file "
        f"{str(tmp_path / 'p.toml')!r}"
    )


def test_an_unknown_parameter_lists_the_valid_ones_and_the_closest(tmp_path: Path) -> None:
    """A misspelt parameter lists every valid name and suggests the closest."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "epoch = 3")
    message = str(info.value)
    assert message.startswith("plugins[3]: expected parameters of 'train.fit' among: ")
    assert "Received: unknown parameter(s) 'epoch'." in message
    assert "batch_size" in message
    assert message.endswith(f"Did you mean: epochs? in pipeline file {str(tmp_path / 'p.toml')!r}")


def test_an_unknown_plugin_suggests_close_names(tmp_path: Path) -> None:
    """A misspelt plugin name suggests registered ones."""
    path = tmp_path / "p.toml"
    path.write_text('[[plugins]]\nuse = "collect.iriss"\n')
    with pytest.raises(UnknownPluginError) as info:
        Pipeline.from_file(path)
    assert info.value.path == "plugins[0].use"
    assert "collect.iris" in info.value.suggestions


def test_a_plugins_own_validation_is_relabelled_with_the_field(tmp_path: Path) -> None:
    """A factory's 'kind.name.param' error reads plugins[i].param in a pipeline file."""
    path = tmp_path / "p.toml"
    path.write_text('[[plugins]]\nuse = "collect.wine"\nchunk_size = 0\n')
    with pytest.raises(ConfigError) as info:
        Pipeline.from_file(path)
    assert str(info.value) == (
        f"plugins[0].chunk_size: expected an int >= 1. Received: 0 in pipeline file {str(path)!r}"
    )
    path.write_text('[[plugins]]\nuse = "collect.csv"\npath = "/no/such.csv"\n')
    with pytest.raises(ConfigError, match=r"^plugins\[0\]\.path: expected an existing file"):
        Pipeline.from_file(path)
    path.write_text('[[plugins]]\nuse = "access.split"\nstratify = true\ncolumn = "f"\n')
    with pytest.raises(ConfigError, match=r"^plugins\[0\]: plugin 'access.split': expected"):
        Pipeline.from_file(path)


def test_python_construction_names_the_plugin() -> None:
    """Built from Python, the same error names the plugin and the parameter."""
    from rxpipe.operators import collect

    with pytest.raises(ConfigError, match=r"^collect\.wine\.chunk_size: expected an int >= 1"):
        collect.wine(chunk_size=0)


LIBRARY_KINDS = ("collect", "access", "process", "models", "evaluate")
BUILT_IN = [
    i
    for i in registry.infos()
    if i.factory.__module__.startswith("rxpipe.operators") and i.kind.value in LIBRARY_KINDS
]


@pytest.mark.parametrize("info", BUILT_IN, ids=lambda i: i.name)
def test_every_built_in_plugin_documents_and_types_its_parameters(info: object) -> None:
    """A summary line, an Args entry and a type hint per parameter; defaults fit the hints."""
    assert info.summary, f"{info.name} has no docstring summary"  # type: ignore[attr-defined]
    doc = info.doc  # type: ignore[attr-defined]
    for param in info.params:  # type: ignore[attr-defined]
        assert param.annotation is not typing.Any, f"{info.name}.{param.name} has no hint"  # type: ignore[attr-defined]
        assert f"{param.name}:" in doc, f"{info.name} does not document {param.name}"  # type: ignore[attr-defined]
        if param.default is not inspect.Parameter.empty and param.name != "callbacks":
            default = list(param.default) if isinstance(param.default, tuple) else param.default
            structure_value(default, param.annotation, f"{info.name}.{param.name}")  # type: ignore[attr-defined]


def test_a_relative_path_that_does_not_exist_names_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path is read from the current directory: the error says which one."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"which does not exist in the current directory, '"):
        collect.csv("data/missing.csv", label="y")
