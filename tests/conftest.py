"""Shared fixtures: leak checks and a small trained digits run."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
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


def export_digits(runs_dir: Path, **fit: Any) -> Any:
    """Train a tiny CNN on 600 digits (``train.fit(**fit)``, 2 epochs by default), evaluate
    and export it; the run's result."""
    import rxpipe
    from rxpipe.operators import access, collect, deploy, evaluate, models, process, train

    fit = {"epochs": 2, "learning_rate": 0.01, **fit}
    pipeline = rxpipe.Pipeline(
        collect.digits(limit=600),
        access.split(train=0.8, validation=0.1, test=0.1),
        access.batch(64),
        process.normalize(),
        models.cnn(filters=(8,), dense=16, dropout=0.0),
        train.fit(**fit),
        evaluate.classification(),
        deploy.export(),
        name="digits",
        runs_dir=runs_dir,
    )
    return pipeline.run(progress=False)


@pytest.fixture(scope="session")
def exported_digits(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One tiny CNN trained on 600 digits for 2 epochs, evaluated and exported (a few seconds).

    Shared by the deploy and serving tests, so the session trains it once.
    """
    return export_digits(tmp_path_factory.mktemp("exported-digits"))


@pytest.fixture(scope="session")
def digits_exporter() -> Callable[..., Any]:
    """:func:`export_digits`, for tests that train their own variant."""
    return export_digits


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A fresh directory for run directories."""
    return tmp_path / "runs"


@pytest.fixture
def default_signal_handlers() -> Iterator[None]:
    """Python's own handlers, as in a terminal (a background job starts with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGINT, previous)
    signal.signal(signal.SIGTERM, previous_term)
