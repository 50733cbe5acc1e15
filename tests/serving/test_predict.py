"""`rxpipe predict RUN_DIR INPUT...` on images, arrays and JSON rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
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
        (b"not an image", "expected an image, .npy, .npz, .json, .jsonl, .csv file"),
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


def test_a_directory_without_a_bundle_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run directory with no bundle is a usage error naming model/model_card.json."""
    assert main(["predict", str(tmp_path), "[1]"]) == 2
    assert "model/model_card.json" in capsys.readouterr().err


def _object_npy(path: Path) -> None:
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _truncated_npy(path: Path) -> None:
    np.save(path, np.zeros((4, 8, 8, 1), np.uint8))
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        (
            "corrupt.npy",
            lambda p: p.write_bytes(b"garbage\n"),
            "corrupt.npy: expected a numeric array saved by numpy.save (no pickled objects). "
            "Received: a file that is not in .npy format "
            "(it starts with b'garbag', not b'\\x93NUMPY')",
        ),
        (
            "objects.npy",
            _object_npy,
            "objects.npy: expected a numeric array saved by numpy.save (no pickled objects). "
            "Received: a file numpy cannot read as one (ValueError: Object arrays cannot be "
            "loaded when allow_pickle=False)",
        ),
        (
            "truncated.npy",
            _truncated_npy,
            "truncated.npy: expected a numeric array saved by numpy.save (no pickled objects). "
            "Received: a file numpy cannot read as one",
        ),
        (
            "rows.jsonl",
            lambda p: p.write_text("[[1, 2]]\n[[1, 2\n"),
            "rows.jsonl, line 2: expected one JSON row per line. Received: '[[1, 2' (",
        ),
        (
            "arrays.npz",
            lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"),
            "arrays.npz: expected numeric arrays saved by numpy.savez (no pickled objects). "
            "Received: a file numpy cannot read as one",
        ),
    ],
)
def test_unreadable_files_exit_2_naming_the_file(
    digits_bundle: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    write: Any,
    message: str,
) -> None:
    """A corrupt or pickled .npy, a bad .npz, or a .jsonl line that is not JSON: no traceback."""
    path = tmp_path / name
    write(path)
    assert main(["predict", str(digits_bundle.run_dir), str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith(f"rxpipe predict: {path}")


def _savez(**arrays: Any) -> Any:
    return lambda path: np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        (
            "wrongshape.npy",
            lambda p: np.save(p, np.zeros((2, 7, 7), np.float32)),
            "wrongshape.npy: expected uint8 values of shape (8, 8, 1) per sample: an array of "
            "shape (8, 8, 1) for one sample, or (n, 8, 8, 1) for n samples. "
            "Received: a float32 array of shape (2, 7, 7)",
        ),
        (
            "fractions.npy",
            lambda p: np.save(p, np.full((8, 8, 1), 0.5, np.float32)),
            "fractions.npy: expected uint8 values, integers in [0, 255], of shape (8, 8, 1) "
            "per sample. Received: 0.5 in sample 0 at (0, 0, 0)",
        ),
        (
            "unnamed.npz",
            _savez(arr_0=np.zeros((1, 8, 8, 1), np.uint8)),
            "unnamed.npz: expected one array per model input, named ['features'] "
            "(numpy.savez(path, features=...)). Received: arrays named ['arr_0']",
        ),
        (
            "wrongshape.npz",
            _savez(features=np.zeros((2, 7, 7), np.float32)),
            "wrongshape.npz['features']: expected uint8 values of shape (8, 8, 1) per sample: "
            "an array of shape (n, 8, 8, 1) for n samples. "
            "Received: a float32 array of shape (2, 7, 7)",
        ),
        (
            "short.json",
            lambda p: p.write_text(json.dumps({"instances": [[1, 2, 3]]})),
            "short.json: instances: expected uint8 values of shape (8, 8, 1) per sample. "
            "Received: integers of shape (3,) per sample (1 sample)",
        ),
    ],
)
def test_files_that_do_not_fit_the_model_exit_2_naming_the_file(
    digits_bundle: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    write: Any,
    message: str,
) -> None:
    """A file of the wrong shape, dtype or array names: the file, the input's dtype and shape."""
    path = tmp_path / name
    write(path)
    assert main(["predict", str(digits_bundle.run_dir), str(path)]) == 2
    assert capsys.readouterr().err == f"rxpipe predict: {tmp_path}/{message}\n"


