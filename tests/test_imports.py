"""Tests of import paths ("package.module:name") for Python objects named in pipeline files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from rxpipe import ConfigError
from rxpipe.imports import import_object, import_path_of, is_import_path


def nested_owner() -> object:
    def inner() -> None: ...

    return inner


def test_import_paths_round_trip_for_top_level_functions_and_classes() -> None:
    """What import_path_of names, import_object gives back; others have no path."""
    for value in (json.dumps, json.JSONDecoder):
        path = import_path_of(value)
        assert path is not None
        assert is_import_path(path)
        assert import_object(path, "f") == value
    assert import_path_of(lambda: 0) is None
    assert import_path_of(nested_owner()) is None
    assert import_path_of(json.dumps("x")) is None  # an object, not a function


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of the user's modules, the current directory (as for `rxpipe run`)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def write(folder: Path, name: str, text: str) -> str:
    """Write module ``name`` (unique per test folder) and return its module name."""
    module = f"{name}_{folder.name.replace('-', '_')}"
    (folder / f"{module}.py").write_text(textwrap.dedent(text))
    return module


def test_a_module_that_fails_to_import_is_a_config_error_naming_the_field(modules: Path) -> None:
    """The user's module raising, or missing a module it needs: a ConfigError with the cause."""
    raising = write(modules, "raising", "raise RuntimeError('no GPU driver')\n")
    with pytest.raises(ConfigError) as info:
        import_object(f"{raising}:build", "plugins[4].model")
    assert str(info.value) == (
        f"plugins[4].model: expected the module {raising!r} to import. Received: "
        f"'{raising}:build', whose module raised RuntimeError: no GPU driver"
    )
    assert isinstance(info.value.__cause__, RuntimeError)
    needs = write(modules, "needs", "import no_such_dependency_xyz\n")
    with pytest.raises(ConfigError, match="raised ModuleNotFoundError: No module named 'no_such_"):
        import_object(f"{needs}:build", "f")
    broken = write(modules, "broken", "def build(:\n")
    with pytest.raises(ConfigError, match=rf"raised SyntaxError: .*{broken}\.py, line 1\)$"):
        import_object(f"{broken}:build", "f")


def test_missing_modules_names_and_malformed_paths(modules: Path) -> None:
    """Each names the field and what was wrong."""
    with pytest.raises(ConfigError, match=r"^f: expected an importable module 'no_such_xyz.sub' "):
        import_object("no_such_xyz.sub:build", "f")
    present = write(modules, "present", "value = 1\n")
    with pytest.raises(ConfigError, match=rf"^f: expected {present!r} to define 'vlaue'"):
        import_object(f"{present}:vlaue", "f")
    assert import_object(f"{present}:value", "f") == 1
    with pytest.raises(ConfigError, match=r"^f: expected an import path 'package.module:name'"):
        import_object("no colon", "f")
