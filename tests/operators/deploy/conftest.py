"""Deploy fixtures: one small digits run exported by deploy.export, shared by the session."""

from __future__ import annotations

import numpy as np
import pytest

import rxpipe
from rxpipe.operators import access, collect, deploy, evaluate, models, process, train


@pytest.fixture(scope="session")
def digits_export(tmp_path_factory: pytest.TempPathFactory) -> rxpipe.RunResult:
    """Train a tiny CNN on 600 digits for 2 epochs, evaluate it, export its bundle."""
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
        runs_dir=tmp_path_factory.mktemp("deploy-runs"),
    )
    return pipeline.run(progress=False)


@pytest.fixture(scope="session")
def raw_digits() -> np.ndarray:
    """The first 32 digits as collected: uint8 (32, 8, 8, 1), values 0–16."""
    from sklearn.datasets import load_digits

    return load_digits().images[:32].astype(np.uint8)[..., np.newaxis]
