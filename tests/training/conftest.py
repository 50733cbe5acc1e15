"""Helpers for training tests: a small, fast digits pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rxpipe
from rxpipe.operators import access, collect, models, process, train
from rxpipe.testing import from_arrays


def build_small_digits(
    runs_dir: Path, *, name: str = "small", limit: int = 400, dropout: float = 0.0, **fit: Any
) -> rxpipe.Pipeline:
    """Digits (first ``limit``), a tiny CNN (with ``dropout``) and train.fit(**fit): trains in
    about a second."""
    fit.setdefault("epochs", 2)
    fit.setdefault("learning_rate", 0.01)
    return rxpipe.Pipeline(
        collect.digits(limit=limit),
        access.split(train=0.8, validation=0.2, test=0.0),
        access.shuffle(buffer_size=1000),
        access.batch(32),
        process.normalize(),
        models.cnn(filters=(8,), dense=16, dropout=dropout),
        train.fit(**fit),
        name=name,
        runs_dir=runs_dir,
    )


def digit_arrays_pipeline(
    runs_dir: Path, labels: np.ndarray[Any, Any], **fit: Any
) -> rxpipe.Pipeline:
    """scikit-learn's 1,797 digits (64 features in [0, 1]) with ``labels`` (class indices or
    one-hot rows), split 70/15/15, a small MLP and train.fit(**fit): a few seconds."""
    from sklearn.datasets import load_digits

    features = (load_digits().data / 16.0).astype("float32")
    meta = rxpipe.DatasetMetadata(
        "digits", rxpipe.FeatureSpec((64,), "float32"), tuple(str(d) for d in range(10))
    )
    fit.setdefault("learning_rate", 0.01)
    return rxpipe.Pipeline(
        access.split(train=0.7, validation=0.15, test=0.15),
        models.mlp(hidden=(32,), dropout=0.0),
        train.fit(**fit),
        source=from_arrays(features, labels, batch_size=64, metadata=meta),
        name="digits",
        runs_dir=runs_dir,
    )


SmallDigits = Callable[..., rxpipe.Pipeline]


@pytest.fixture
def small_digits(runs_dir: Path) -> SmallDigits:
    """build_small_digits bound to this test's runs directory."""
    return lambda **kwargs: build_small_digits(runs_dir, **kwargs)


@pytest.fixture
def digit_arrays(runs_dir: Path) -> Callable[..., rxpipe.Pipeline]:
    """digit_arrays_pipeline bound to this test's runs directory."""
    return lambda labels, **fit: digit_arrays_pipeline(runs_dir, labels, **fit)
