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
    with pytest.raises(ConfigError, match=r"^pipeline file '.*bad\.toml': expected valid TOML\. "):
        load_config(path)


def test_missing_file_and_wrong_suffix_are_config_errors(tmp_path: Path) -> None:
    """Unreadable files and unknown suffixes are reported clearly."""
    with pytest.raises(ConfigError, match=r"nope\.toml': expected a readable file\. Received: "):
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
        (
            {"pipeline": {"colour": 1}, "plugins": [{"use": "a.b"}]},
            r"^pipeline: expected keys among name, runs_dir, seed\. Received: 'colour'$",
        ),
        (
            {"plugin": []},
            r"^expected only the tables \[pipeline\] and \[\[plugins\]\] at the top level\. "
            r"Received: 'plugin' \(did you mean \[\[plugins\]\]\?\)$",
        ),
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


def test_a_file_that_is_not_utf8_names_the_byte_and_line(tmp_path: Path) -> None:
    """A Latin-1 file is a ConfigError naming the file, the byte and its line, no traceback."""
    path = tmp_path / "latin.toml"
    path.write_bytes('[pipeline]\nname = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"pipeline file {str(path)!r}: expected UTF-8 text. Received: byte 0xe9 on line 2"
    )


def test_errors_in_a_file_name_the_file_after_the_field(tmp_path: Path) -> None:
    """A field error read from a file starts with the field path and names the file."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError) as info:
        load_config(empty)
    assert str(info.value) == (
        "plugins: expected a non-empty list of [[plugins]] tables. Received: no [[plugins]] "
        f"table in pipeline file {str(empty)!r}"
    )
    assert info.value.path == "plugins"
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"pipeline": {"seed": "one"}, "plugins": [{"use": "a.b"}]}))
    with pytest.raises(ConfigError) as info:
        load_config(seed)
    assert str(info.value) == (
        f"pipeline.seed: expected int. Received: 'one' (str) in pipeline file {str(seed)!r}"
    )


def test_a_top_level_error_in_a_file_starts_with_the_file(tmp_path: Path) -> None:
    """[Pipeline] (wrong case) is refused naming the file and suggesting [pipeline]."""
    path = tmp_path / "p.toml"
    path.write_text('[Pipeline]\nname = "x"\n\n[[plugins]]\nuse = "collect.digits"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"pipeline file {str(path)!r}: expected only the tables [pipeline] and [[plugins]] at "
        "the top level. Received: 'Pipeline' (did you mean [pipeline]?)"
    )


def test_an_unknown_pipeline_key_suggests_the_closest() -> None:
    """A misspelt [pipeline] key is refused in the standard form with the closest key."""
    with pytest.raises(ConfigError) as info:
        parse_config({"pipeline": {"nme": "x"}, "plugins": [{"use": "collect.digits"}]})
    assert str(info.value) == (
        "pipeline: expected keys among name, runs_dir, seed. Received: 'nme' (did you mean 'name'?)"
    )


def test_a_plugin_without_use_says_use_is_missing() -> None:
    """A [[plugins]] table without use says so rather than showing None."""
    with pytest.raises(ConfigError, match=r"^plugins\[0\]\.use: .*Received: no 'use' key$"):
        parse_config({"plugins": [{"epochs": 3}]})


def test_a_json_key_given_twice_is_refused(tmp_path: Path) -> None:
    """A JSON object with a key twice is an error naming the key and file, as in TOML."""
    path = tmp_path / "dup.json"
    path.write_text('{"plugins": [{"use": "train.fit", "epochs": 1, "epochs": 2}]}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"pipeline file {str(path)!r}: expected each key once in a JSON object. Received: "
        "'epochs' twice, in the object with keys 'use', 'epochs'"
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("P.TOML", '[[plugins]]\nuse = "collect.digits"\n'),
        ("P.Json", '{"plugins": [{"use": "collect.digits"}]}'),
    ],
)
def test_suffixes_are_read_ignoring_case(tmp_path: Path, name: str, text: str) -> None:
    """A .TOML or .Json file is read like a .toml or .json one."""
    path = tmp_path / name
    path.write_text(text)
    assert load_config(path).plugins[0].use == "collect.digits"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "train.fit.metrics=[accuracy]",
            "--set 'train.fit.metrics=[accuracy]': expected a TOML value. Received: "
            "'[accuracy]', which is not valid TOML (Invalid value at column 2); strings inside "
            'lists and tables need quotes, e.g. ["accuracy"] (put the override in single '
            "quotes, so that the shell keeps them)",
        ),
        (
            "train.fit.filters=[16, 32",
            "--set 'train.fit.filters=[16, 32': expected a TOML value. Received: '[16, 32', "
            "which is not valid TOML (Unclosed array at the end); a list, table or string "
            "needs its closing bracket or quote (put an override with spaces in single "
            "quotes, or the shell splits it)",
        ),
        ('train.fit.loss="mse', """Received: '"mse', which is not valid TOML"""),
        ("train.fit.optimizer={a=1,}", "Received: '{a=1,}', which is not valid TOML"),
    ],
)
def test_an_override_value_that_looks_like_toml_must_be_toml(override: str, message: str) -> None:
    """A value starting with a bracket or quote is never silently taken as a string."""
    config = parse_config({"plugins": [{"use": "train.fit"}]})
    with pytest.raises(ConfigError) as info:
        apply_overrides(config, [override])
    assert message in str(info.value)


@pytest.mark.parametrize("value", ["2024-01-01", "07:30:00", "1979-05-27T07:32:00Z"])
def test_an_override_that_reads_as_a_toml_date_is_text(value: str) -> None:
    """--set pipeline.name=2024-01-01 names the pipeline '2024-01-01', not a date."""
    config = parse_config({"plugins": [{"use": "collect.digits"}]})
    assert apply_overrides(config, [f"pipeline.runs_dir={value}"]).runs_dir == value
    if ":" not in value:
        assert apply_overrides(config, [f"pipeline.name={value}"]).name == value


def test_a_number_given_as_a_name_hints_at_quoting() -> None:
    """--set pipeline.name=123 is an int; the error names the override and says to quote it."""
    config = parse_config({"plugins": [{"use": "collect.digits"}]})
    with pytest.raises(ConfigError) as info:
        apply_overrides(config, ["pipeline.name=123"])
    assert str(info.value) == (
        "pipeline.name: expected str. Received: 123 (int) from --set 'pipeline.name=123'; "
        """to give text, quote it: --set 'pipeline.name="123"'"""
    )
    assert info.value.path == "pipeline.name"
    assert apply_overrides(config, ['pipeline.name="123"']).name == "123"


def test_an_unknown_pipeline_override_suggests_the_closest() -> None:
    """--set pipeline.nme=x names the override and the closest pipeline key."""
    config = parse_config({"plugins": [{"use": "collect.digits"}]})
    with pytest.raises(ConfigError) as info:
        apply_overrides(config, ["pipeline.nme=x"])
    assert str(info.value) == (
        "--set 'pipeline.nme=x': expected pipeline.PARAM with PARAM among name, runs_dir, "
        "seed. Received: 'nme' (did you mean 'name'?)"
    )


def test_a_plugin_used_twice_is_set_by_index() -> None:
    """A name two plugins share lists them as plugins[N] (use) and says to use plugins[N]."""
    config = parse_config(
        {"plugins": [{"use": "collect.digits"}, {"use": "access.batch"}, {"use": "access.batch"}]}
    )
    with pytest.raises(ConfigError) as info:
        apply_overrides(config, ["access.batch.size=8"])
    assert str(info.value) == (
        "--set 'access.batch.size=8': expected 'access.batch' to name one plugin. Received: it "
        "matches plugins[1] (access.batch), plugins[2] (access.batch); name one as "
        "plugins[N].PARAM, e.g. --set 'plugins[1].size=...'"
    )
    changed = apply_overrides(config, ["plugins[2].size=8"])
    assert [p.params for p in changed.plugins] == [{}, {}, {"size": 8}]


def test_a_nested_override_key_asks_for_the_whole_table() -> None:
    """train.fit.optimizer.config.learning_rate=0.1 is refused; the whole table works."""
    optimizer = {"class_name": "SGD", "config": {"learning_rate": 0.05}}
    config = parse_config({"plugins": [{"use": "train.fit", "optimizer": optimizer}]})
    with pytest.raises(ConfigError) as info:
        apply_overrides(config, ["train.fit.optimizer.config.learning_rate=0.1"])
    assert str(info.value) == (
        "--set 'train.fit.optimizer.config.learning_rate=0.1': expected TARGET.PARAM=VALUE with "
        "PARAM a parameter of train.fit. Received: 'config.learning_rate', a key nested in "
        "'optimizer'; nested keys are not supported: give the whole value as an inline TOML "
        "table, --set 'train.fit.optimizer={key = value, ...}'"
    )
    whole = 'train.fit.optimizer={class_name = "SGD", config = {learning_rate = 0.1}}'
    given = apply_overrides(config, [whole])
    assert given.plugins[0].params["optimizer"]["config"] == {"learning_rate": 0.1}
    with pytest.raises(ConfigError, match=r"--set 'plugins\[0\]\.x=\{key = value, \.\.\.\}'$"):
        apply_overrides(config, ["plugins[0].x.y=1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trian.x=1", r"Received: 'trian' \(did you mean 'train'\?\), which matches no plugin$"),
        ("plugins[3].x=1", r"expected plugins\[N\] with N from 0 to 1\. Received: plugins\[3\]$"),
    ],
)
def test_an_override_target_matching_no_plugin_is_explained(override: str, message: str) -> None:
    """A target that is no plugin says what targets there are and the closest one."""
    config = parse_config({"plugins": [{"use": "collect.digits"}, {"use": "train.fit"}]})
    with pytest.raises(ConfigError, match=message):
        apply_overrides(config, [override])
