"""Bundle helpers that need no model: finding a bundle, top-k, the public namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rxpipe.serving
from rxpipe.errors import BundleError
from rxpipe.serving import find_bundle, top_k


def test_find_bundle_accepts_a_run_dir_or_the_bundle(tmp_path: Path) -> None:
    """A run directory resolves to its model/; a bundle directory to itself."""
    bundle = tmp_path / "model"
    bundle.mkdir()
    (bundle / "model_card.json").write_text("{}")
    assert find_bundle(tmp_path) == bundle
    assert find_bundle(bundle) == bundle


def test_find_bundle_explains_what_is_missing(tmp_path: Path) -> None:
    """A directory without a model card raises BundleError naming what was expected."""
    with pytest.raises(BundleError, match=r"expected a run directory with a model bundle"):
        find_bundle(tmp_path)


@pytest.mark.parametrize(
    ("state", "received"),
    [
        ({}, "Received: neither exists (did the pipeline end with deploy.export?)"),
        ({"status": "running"}, "Received: a run that has not finished (its run.json says"),
        (
            {"status": "failed", "error": "stage 'train.fit' failed: loss became NaN"},
            "Received: a run that failed before exporting a model (stage 'train.fit' failed: "
            "loss became NaN)",
        ),
        ({"status": "completed"}, "Received: a run that exported no model (did the pipeline"),
    ],
)
def test_a_run_without_a_bundle_says_how_the_run_went(
    tmp_path: Path, state: dict[str, str], received: str
) -> None:
    """A run directory without a bundle: its run.json says whether it failed, still runs
    (or was killed) or completed without deploy.export."""
    if state:
        (tmp_path / "run.json").write_text(json.dumps({"run_id": "r", **state}))
    with pytest.raises(BundleError) as info:
        find_bundle(tmp_path)
    assert received in str(info.value)


def test_top_k_orders_labels_by_score() -> None:
    """The k best classes of each row, best first, named by label (or index without labels)."""
    scores = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    assert [b["label"] for b in top_k(scores, ["a", "b", "c"], 2)[0]] == ["b", "c"]
    assert [b["label"] for b in top_k(scores, None, 5)[1]] == ["0", "2", "1"]


def test_public_names_are_sorted_and_real() -> None:
    """rxpipe.serving.__all__ is sorted and every name exists."""
    assert rxpipe.serving.__all__ == sorted(rxpipe.serving.__all__)
    assert all(hasattr(rxpipe.serving, name) for name in rxpipe.serving.__all__)


def test_serve_and_predict_help_import_no_heavy_modules() -> None:
    """`rxpipe serve --help` and `rxpipe predict --help` import neither TF nor the web stack."""
    code = (
        "import sys, contextlib, io\n"
        "from rxpipe.cli import main\n"
        "for command in ('serve', 'predict'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try: main([command, '--help'])\n"
        "        except SystemExit: pass\n"
        "heavy = ('tensorflow', 'keras', 'starlette', 'uvicorn', 'PIL')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_predict_names_the_inputs_it_expects(digits_bundle: Any) -> None:
    """An array instead of a mapping of input names is a clear error, not an AttributeError."""
    from rxpipe.errors import PredictionInputError
    from rxpipe.serving.bundle import Bundle

    bundle = Bundle.load(digits_bundle.run_dir / "model")
    with pytest.raises(PredictionInputError) as info:
        bundle.predict(digits_bundle.images[:2])
    message = str(info.value)
    assert "expected a mapping of input names to arrays, e.g. {'features': batch}" in message
    assert "features uint8[8, 8, 1]. Received: ndarray" in message
    outputs = bundle.predict({"features": digits_bundle.images[:2]})
    np.testing.assert_allclose(outputs["scores"], digits_bundle.scores[:2], rtol=1e-4, atol=1e-5)


CHECK_SHAPES = """
import sys
import numpy as np
from rxpipe.errors import PredictionInputError
from rxpipe.serving import Bundle

