"""Tests for the rxpipe command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rxpipe.cli import main


def test_plugins_lists_every_registered_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    """`rxpipe plugins` prints each plugin with its summary and parameters."""
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "train.fit" in out
    assert "epochs=10" in out


def test_plugins_name_shows_one_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    """`rxpipe plugins NAME` prints the docstring and typed parameters."""
    assert main(["plugins", "access.split"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("access.split  (access)")
    assert "train: float  (default 0.8)" in out


def test_unknown_plugin_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown plugin exits 2 with suggestions."""
    assert main(["plugins", "train.fitt"]) == 2
    assert "Did you mean: train.fit" in capsys.readouterr().err


def test_config_errors_exit_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad parameter type exits 2 and names plugins[i].param."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[plugins]]\nuse = "collect.digits"\n[[plugins]]\nuse = "train.fit"\nepochs = "ten"\n'
    )
    assert main(["run", str(path), "--runs-dir", str(tmp_path)]) == 2
    assert "plugins[1].epochs: expected int. Received: 'ten' (str)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_failing_run_exits_non_zero_naming_the_stage(tmp_path: Path) -> None:
    """A pipeline whose training gets no train split exits 1, naming the stage and the fix."""
    path = tmp_path / "nosplit.toml"
    path.write_text(
        '[pipeline]\nname = "nosplit"\n'
        '[[plugins]]\nuse = "collect.digits"\n'
        '[[plugins]]\nuse = "process.normalize"\n'
        '[[plugins]]\nuse = "models.cnn"\n'
        '[[plugins]]\nuse = "train.fit"\nepochs = 1\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "rxpipe", "run", str(path), "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert "stage 'train.fit' failed" in out.stderr
    assert "add access.split" in out.stderr
    assert "run_failed" in out.stderr


def test_help_lists_the_commands() -> None:
    """`rxpipe --help` names the run and plugins commands."""
    out = subprocess.run(
        [sys.executable, "-m", "rxpipe", "--help"], capture_output=True, text=True, check=True
    )
    assert "run" in out.stdout
    assert "plugins" in out.stdout
