"""Serving fixtures: a small trained digits bundle and a regression bundle per session, and
real server processes."""

from __future__ import annotations

import io
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import numpy as np
import pytest

import rxpipe

STARTUP_TIMEOUT_S = 120.0


@attrs.frozen
class DigitsBundle:
    """A trained digits run, its bundle, and raw samples with the model's own answers.

    Attributes:
        result: the run that trained and exported the model.
        run_dir: the run directory (the bundle is ``run_dir / "model"``).
        images: raw digits, uint8 (n, 8, 8, 1) with values 0–16, as collected.
        scores: the trained Keras model's scores for ``images`` (preprocessed in numpy).
    """

    result: rxpipe.RunResult
    run_dir: Path
    images: np.ndarray[Any, Any]
    scores: np.ndarray[Any, Any]

    def predict(self, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The trained model's scores for raw digits (the reference answers)."""
        trained = self.result.trained
        assert trained is not None
        x: Any = raw
        for step in trained.metadata.preprocessing:
            x = step.apply(x)
        return np.asarray(trained.model(x, training=False))


@pytest.fixture(scope="session")
def digits_bundle(exported_digits: rxpipe.RunResult) -> DigitsBundle:
    """The session's tiny exported digits run, with raw samples and the model's answers."""
    from sklearn.datasets import load_digits

    result = exported_digits
    images = load_digits().images[:64].astype(np.uint8)[..., np.newaxis]
    assert result.run_dir is not None
    bundle = DigitsBundle(result, result.run_dir, images, np.empty(0))
    return attrs.evolve(bundle, scores=bundle.predict(images))


def png_bytes(image: np.ndarray[Any, Any], scale: float = 255 / 16) -> bytes:
    """Encode one raw digit (8, 8, 1), values 0–16, as an 8×8 grayscale PNG (0–255)."""
    from PIL import Image

    pixels = np.round(image[..., 0].astype(np.float64) * scale).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@attrs.define
class Server:
    """A running ``rxpipe serve`` process."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def stats(self) -> dict[str, Any]:
        """The server's batching counters (``GET /stats``)."""
        answer: dict[str, Any] = httpx.get(f"{self.url}/stats", timeout=30).json()
        return answer

    def stop(self) -> int:
        """SIGTERM the server and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@contextmanager
def serving(run_dir: Path, log_dir: Path, *args: str) -> Iterator[Server]:
    """Start ``rxpipe serve RUN_DIR --port 0 ARGS`` and yield it once it listens; stop it after."""
    log = log_dir / f"serve-{time.monotonic_ns()}.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "rxpipe", "serve", str(run_dir), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    assert process.stdout is not None
    try:
        url = _announced_url(process, log)
        server = Server(process, url, log)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()


def _announced_url(process: subprocess.Popen[str], log: Path) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            line = process.stdout.readline()
            match = re.search(r"at (http://\S+)", line)
            if match:
                return match.group(1)
            if not line and process.poll() is not None:
                break
    raise AssertionError(f"rxpipe serve did not start; its log:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def server(
    digits_bundle: DigitsBundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``rxpipe serve`` on the digits bundle, shared by the session (1 MiB body limit)."""
    logs = tmp_path_factory.mktemp("logs")
    with serving(digits_bundle.run_dir, logs, "--max-body-mb", "1") as running:
        yield running


@pytest.fixture(scope="session")
def encode_png() -> Any:
    """:func:`png_bytes`, for tests (conftest modules are not importable by name)."""
    return png_bytes


@pytest.fixture
def start_server(digits_bundle: DigitsBundle, tmp_path: Path) -> Any:
    """Start another server on the digits bundle with extra CLI ``args`` (a context manager)."""
    return lambda *args: serving(digits_bundle.run_dir, tmp_path, *args)


def write_regression_bundle(directory: Path) -> Path:
    """Export a regression model on 3 float32 features: ``1e30·a − 1e30·b + c``.

    Its value for ``[0, 0, c]`` is ``c``; large ``a`` or ``b`` overflow float32 inside the
    model, so ``[1e10, 0, 0]`` answers Infinity, ``[0, 1e10, 0]`` -Infinity and
    ``[1e10, 1e10, 0]`` NaN: valid input, non-finite output.
    """
    import keras
    import reactivex

    from rxpipe.batch import DatasetMetadata, FeatureSpec
    from rxpipe.context import atomic_write
    from rxpipe.model import TrainedModel
    from rxpipe.operators.deploy import write_bundle

    inputs = keras.Input((3,), name="features")
    layer = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.array([[1e30], [-1e30], [1.0]], np.float32)])
    meta = DatasetMetadata("overflow", FeatureSpec((3,), "float32"), None)
    with atomic_write(directory / "model") as target:
        write_bundle(TrainedModel("linear", model, reactivex.empty(), meta), target)
    return directory / "model"


@pytest.fixture(scope="session")
def regression_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regression bundle (model card task "regression") whose model can overflow."""
    return write_regression_bundle(tmp_path_factory.mktemp("regression"))


@pytest.fixture(scope="session")
def regression_server(
    regression_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``rxpipe serve`` on the regression bundle, shared by the session."""
    with serving(regression_bundle, tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture(scope="session")
def batching_server(
    digits_bundle: DigitsBundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server whose batches close only when full: 8 samples, no time limit to speak of."""
    logs = tmp_path_factory.mktemp("logs")
    args = ("--max-batch-size", "8", "--max-wait-ms", "600000")
    with serving(digits_bundle.run_dir, logs, *args) as running:
        yield running
