"""Tests for rxpipe.config: pipeline files, strict values, overrides."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import pytest

from rxpipe import ConfigError, load_config
from rxpipe.config import apply_overrides, parse_config, structure_value

TOML = """
[pipeline]
name = "demo"
seed = 3

[[plugins]]
use = "collect.digits"

[[plugins]]
use = "train.fit"
epochs = 5
"""


def test_toml_file_loads_into_config(tmp_path: Path) -> None:
    """A TOML pipeline file becomes a PipelineConfig with plugin params."""
    path = tmp_path / "p.toml"
    path.write_text(TOML)
    config = load_config(path)
    assert (config.name, config.seed) == ("demo", 3)
    assert [p.use for p in config.plugins] == ["collect.digits", "train.fit"]
    assert config.plugins[1].params == {"epochs": 5}


def test_json_file_loads_and_name_defaults_to_file_stem(tmp_path: Path) -> None:
    """A JSON pipeline file without a name is named after the file."""
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"plugins": [{"use": "collect.digits"}]}))
    assert load_config(path).name == "mine"


def test_a_file_name_that_is_no_valid_pipeline_name_is_made_one(tmp_path: Path) -> None:
    """Without [pipeline] name, 'my pipe.toml' names the pipeline 'my_pipe'."""
    path = tmp_path / "my pipe (2).toml"
    path.write_text('[[plugins]]\nuse = "collect.digits"\n')
    assert load_config(path).name == "my_pipe_2"


def test_an_invalid_pipeline_name_is_a_config_error() -> None:
    """A name that cannot name a run directory fails at pipeline.name, also from --set."""
    with pytest.raises(ConfigError, match=r"^pipeline\.name: expected letters.*'my digits'"):
        parse_config({"pipeline": {"name": "my digits"}, "plugins": [{"use": "collect.digits"}]})
    config = parse_config({"plugins": [{"use": "collect.digits"}]})
    with pytest.raises(ConfigError, match=r"^pipeline\.name: .*Received: 'a/b'"):
        apply_overrides(config, ['pipeline.name="a/b"'])
    with pytest.raises(ConfigError, match=r"^pipeline\.name: .*not only dots.*Received: '\.\.'"):
        apply_overrides(config, ['pipeline.name=".."'])


@pytest.mark.parametrize("seed", [-5, 2**32, 10**20])
def test_a_seed_out_of_range_is_a_config_error(seed: int) -> None:
    """Seeds every generator accepts are 0 to 2**32 - 1; others fail at pipeline.seed."""
    with pytest.raises(ConfigError, match=rf"^pipeline\.seed: expected an integer .*{seed}"):
        parse_config({"pipeline": {"seed": seed}, "plugins": [{"use": "collect.digits"}]})


def test_a_byte_order_mark_is_read_as_nothing(tmp_path: Path) -> None:
    """Editors that start UTF-8 files with a byte-order mark write valid pipeline files."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[[plugins]]\nuse = "collect.digits"\n')
    assert load_config(path).plugins[0].use == "collect.digits"


def test_syntax_errors_name_the_file(tmp_path: Path) -> None:
    """A TOML syntax error names the file."""
    path = tmp_path / "bad.toml"
    path.write_text("[[plugins]\nuse=")
    with pytest.raises(ConfigError, match=r"bad.toml' is not valid"):
        load_config(path)


