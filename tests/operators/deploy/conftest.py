"""Deploy fixtures: one small digits run exported by deploy.export, shared by the session."""

from __future__ import annotations

import numpy as np
import pytest

import rxpipe


@pytest.fixture(scope="session")
def digits_export(exported_digits: rxpipe.RunResult) -> rxpipe.RunResult:
    """The session's tiny exported digits run (see tests/conftest.py)."""
    return exported_digits


@pytest.fixture(scope="session")
def raw_digits() -> np.ndarray:
    """The first 32 digits as collected: uint8 (32, 8, 8, 1), values 0–16."""
    from sklearn.datasets import load_digits

    return load_digits().images[:32].astype(np.uint8)[..., np.newaxis]
