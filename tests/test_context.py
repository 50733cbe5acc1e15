"""Tests for rxpipe.context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rxpipe.context import RunContext, atomic_write, current_epoch, current_run, in_epoch, running
from rxpipe.events import EventBus


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    """A failed write leaves neither the target nor temporary files behind."""
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_a_directory(tmp_path: Path) -> None:
    """Directories (like a SavedModel) are swapped in whole."""
    target = tmp_path / "model"
    for version in ("one", "two"):
        with atomic_write(target, marker="v") as tmp:
            tmp.mkdir()
            (tmp / "v").write_text(version)
    assert (target / "v").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_write_never_replaces_a_folder_it_did_not_write(tmp_path: Path) -> None:
    """A folder without the marker (or, without a marker, any non-empty folder) stays."""
    target = tmp_path / "model"
    target.mkdir()
    (target / "thesis.txt").write_text("mine")
    for marker in ("v", None):
        with (
            pytest.raises(FileExistsError, match=r"holds thesis\.txt"),
            atomic_write(target, marker=marker),
        ):
            pass
    (tmp_path / "file").write_text("mine")
    wrong = pytest.raises(FileExistsError, match=r"expected a folder. Received: .*which is a file")
    with wrong, atomic_write(tmp_path / "file", marker="v"):
        pass
    assert (target / "thesis.txt").read_text() == (tmp_path / "file").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "model"]


def test_current_run_is_detached_outside_a_run() -> None:
    """Outside a run, current_run() has no run directory."""
    assert current_run().run_dir is None
    with pytest.raises(RuntimeError, match=r"expected to run inside Pipeline\.run"):
        current_run().require_run_dir("deploy.export")


def test_running_sets_and_resets_the_current_run(tmp_path: Path) -> None:
    """running() makes a context current for the block only."""
    context = RunContext("r", "p", tmp_path, EventBus("r"), seed=5)
    with running(context):
        assert current_run() is context
        context.save_json("m.json", {"a": 1})
    assert current_run() is not context
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}
    assert context.artifacts == {"m.json": str(tmp_path / "m.json")}


def test_in_epoch_scopes_the_epoch() -> None:
    """in_epoch sets the epoch seen by stages within the block."""
    assert current_epoch() == 0
    with in_epoch(4):
        assert current_epoch() == 4
    assert current_epoch() == 0