def test_missing_file_and_wrong_suffix_are_config_errors(tmp_path: Path) -> None:
    """Unreadable files and unknown suffixes are reported clearly."""
    with pytest.raises(ConfigError, match="cannot read pipeline file"):
        load_config(tmp_path / "nope.toml")
    other = tmp_path / "p.yaml"
    other.write_text("x")
    with pytest.raises(ConfigError, match=r"expected a \.toml or \.json file"):
        load_config(other)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"plugins": []}, "plugins: expected a non-empty list"),
        ({"plugins": [{"epochs": 3}]}, r"plugins\[0\].use: expected a plugin name string"),
        ({"plugins": ["x"]}, r"plugins\[0\]: expected a table"),
        ({"pipeline": {"seed": "one"}, "plugins": [{"use": "a.b"}]}, "pipeline.seed: expected int"),
        ({"pipeline": {"colour": 1}, "plugins": [{"use": "a.b"}]}, "unknown key 'colour'"),
        ({"plugin": []}, "unknown top-level key"),
    ],
)
def test_invalid_files_name_the_field(data: Mapping[str, object], message: str) -> None:
    """Structural errors name the offending field path."""
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        (3, int, 3),
        (3, float, 3.0),
        (None, int | None, None),
        ([1, 2], Sequence[int], (1, 2)),
        ([1, 2], list[int], [1, 2]),
        ({"a": 1.5}, Mapping[str, float], {"a": 1.5}),
        ("adam", Literal["adam", "sgd"], "adam"),
        ([1, "x"], tuple[int, str], (1, "x")),
    ],
)
def test_structure_value_accepts_values_of_the_declared_type(
    value: object, annotation: object, expected: object
) -> None:
    """Values of the declared type pass (ints widen to floats, lists become tuples)."""
    assert structure_value(value, annotation, "p") == expected


@pytest.mark.parametrize(
    ("value", "annotation"),
    [
        ("ten", int),
        (3.5, int),
        (True, int),
        ("1", float),
        (1, str),
        ("x", Sequence[int]),
        ([1, "a"], Sequence[int]),
        ("rmsprop", Literal["adam", "sgd"]),
        (1, bool),
    ],
)
def test_structure_value_rejects_wrong_types(value: object, annotation: object) -> None:
    """Wrong types are rejected, never silently converted."""
    with pytest.raises(ConfigError, match=r"^p.*expected .*Received: "):
        structure_value(value, annotation, "p")


def test_plugin_param_type_error_names_the_path() -> None:
    """The error for a badly typed parameter reads like plugins[1].epochs: expected int."""
    config = parse_config(
        {"plugins": [{"use": "collect.digits"}, {"use": "train.fit", "epochs": "ten"}]}
    )
    from rxpipe import Pipeline

    with pytest.raises(ConfigError) as info:
        Pipeline.from_config(config)
    assert str(info.value) == "plugins[1].epochs: expected int. Received: 'ten' (str)"


def test_overrides_target_plugin_by_name_kind_or_index() -> None:
    """--set overrides address a plugin by full name, kind or index, and the pipeline."""
    config = parse_config(
        {"plugins": [{"use": "collect.digits"}, {"use": "train.fit", "epochs": 5}]}
    )
    changed = apply_overrides(
        config,
        [
            "train.fit.epochs=2",
            "train.learning_rate=0.01",
            "plugins[0].limit=50",
            "pipeline.seed=7",
        ],
    )
    assert changed.plugins[1].params == {"epochs": 2, "learning_rate": 0.01}
    assert changed.plugins[0].params == {"limit": 50}
    assert changed.seed == 7


def test_override_values_are_toml_or_plain_strings() -> None:
    """Override values parse as TOML literals, falling back to plain strings."""
    config = parse_config({"plugins": [{"use": "train.fit"}]})
    changed = apply_overrides(config, ["train.optimizer=sgd", "train.metrics=['accuracy']"])
    assert changed.plugins[0].params == {"optimizer": "sgd", "metrics": ["accuracy"]}


@pytest.mark.parametrize(
    ("override", "message"),
    [("epochs=3", "expected TARGET.PARAM=VALUE"), ("model.x=1", "matches no plugin")],
)
def test_bad_overrides_are_explained(override: str, message: str) -> None:
    """Malformed overrides or unknown targets are config errors."""
    config = parse_config({"plugins": [{"use": "train.fit"}]})
    with pytest.raises(ConfigError, match=message):
        apply_overrides(config, [override])
