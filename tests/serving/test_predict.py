"""`rxpipe predict RUN_DIR INPUT...` on images, arrays and JSON rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rxpipe.cli import main

pytestmark = pytest.mark.slow


def test_predict_prints_top_labels_for_every_kind_of_input(
    digits_bundle: Any, encode_png: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Images, .npy batches and samples, JSON rows and a JSON argument get the model's answers."""
    images, scores = digits_bundle.images, digits_bundle.scores
    (tmp_path / "d0.png").write_bytes(encode_png(images[0]))
    np.save(tmp_path / "batch.npy", images[1:4])
    np.save(tmp_path / "one.npy", images[4])
    (tmp_path / "rows.json").write_text(json.dumps(images[5:7].tolist()))
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(i.tolist()) for i in images[7:9]))
    inputs = ["d0.png", "batch.npy", "one.npy", "rows.json", "rows.jsonl"]
    argv = [str(tmp_path / name) for name in inputs] + [json.dumps(images[9].tolist())]
    assert main(["predict", str(digits_bundle.run_dir), *argv, "--json", "--top-k", "2"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert [Path(a["input"]).name for a in answers] == [
        "d0.png",
        "batch.npy[0]",
        "batch.npy[1]",
        "batch.npy[2]",
        "one.npy",
        "rows.json[0]",
        "rows.json[1]",
        "rows.jsonl[0]",
        "rows.jsonl[1]",
        "argument",
    ]
    for answer, expected in zip(answers, scores[:10], strict=True):
        order = np.argsort(-expected)[:2]
        assert [p["label"] for p in answer["predictions"]] == [str(i) for i in order]
        np.testing.assert_allclose(
            [p["score"] for p in answer["predictions"]], expected[order], rtol=1e-5, atol=1e-6
        )


def test_predict_prints_one_line_per_sample(
    digits_bundle: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json: the input, then label (score) pairs."""
    np.save(tmp_path / "two.npy", digits_bundle.images[:2])
    assert main(["predict", str(digits_bundle.run_dir / "model"), str(tmp_path / "two.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    best = str(digits_bundle.scores[1].argmax())
    assert lines[1].startswith(f"{tmp_path / 'two.npy'}[1]  {best} (")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not an image", "expected an image, .npy, .npz, .json, .jsonl file"),
        (b"{bad", "expected JSON"),
    ],
)
def test_bad_inputs_exit_2_with_the_reason(
    digits_bundle: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    message: str,
) -> None:
    """An unreadable input exits 2 and says what was expected."""
    path = tmp_path / ("input.json" if content.startswith(b"{") else "input.dat")
    path.write_bytes(content)
    assert main(["predict", str(digits_bundle.run_dir), str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_directory_without_a_bundle_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run directory with no bundle fails with a message naming model/model_card.json."""
    assert main(["predict", str(tmp_path), "[1]"]) == 1
    assert "model/model_card.json" in capsys.readouterr().err