bundle = Bundle.load(sys.argv[1])
for shape in [(2, 8, 8), (2, 64), (2, 4, 4, 1), (2, 8, 8, 3)]:
    try:
        bundle.predict({"features": np.zeros(shape, "uint8")})
    except PredictionInputError as error:
        print(error)
"""


@pytest.mark.slow
def test_predict_checks_shapes_before_tensorflow_sees_them(digits_bundle: Any) -> None:
    """Wrong-rank input (which made TensorFlow abort the process) is a clear error instead."""
    out = subprocess.run(  # a subprocess: an abort must fail this test, not kill pytest
        [sys.executable, "-c", CHECK_SHAPES, str(digits_bundle.run_dir)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    expected = "serving_default input 'features': expected uint8 values of shape (8, 8, 1) per "
    received = ["(8, 8)", "(64,)", "(4, 4, 1)", "(8, 8, 3)"]
    assert out.stdout.splitlines() == [
        f"{expected}sample. Received: integers of shape {shape} per sample (2 samples)"
        for shape in received
    ]


@pytest.mark.slow
def test_predict_checks_names_signatures_and_values(digits_bundle: Any) -> None:
    """Unknown inputs, unknown signatures and out-of-range values never reach TensorFlow."""
    from rxpipe.errors import PredictionInputError
    from rxpipe.serving.bundle import Bundle

    bundle = Bundle.load(digits_bundle.run_dir)
    images = digits_bundle.images[:2]
    with pytest.raises(PredictionInputError) as info:
        bundle.predict({"pixels": images})
    assert str(info.value) == (
        "serving_default: expected the inputs ['features']. Received: a mapping that lacks "
        "'features' and has the unknown key 'pixels'"
    )
    with pytest.raises(PredictionInputError, match=r"signature: expected one of \['serving_def"):
        bundle.predict({"features": images}, "serving_nope")
    bad = images.astype(np.int64)
    bad[1, 0, 0, 0] = 300
    with pytest.raises(PredictionInputError) as info:
        bundle.predict({"features": bad})
    assert str(info.value).endswith("(first 300 in sample 1 at (0, 0, 0))")


@pytest.mark.slow
def test_predict_reports_tensorflows_reason(digits_bundle: Any) -> None:
    """When the model rejects input, the error gives TensorFlow's reason, not its first line."""
    from rxpipe.errors import PredictionInputError
    from rxpipe.serving.bundle import Bundle

    bundle = Bundle.load(digits_bundle.run_dir)
    with pytest.raises(PredictionInputError) as info:
        bundle.predict_images([b"not an image"])  # not checked first, so TensorFlow decodes
    message = str(info.value)
    assert message.startswith(
        "serving_images: expected input the model can compute on. Received: input it rejected "
        "(Unknown image file format. One of JPEG"
    )
    assert "Graph execution error" not in message


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "Graph execution error:\n\nDetected at node cnn/flatten/Reshape defined at (most "
            "recent call last):\n<stack traces unavailable>\nInput to reshape is a tensor with "
            "128 values, but the requested shape has 512\n\t [[{{node cnn/flatten/Reshape}}]] "
            "[Op:__inference_signature_wrapper_predict_88]",
            "Input to reshape is a tensor with 128 values, but the requested shape has 512",
        ),
        (
            "Graph execution error:\n\nDetected at node d defined at (most recent call last):\n"
            "  File \"serve.py\", line 3, in <module>\n    x = f(y)\n\nNode: 'd'\n"
            "channels must be 0 or 3 for GIF, got 1\n\t [[{{node d}}]] [Op:__inference_f_9]",
            "channels must be 0 or 3 for GIF, got 1",
        ),
        (
            "{{function_node __wrapped__Reshape_device_/job:localhost/replica:0/task:0/device:"
            "CPU:0}} Input to reshape is a tensor with 4 values [Op:Reshape]",
            "Input to reshape is a tensor with 4 values",
        ),
        ("", "no reason given"),
    ],
)
def test_tf_reason_finds_the_line_that_explains(message: str, reason: str) -> None:
    """The reason of graph errors (with or without stack traces) and of eager op errors."""
    from rxpipe.serving.bundle import tf_reason

    assert tf_reason(message) == reason
