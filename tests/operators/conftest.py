"""Fixtures of the plugin-library tests: real image files, a run context."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rxpipe.context import RunContext, running
from rxpipe.events import EventBus


def png_bytes(pixels: np.ndarray) -> bytes:  # type: ignore[type-arg]
    """Encode a uint8 array (h, w) or (h, w, 3) as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def encode_png() -> object:
    """The PNG encoder (uint8 array → bytes)."""
    return png_bytes


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 120 real PNG digits (16×16 grayscale), one subfolder per class."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "make_digit_images", root / "examples" / "make_digit_images.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = tmp_path_factory.mktemp("digits") / "images"
    module.write_digit_images(folder, limit=120)
    return folder


@pytest.fixture
def run_context(tmp_path: Path) -> Iterator[RunContext]:
    """A fresh run (its own fitted state and caches), with events recorded."""
    context = RunContext("test-run", "test", tmp_path, EventBus("test-run"), seed=0)
    with running(context):
        yield context
