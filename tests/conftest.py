"""Shared fixtures: leak checks and a small trained digits run."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def live_threads() -> set[threading.Thread]:
    """The Python threads alive now."""
    return set(threading.enumerate())


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    """Fail the test if it leaves a Python thread running (after a 3 s grace period)."""
    before = live_threads()
    yield
    deadline = threading.Event()
    for _ in range(30):
        leaked = {t for t in live_threads() - before if t.is_alive()}
        if not leaked:
            return
        deadline.wait(0.1)
    pytest.fail(f"threads left running: {sorted(t.name for t in leaked)}")


@pytest.fixture(scope="session")
def exported_digits(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One tiny CNN trained on 600 digits for 2 epochs, evaluated and exported (a few seconds).

    Shared by the deploy and serving tests, so the session trains it once.
    """
    import rxpipe
    from rxpipe.operators import access, collect, deploy, evaluate, models, process, train

    pipeline = rxpipe.Pipeline(
        collect.digits(limit=600),
        access.split(train=0.8, validation=0.1, test=0.1),
        access.batch(64),
        process.normalize(),
        models.cnn(filters=(8,), dense=16, dropout=0.0),
        train.fit(epochs=2, learning_rate=0.01),
        evaluate.classification(),
        deploy.export(),
        name="digits",
        runs_dir=tmp_path_factory.mktemp("exported-digits"),
    )
    return pipeline.run(progress=False)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A fresh directory for run directories."""
    return tmp_path / "runs"
