"""Tests for rxpipe.errors."""

from __future__ import annotations

import pickle

import pytest

from rxpipe import errors


def test_every_error_is_an_rxpipe_error() -> None:
    """Every public exception class derives from RxpipeError."""
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.RxpipeError), name


def test_config_errors_are_value_errors_and_name_their_path() -> None:
    """ConfigError subclasses ValueError and prefixes the field path."""
    error = errors.ConfigError("expected int. Received: 'ten' (str)", "plugins[3].epochs")
    assert isinstance(error, ValueError)
    assert str(error) == "plugins[3].epochs: expected int. Received: 'ten' (str)"


def test_stage_error_names_stage_and_samples_and_keeps_cause() -> None:
    """A StageError names its stage and sample ids and chains the original error."""
    cause = ValueError("bad pixel")
    error = errors.StageError("process.normalize", "ValueError: bad pixel", [3, 4], cause)
    assert "stage 'process.normalize' failed (samples [3, 4])" in str(error)
    assert error.__cause__ is cause


def test_stage_error_elides_long_id_lists() -> None:
    """Long sample-id lists are cut with a count of the rest."""
    error = errors.StageError("s", "x", list(range(20)))
    assert "(12 more)" in str(error)


def test_relabel_keeps_details() -> None:
    """Relabelling moves an error to another stage name, keeping ids and cause."""
    cause = ValueError("x")
    error = errors.TrainingError("train.fit", "nan", [1], cause).relabel("train.fit#2")
    assert isinstance(error, errors.TrainingError)
    assert (error.stage, error.sample_ids, error.cause) == ("train.fit#2", (1,), cause)


def test_stage_error_survives_pickling() -> None:
    """Stage errors cross process boundaries with their structured fields."""
    error = pickle.loads(pickle.dumps(errors.StageError("s", "boom", [1, 2])))
    assert (error.stage, error.sample_ids, error.detail) == ("s", (1, 2), "boom")


def test_unknown_plugin_error_suggests_names() -> None:
    """UnknownPluginError is a LookupError and lists suggestions."""
    error = errors.UnknownPluginError("train.fitt", ["train.fit"], "plugins[1].use")
    assert isinstance(error, LookupError)
    assert "Did you mean: train.fit?" in str(error)
    with pytest.raises(errors.ConfigError):
        raise error
