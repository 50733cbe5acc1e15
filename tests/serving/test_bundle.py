"""Bundle helpers that need no model: finding a bundle, top-k, the public namespace."""

from __future__ import annotations

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
