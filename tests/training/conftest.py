"""Helpers for training tests: a small, fast digits pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rxpipe
from rxpipe.operators import access, collect, models, process, train


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


SmallDigits = Callable[..., rxpipe.Pipeline]


@pytest.fixture
def small_digits(runs_dir: Path) -> SmallDigits:
    """build_small_digits bound to this test's runs directory."""
    return lambda **kwargs: build_small_digits(runs_dir, **kwargs)