def test_a_wrong_npy_for_a_float32_model_names_float32(
    regression_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For a float32 input the message says float32 values, one sample's shape and the batch's."""
    path = tmp_path / "wrongshape.npy"
    np.save(path, np.zeros((2, 7, 7), np.float32))
    assert main(["predict", str(regression_bundle), str(path)]) == 2
    assert capsys.readouterr().err == (
        f"rxpipe predict: {path}: expected float32 values of shape (3,) per sample: an array "
        "of shape (3,) for one sample, or (n, 3) for n samples. "
        "Received: a float32 array of shape (2, 7, 7)\n"
    )


def test_a_float32_npy_sample_and_npz_batch_are_predicted(
    regression_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One sample (.npy of the sample's shape) and a batch (.npz by input name) both work."""
    np.save(tmp_path / "one.npy", np.array([0, 0, 2.5], np.float32))
    np.savez(tmp_path / "two.npz", features=np.array([[0, 0, 1.5], [0, 0, -3]], np.float32))
    argv = [str(tmp_path / "one.npy"), str(tmp_path / "two.npz")]
    assert main(["predict", str(regression_bundle), *argv, "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert [(Path(a["input"]).name, a["value"]) for a in answers] == [
        ("one.npy", 2.5),
        ("two.npz[0]", 1.5),
        ("two.npz[1]", -3.0),
    ]


def test_regression_models_print_their_values(
    regression_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A regression model's answer is its value (a label and score mean nothing for it)."""
    rows = json.dumps([[0, 0, 2.5], [0, 0, -40.25]])
    assert main(["predict", str(regression_bundle), rows]) == 0
    assert capsys.readouterr().out.splitlines() == ["argument[0]  2.5", "argument[1]  -40.25"]
    assert main(["predict", str(regression_bundle), "[0, 0, 7.5]", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"input": "argument", "value": 7.5}]


def test_a_camera_jpeg_with_more_pictures_is_read_as_its_first(
    digits_bundle: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An MPO file (a JPEG followed by more pictures, as phone cameras write them) answers
    as its first picture, the JPEG, does: training's decode_image reads it so too."""
    from PIL import Image

    pixels = np.round(digits_bundle.images[0][..., 0] * (255 / 16)).astype(np.uint8)
    first, second = Image.fromarray(pixels), Image.fromarray(pixels[::-1].copy())
    first.save(tmp_path / "d0.jpg", "JPEG", quality=95)
    first.save(tmp_path / "d0.mpo.jpg", "MPO", quality=95, save_all=True, append_images=[second])
    with Image.open(tmp_path / "d0.mpo.jpg") as written:
        assert written.format == "MPO"
    run_dir = str(digits_bundle.run_dir)
    argv = [str(tmp_path / "d0.jpg"), str(tmp_path / "d0.mpo.jpg"), "--json"]
    assert main(["predict", run_dir, *argv]) == 0
    jpeg, mpo = json.loads(capsys.readouterr().out)
    assert mpo["predictions"] == jpeg["predictions"]


def test_a_missing_file_or_a_directory_as_input_says_which(
    digits_bundle: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An INPUT that is neither a file nor JSON says whether it is missing or a folder."""
    run_dir = str(digits_bundle.run_dir)
    assert main(["predict", run_dir, str(tmp_path / "missing.png")]) == 2
    assert "Received: no such file, and not JSON" in capsys.readouterr().err
    assert main(["predict", run_dir, str(tmp_path)]) == 2
    assert "JSON row. Received: a directory" in capsys.readouterr().err


def test_a_scalar_npy_says_an_int64_array(
    digits_bundle: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dtype in the message takes its article: "an int64 array", not "a int64 array"."""
    path = tmp_path / "scalar.npy"
    np.save(path, np.array(3, np.int64))
    assert main(["predict", str(digits_bundle.run_dir), str(path)]) == 2
    assert capsys.readouterr().err.endswith("Received: an int64 array of shape ()\n")


def test_an_empty_json_list_is_no_samples(
    digits_bundle: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``[]`` holds no sample (it is not one sample of shape (0,)), in a file or an argument."""
    path = tmp_path / "rows.json"
    path.write_text("[]")
    assert main(["predict", str(digits_bundle.run_dir), str(path)]) == 2
    assert capsys.readouterr().err == (
        f"rxpipe predict: {path}: expected a non-empty list of samples. Received: an empty list\n"
    )
    assert main(["predict", str(digits_bundle.run_dir), "[]"]) == 2
    assert capsys.readouterr().err == (
        "rxpipe predict: argument '[]': expected a non-empty list of samples. "
        "Received: an empty list\n"
    )


def test_errors_in_a_json_argument_name_the_argument(
    regression_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Of several JSON arguments, the message quotes the one that does not fit."""
    assert main(["predict", str(regression_bundle), "[0, 0, 1]", "[0, 0]"]) == 2
    assert capsys.readouterr().err == (
        "rxpipe predict: argument '[0, 0]': expected float32 values of shape (3,) per sample. "
        "Received: integers of shape (2,) per sample (1 sample)\n"
    )


def test_a_jsonl_file_that_does_not_fit_is_named_once(
    regression_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain list of rows (.json) or lines (.jsonl) is named by its file, not "instances"."""
    path = tmp_path / "rows.jsonl"
    path.write_text("[0, 0, 1]\n[0, 0, null]\n")
    assert main(["predict", str(regression_bundle), str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"rxpipe predict: {path}: expected float32 values")


def test_an_image_for_a_model_on_rows_names_the_file(
    regression_bundle: Path, encode_png: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image given to a model that takes no images: the file, the model's input, the format."""
    (tmp_path / "d0.png").write_bytes(encode_png(np.zeros((8, 8, 1), np.uint8)))
    argv = ["[0, 0, 1]", str(tmp_path / "d0.png")]
    assert main(["predict", str(regression_bundle), *argv]) == 2
    assert capsys.readouterr().err == (
        f"rxpipe predict: {tmp_path / 'd0.png'}: expected arrays or rows (.npy, .npz, .json, "
        ".jsonl, .csv, or a JSON row) for model 'overflow', whose input is features float32[3]. "
        "Received: a PNG image (the model takes no images)\n"
    )


def test_an_image_format_tensorflow_does_not_decode_is_named(
    digits_bundle: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A WebP file is an image, but not one the model reads: the message says so."""
    from PIL import Image

    path = tmp_path / "d0.webp"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, "WEBP")
    assert main(["predict", str(digits_bundle.run_dir), str(path)]) == 2
    assert capsys.readouterr().err == (
        f"rxpipe predict: {path}: expected an image in PNG, JPEG, GIF, BMP. Received: WEBP\n"
    )


def test_large_inputs_reach_the_model_in_chunks(
    digits_bundle: Any, encode_png: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of many samples, and many images, reach the model ``chunk`` samples a call (a
    million samples take the memory of ``chunk``), answered in order as by one call."""
    from rxpipe.serving import Bundle
    from rxpipe.serving.predict import predict_inputs

    bundle = Bundle.load(digits_bundle.run_dir)
    images = np.concatenate([digits_bundle.images] * 3)[:150]
    np.save(tmp_path / "many.npy", images)
    pngs = [str(tmp_path / f"{i}.png") for i in range(3)]
    for i, png in enumerate(pngs):
        Path(png).write_bytes(encode_png(digits_bundle.images[i]))
    whole = bundle.predict({"features": images})["scores"]
    calls: list[int] = []
    predict = bundle.predict

    def counted(batch: Any, *args: Any) -> Any:
        calls.append(len(next(iter(batch.values()))))
        return predict(batch, *args)

    monkeypatch.setattr(bundle, "predict", counted)  # predict_images calls it too
    answers = list(predict_inputs(bundle, [pngs[0], str(tmp_path / "many.npy")], 10, chunk=64))
    assert calls == [1, 64, 64, 22]
    assert [Path(a.input).name for a in answers[:3]] == ["0.png", "many.npy[0]", "many.npy[1]"]
    for answer, expected in zip(answers[1:], whole, strict=True):
        got = {int(p["label"]): p["score"] for p in answer.top_k}
        np.testing.assert_allclose([got[i] for i in range(10)], expected, rtol=1e-5, atol=1e-6)
    calls.clear()
    answers = list(predict_inputs(bundle, pngs, chunk=2))
    assert calls == [2, 1]
    assert [Path(a.input).name for a in answers] == ["0.png", "1.png", "2.png"]


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle whose raw input is encoded images, decoded by its preprocessing."""
    import keras
    import reactivex

    from rxpipe.batch import DatasetMetadata, FeatureSpec
    from rxpipe.context import atomic_write
    from rxpipe.model import TrainedModel
    from rxpipe.operators.deploy import write_bundle

    from .test_raw_kinds import DecodeTiny

    inputs = keras.Input((16,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    raw = DatasetMetadata("raw", FeatureSpec((), "object"), ("dark", "light"))
    meta = raw.with_preprocessor(DecodeTiny(), FeatureSpec((16,), "float32"))
    directory = tmp_path_factory.mktemp("images")
    with atomic_write(directory / "model") as target:
        write_bundle(TrainedModel("tiny", model, reactivex.empty(), meta), target, name="tiny")
    return directory / "model"


def test_arrays_for_a_model_on_images_name_the_file(
    image_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pixel arrays for a model whose input is encoded images: the message asks for images."""
    np.save(tmp_path / "pixels.npy", np.zeros((8, 8, 1), np.uint8))
    np.savez(tmp_path / "pixels.npz", features=np.zeros((2, 8, 8, 1), np.uint8))
    for name, where in (("pixels.npy", "pixels.npy"), ("pixels.npz", "pixels.npz['features']")):
        assert main(["predict", str(image_bundle), str(tmp_path / name)]) == 2
        assert capsys.readouterr().err == (
            f"rxpipe predict: {tmp_path / where}: expected image files (PNG, JPEG, GIF, BMP) for "
            "model 'tiny', whose input 'features' is encoded images. Received: a uint8 array "
            f"of shape {'(8, 8, 1)' if name.endswith('npy') else '(2, 8, 8, 1)'}\n"
        )


def test_an_image_the_model_cannot_decode_is_named(
    image_bundle: Path, encode_png: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image that reads but that the model's decoder refuses (a GIF, which TensorFlow
    does not decode to one channel): the error names that file among the images
    predicted together."""
    from PIL import Image

    Image.new("P", (8, 8)).save(tmp_path / "flat.gif", "GIF")
    (tmp_path / "good.png").write_bytes(encode_png(np.zeros((8, 8, 1), np.uint8)))
    argv = [str(tmp_path / "good.png"), str(tmp_path / "flat.gif"), str(tmp_path / "good.png")]
    assert main(["predict", str(image_bundle), *argv]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"rxpipe predict: {tmp_path / 'flat.gif'}: serving_default: expected")
    assert main(["predict", str(image_bundle), str(tmp_path / "good.png")]) == 0


def truncated_jpeg(path: Path, keep: float = 0.5) -> Path:
    """A 64×64 JPEG of noise cut to ``keep`` of its bytes (a download that stopped)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: int(len(buffer.getvalue()) * keep)])
    return path


def test_a_truncated_jpeg_is_named_without_libjpegs_complaint(
    digits_bundle: Any, encode_png: Any, tmp_path: Path
) -> None:
    """In a real `rxpipe predict` process, a truncated JPEG among other images exits 2
    naming it, and TensorFlow's C++ log line ("Premature end of JPEG data") does not
    reach stderr: the file is refused from its bytes before TensorFlow decodes it."""
    import os
    import subprocess
    import sys

    cut = truncated_jpeg(tmp_path / "cut.jpg")
    (tmp_path / "good.png").write_bytes(encode_png(digits_bundle.images[0]))
    images = [str(tmp_path / "good.png"), str(cut)]
    process = subprocess.run(
        [sys.executable, "-m", "rxpipe", "predict", str(digits_bundle.run_dir), *images],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},  # every TensorFlow log line shows
    )
    assert process.returncode == 2, process.stderr
    assert "Premature end of JPEG data" not in process.stderr
    assert "jpeg_mem.cc" not in process.stderr
    assert process.stderr.splitlines()[-1] == (
        f"rxpipe predict: {cut}: expected a complete JPEG image (its data through the "
        f"end-of-image marker). Received: {cut.stat().st_size} bytes that end before the "
        "image does (a truncated file)"
    )
    assert process.stdout == ""


def test_prediction_lines_are_written_as_the_predictions_come() -> None:
    """The CLI prints a sample's line before the next sample is predicted (so `| head`
    and a long file need not wait for the whole input), in text and JSON alike."""
    from rxpipe.serving.predict import Prediction, prediction_lines

    def predictions() -> Iterator[Prediction]:
        yield Prediction("a.npy[0]", [], 1.5)
        yield Prediction("a.npy[1]", [], 2.5)
        raise AssertionError("predicted before it was needed")

    lines = prediction_lines(predictions(), 8)
    assert [next(lines), next(lines)] == ["a.npy[0]  1.5", "a.npy[1]  2.5"]
    as_json = prediction_lines(predictions(), 8, as_json=True)
    assert [next(as_json) for _ in range(5)] == [
        "[",
        "  {",
        '    "input": "a.npy[0]",',
        '    "value": 1.5',
        "  },",
    ]
