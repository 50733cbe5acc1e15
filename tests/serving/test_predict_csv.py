"""`rxpipe predict RUN_DIR rows.csv`: a table model's CSV rows, read as its training data was."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rxpipe
from rxpipe.cli import main
from rxpipe.errors import PredictionInputError
from rxpipe.serving import Bundle
from rxpipe.serving.csv_input import CsvTable, read_csv
from rxpipe.serving.predict import predict_inputs, read_inputs

pytestmark = pytest.mark.slow

COLUMNS = ["alcohol", "od280/od315", "color", "cultivar"]
"""The training table: a filled number, a number TensorFlow renames and that the model
does not fill, a one-hot text column, the label."""


def table_rows(count: int, start: int = 0) -> list[list[str]]:
    """``count`` data rows as the training CSV writes them (``?`` and ``""`` missing)."""
    rng = np.random.default_rng(start)
    rows = []
    for i in range(start, start + count):
        alcohol, ratio = rng.normal(13, 1), rng.normal(2.5, 0.5)
        color = ["red", "white", "?", ""][i % 4]
        rows.append(
            [
                "?" if i % 5 == 2 else f"{alcohol:.2f}",
                f"{ratio:.2f}",
                color,
                ["barolo", "grignolino"][int(alcohol > 13)],
            ]
        )
    return rows


def write_table(
    path: Path, rows: list[list[str]], columns: list[str] = COLUMNS, delimiter: str = ";"
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter=delimiter)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory: pytest.TempPathFactory) -> rxpipe.RunResult:
    """A tiny MLP trained for one epoch on a ``;``-separated CSV whose missing cells are
    ``""`` and ``?`` (trains once for the module)."""
    from rxpipe.operators import access, collect, deploy, models, process, train

    folder = tmp_path_factory.mktemp("wine-csv")
    path = write_table(folder / "train.csv", table_rows(60))
    return rxpipe.Pipeline(
        collect.csv(str(path), label="cultivar", delimiter=";", missing=["", "?"]),
        access.split(train=0.8, validation=0.1, test=0.1, seed=0),
        process.label_encode(),
        process.fill_missing(columns=["alcohol"]),
        process.one_hot(columns=["color"]),
        process.standardize(columns=["alcohol", "od280/od315"]),
        process.concat_columns(columns=["alcohol", "od280/od315", "color"]),
        access.batch(16),
        models.mlp(hidden=[4]),
        train.fit(epochs=1),
        deploy.export(),
        name="wine_csv",
        runs_dir=folder / "runs",
    ).run(progress=False)


@pytest.fixture(scope="module")
def bundle(wine_run: rxpipe.RunResult) -> Bundle:
    return Bundle.load(wine_run.run_dir)


def json_rows(rows: list[list[str]]) -> list[dict[str, Any]]:
    """The rows as JSON rows (what the server takes): numbers, texts, null for missing."""

    def cell(column: str, value: str) -> Any:
        if value.strip() in ("", "?"):
            return None
        return value if column == "color" else float(value)

    return [{c: cell(c, v) for c, v in zip(COLUMNS[:3], row, strict=False)} for row in rows]


def answers(bundle: Bundle, inputs: list[str], chunk: int = 256) -> list[dict[str, float]]:
    """Each sample's scores by label."""
    return [
        {p["label"]: p["score"] for p in answer.top_k}
        for answer in predict_inputs(bundle, inputs, k=2, chunk=chunk)
    ]


def test_the_training_csv_is_predicted_as_json_rows_of_its_cells(
    wine_run: rxpipe.RunResult,
    bundle: Bundle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The training file itself (``;``-separated, ``?`` missing, with its label column) is
    read with the training data's rules from the bundle's pipeline.toml: each row answers
    what the same row sent as JSON answers (a missing cell as null)."""
    rows = table_rows(9, start=100)
    path = write_table(tmp_path / "wine.csv", rows)
    assert main(["predict", str(wine_run.run_dir), str(path), "--json", "--top-k", "2"]) == 0
    out, err = capsys.readouterr()
    got = json.loads(out)
    assert [a["input"] for a in got] == [f"{path}[{i}]" for i in range(9)]
    assert err == ""  # the label column is expected: no note
    expected = answers(bundle, [json.dumps(json_rows(rows))])
    for answer, scores in zip(got, expected, strict=True):
        assert {p["label"]: p["score"] for p in answer["predictions"]} == pytest.approx(
            scores, rel=1e-6
        )


def test_the_label_may_be_left_out_and_other_columns_are_noted_not_read(
    wine_run: rxpipe.RunResult, bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the label, with columns in another order, an unnamed index column (as
    pandas writes it) and a column of notes: the model reads its own columns by name,
    and a note names the columns not read."""
    rows = table_rows(4, start=200)
    shuffled = [[str(i), row[2], "ok; fine", row[0], row[1]] for i, row in enumerate(rows)]
    columns = ["", "color", "notes", "alcohol", "od280/od315"]
    path = write_table(tmp_path / "unlabelled.csv", shuffled, columns)
    assert main(["predict", str(wine_run.run_dir), str(path), "--top-k", "1"]) == 0
    out, err = capsys.readouterr()
    assert err == (
        f"rxpipe predict: note: {path}: columns '', 'notes' are not inputs of the model: not read\n"
    )
    lines = out.splitlines()
    expected = answers(bundle, [json.dumps(json_rows(rows))])
    for i, (line, scores) in enumerate(zip(lines, expected, strict=True)):
        name, label, _score = line.split()  # the names padded to the longest the file allows
        assert (name, label) == (f"{path}[{i}]", max(scores, key=scores.__getitem__))


def test_a_column_the_model_needs_is_named_when_missing(
    wine_run: rxpipe.RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header without an input's column: which one, and the file's columns."""
    rows = [row[1:] for row in table_rows(2)]
    path = write_table(tmp_path / "short.csv", rows, COLUMNS[1:])
    assert main(["predict", str(wine_run.run_dir), str(path)]) == 2
    assert capsys.readouterr().err == (
        f"rxpipe predict: {path}: expected a column for each input of model 'wine_csv' "
        "(3 columns). Received: a header without 'alcohol' (its 3 columns: od280/od315, "
        "color, cultivar; fields split at ';', as in the training data)\n"
    )


def _cell(line: int, column: int, value: str) -> Any:
    """A writer of the training table whose data line ``line`` has ``value`` in ``column``."""

    def write(path: Path) -> None:
        rows = table_rows(5)
        rows[line - 2][column] = value
        write_table(path, rows)

    return write


def _undecodable(path: Path) -> None:
    write_table(path, table_rows(3))
    path.write_bytes(path.read_bytes().replace(b"white", b"wh\xefte"))


def _wrong_count(path: Path) -> None:
    rows: list[list[str]] = table_rows(4)
    rows[2] = rows[2][:2]
    write_table(path, rows)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        pytest.param(
            _cell(4, 0, "13,5"),
            "line 4: column 'alcohol': expected a number. Received: '13,5'",
            id="not-a-number",
        ),
        pytest.param(
            _cell(3, 1, "?"),
            "line 3, column 'od280/od315': expected float32 values of shape () per sample "
            "(the model fills no missing values in this input). Received: a missing value ('?')",
            id="missing-where-the-model-fills-none",
        ),
        pytest.param(
            _cell(5, 1, "1e39"),
            "line 5: column 'od280/od315': expected a finite float32 number (magnitude at "
            "most 3.402823e+38). Received: '1e39', which overflows float32",
            id="overflow",
        ),
        pytest.param(
            _wrong_count,
            "line 4: expected 4 fields (alcohol, od280/od315, color, cultivar). Received: 2",
            id="fields",
        ),
        pytest.param(
            _undecodable,
            "line 3, field 3: expected utf-8 text (the training data's encoding). "
            "Received: the byte 0xef",
            id="undecodable",
        ),
    ],
)
def test_a_bad_row_names_the_file_line_and_column(
    wine_run: rxpipe.RunResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write: Any,
    message: str,
) -> None:
    """A cell that is not what the model takes: the file, the line, the column, the cell;
    the rows before it are answered first."""
    path = tmp_path / "rows.csv"
    write(path)
    assert main(["predict", str(wine_run.run_dir), str(path)]) == 2
    out, err = capsys.readouterr()
    assert err == f"rxpipe predict: {path}, {message}\n"
    line = int(message.split()[1].rstrip(":,"))
    assert len(out.splitlines()) <= line - 2  # no answer for the bad row or after it


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "expected a header row naming the columns, then rows. Received: an empty file"),
        (
            b"alcohol;od280/od315;color\n",
            "expected a header row, then rows of samples. Received: only the header",
        ),
        (
            b"alcohol;od280/od315;alcohol;color\n1;2;3;red\n",
            "expected each column the model reads once. Received: 'alcohol' in columns 1, 3",
        ),
    ],
)
def test_an_empty_or_ambiguous_file_is_refused_before_any_answer(
    wine_run: rxpipe.RunResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    message: str,
) -> None:
    """No header, no rows, or a column the model reads named twice."""
    path = tmp_path / "rows.csv"
    path.write_bytes(content)
    assert main(["predict", str(wine_run.run_dir), str(path)]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"rxpipe predict: {path}: {message}\n")


def test_rows_are_read_and_predicted_a_chunk_at_a_time(
    bundle: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSV of 150 rows reaches the model 64 rows a call, each chunk read when the one
    before is answered: a bad last row fails only after the rows before are answered."""
    rows = table_rows(150, start=300)
    path = write_table(tmp_path / "many.csv", rows)
    table = read_csv(path, bundle)
    assert isinstance(table, CsvTable)
    calls: list[int] = []
    predict = bundle.predict

    def counted(batch: Any, *args: Any) -> Any:
        calls.append(len(next(iter(batch.values()))))
        return predict(batch, *args)

    monkeypatch.setattr(bundle, "predict", counted)
    got = answers(bundle, [str(path)], chunk=64)
    assert calls == [64, 64, 22]
    monkeypatch.setattr(bundle, "predict", predict)
    assert got == [
        pytest.approx(a, rel=1e-6) for a in answers(bundle, [json.dumps(json_rows(rows))])
    ]

    rows[-1][0] = "thirteen"
    write_table(path, rows)
    inputs = read_inputs(bundle, [str(path)])  # the header only: fine
    predictions: Iterator[Any] = predict_inputs(bundle, inputs, chunk=64)
    assert [next(predictions).input for _ in range(128)][-1] == f"{path}[127]"
    with pytest.raises(PredictionInputError, match=r"line 151: column 'alcohol': expected a num"):
        list(predictions)


def test_a_bundle_without_its_pipeline_reads_collect_csvs_defaults(
    wine_run: rxpipe.RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without pipeline.toml (a bundle written by write_bundle) a CSV is read with
    collect.csv's defaults: ``,`` between fields, ``NA`` and ``""`` missing."""
    model = shutil.copytree(Path(wine_run.artifacts["model"]), tmp_path / "model")
    (model / "pipeline.toml").unlink()
    rows = table_rows(3)
    path = write_table(tmp_path / "rows.csv", rows)
    assert main(["predict", str(model), str(path)]) == 2
    assert "fields split at ',', as in the training data" in capsys.readouterr().err
    comma = [[cell.replace("?", "NA") for cell in row] for row in rows]
    write_table(path, comma, delimiter=",")
    assert main(["predict", str(model), str(path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_a_csv_for_a_model_not_on_a_table_is_refused(
    regression_bundle: Path, digits_bundle: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model on arrays (as examples/wine.toml trains: 13 values in one input, no column
    names) or on images takes no CSV file: the message says what to give instead."""
    path = tmp_path / "rows.csv"
    path.write_text("a,b,c\n1,2,3\n")
    assert main(["predict", str(regression_bundle), str(path)]) == 2
    assert capsys.readouterr().err == (
        f"rxpipe predict: {path}: expected a model on a table (one input per column, as "
        "collect.csv reads them) for a CSV file. Received: model 'overflow', whose input is "
        "features float32[3] (arrays of several values a sample, whose columns the model "
        "card does not name: give .npy, .npz, .json or .jsonl rows)\n"
    )
    assert main(["predict", str(digits_bundle.run_dir), str(path)]) == 2
    assert capsys.readouterr().err.endswith(
        "whose input is features uint8[8, 8, 1] (encoded images: give image files)\n"
    )


def test_a_text_model_trained_on_text_csv_reads_its_text_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """collect.text_csv's ``text`` column feeds the model's one input (``features``), and
    a text with commas, quoted, is one cell."""
    from rxpipe.operators import access, collect, deploy, models, process, train

    texts = [("the match was won in extra time", "sports"), ("bake the bread slowly", "food")]
    source = tmp_path / "texts.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["label", "body"])
        writer.writerows([(label, text) for text, label in texts * 10])
    run = rxpipe.Pipeline(
        collect.text_csv(str(source), text="body", label="label"),
        access.split(train=0.8, validation=0.1, test=0.1, seed=0),
        process.label_encode(),
        process.vectorize(max_tokens=50, sequence_length=8),
        access.batch(8),
        models.text_classifier(embedding_dim=4, dense=4),
        train.fit(epochs=1),
        deploy.export(),
        name="texts",
        runs_dir=tmp_path / "runs",
    ).run(progress=False)
    path = tmp_path / "rows.csv"
    path.write_text('body\n"won, in extra time"\nbake bread\n')
    assert main(["predict", str(run.run_dir), str(path), "--json"]) == 0
    got = [a["predictions"] for a in json.loads(capsys.readouterr().out)]
    bundle = Bundle.load(run.run_dir)
    expected = [a.top_k for a in predict_inputs(bundle, ["won, in extra time", "bake bread"])]
    assert got == expected


# A model trained on a bundled table (collect.wine): one input of 13 values, which its
# card names (inputs.features.columns), read from a CSV by those names.


@pytest.fixture(scope="module")
def bundled_wine_run(tmp_path_factory: pytest.TempPathFactory) -> rxpipe.RunResult:
    """examples/wine.toml's pipeline, briefly: collect.wine, standardized, a tiny MLP
    trained for two epochs and exported (trains once for the module)."""
    from rxpipe.operators import access, collect, deploy, models, process, train

    return rxpipe.Pipeline(
        collect.wine(),
        access.split(seed=0),
        process.standardize(),
        access.batch(32),
        models.mlp(hidden=[8]),
        train.fit(epochs=2, learning_rate=0.01),
        deploy.export(),
        name="wine",
        runs_dir=tmp_path_factory.mktemp("bundled-wine") / "runs",
    ).run(progress=False)


def wine_table() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[str]]:
    """scikit-learn's wine measurements, cultivars and column names."""
    from sklearn.datasets import load_wine

    data = load_wine()
    return data.data, data.target, [str(n) for n in data.feature_names]


def write_wine(
    path: Path, rows: list[int], order: list[str], extra: dict[str, str] | None = None
) -> Path:
    """The wine ``rows`` as a CSV whose header is ``order`` (column names, ``target``
    for the cultivar) and then the ``extra`` columns, each with its one value."""
    data, target, names = wine_table()
    extra = extra or {}
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow([*order, *extra])
        for row in rows:
            cells = {name: repr(float(v)) for name, v in zip(names, data[row], strict=True)}
            cells["target"] = str(target[row])
            writer.writerow([*(cells[c] for c in order), *extra.values()])
    return path


def shuffled_columns(seed: int = 0) -> list[str]:
    """The 13 names and ``target``, in a shuffled order."""
    _, _, names = wine_table()
    return [str(c) for c in np.random.default_rng(seed).permutation([*names, "target"])]


def test_a_model_on_collect_wine_reads_a_csv_by_its_cards_column_names(
    bundled_wine_run: rxpipe.RunResult, tmp_path: Path
) -> None:
    """In a real `rxpipe predict` process, a CSV of wines with the 13 columns in another
    order and the label column ``target`` answers what Bundle.predict answers for the
    same rows as float32[13] arrays in scikit-learn's order; the label column is not
    noted."""
    import subprocess
    import sys

    bundle = Bundle.load(bundled_wine_run.run_dir)
    data, _, names = wine_table()
    assert bundle.inputs["features"].columns == tuple(names)
    rows = [0, 1, 60, 61, 130, 177]
    order = shuffled_columns()
    assert order[:13] != names  # the file's order is not the model's
    path = write_wine(tmp_path / "wine.csv", rows, order)
    command = ["predict", str(bundled_wine_run.run_dir), str(path), "--json", "--top-k", "3"]
    process = subprocess.run(
        [sys.executable, "-m", "rxpipe", *command],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr
    assert "note" not in process.stderr
    got = json.loads(process.stdout)
    assert [a["input"] for a in got] == [f"{path}[{i}]" for i in range(len(rows))]
    scores = bundle.predict({"features": data[rows].astype("float32")})["scores"]
    assert bundle.labels is not None
    for answer, expected in zip(got, scores, strict=True):
        assert {p["label"]: p["score"] for p in answer["predictions"]} == pytest.approx(
            dict(zip(bundle.labels, expected.tolist(), strict=True)), rel=1e-6
        )


def test_a_wine_csv_with_other_columns_has_them_noted(
    bundled_wine_run: rxpipe.RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ``target`` and with a column of notes: the notes are named, not read, and
    the answers are those of the same rows as arrays."""
    bundle = Bundle.load(bundled_wine_run.run_dir)
    data, _, _ = wine_table()
    order = [c for c in shuffled_columns(1) if c != "target"]
    path = write_wine(tmp_path / "notes.csv", [5, 100], order, {"notes": "fine, dry"})
    assert main(["predict", str(bundled_wine_run.run_dir), str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == (
        f"rxpipe predict: note: {path}: column 'notes' is not an input of the model: not read\n"
    )
    scores = bundle.predict({"features": data[[5, 100]].astype("float32")})["scores"]
    best = [bundle.labels[i] for i in scores.argmax(axis=1)]  # type: ignore[index]
    assert [a["predictions"][0]["label"] for a in json.loads(out)] == best


def test_a_wine_csv_without_a_column_names_it(
    bundled_wine_run: rxpipe.RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header without ``malic_acid`` and ``hue``: the error names both, and the file's
    columns."""
    order = [c for c in shuffled_columns() if c not in ("malic_acid", "hue")]
    path = write_wine(tmp_path / "short.csv", [0], order)
    assert main(["predict", str(bundled_wine_run.run_dir), str(path)]) == 2
    absent = [c for c in wine_table()[2] if c in ("malic_acid", "hue")]
    assert capsys.readouterr().err == (
        f"rxpipe predict: {path}: expected a column for each input of model 'wine' (13 "
        "columns: the values of input 'features' as the model card names them, in any "
        f"order). Received: a header without {', '.join(map(repr, absent))} (its 12 "
        f"columns: {', '.join(order[:10])} and 2 more; fields split at ',')\n"
    )


def test_a_wine_csv_without_a_header_is_refused_naming_the_columns(
    bundled_wine_run: rxpipe.RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows alone, even of the 13 values in the model's order, do not say which value is
    which: the error asks for a header and lists the columns in the card's order."""
    data, _, names = wine_table()
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in data[:3]) + "\n")
    assert main(["predict", str(bundled_wine_run.run_dir), str(path)]) == 2
    first = [repr(float(v)) for v in data[0][:5]]
    assert capsys.readouterr().err == (
        f"rxpipe predict: {path}: expected a header row naming the 13 columns of input "
        f"'features' of model 'wine', in any order: {', '.join(names)}. Received: a first "
        f"row that names none of them ({', '.join(first)} and 8 more: a file without a "
        "header?)\n"
    )


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (
            "NA",
            "column 'ash': expected float32 values of shape (13,) per sample (the model "
            "fills no missing values in this input). Received: a missing value ('NA')",
        ),
        ("2,4", "column 'ash': expected a number. Received: '2,4'"),
        (
            "1e39",
            "column 'ash': expected a finite float32 number (magnitude at most "
            "3.402823e+38). Received: '1e39', which overflows float32",
        ),
    ],
)
def test_a_bad_wine_cell_names_the_file_line_and_column(
    bundled_wine_run: rxpipe.RunResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cell: str,
    message: str,
) -> None:
    """A missing value (which this model does not fill), a cell that is no number or
    one that overflows float32, in one of the 13 columns: the file, line and column."""
    order = shuffled_columns()
    path = write_wine(tmp_path / "rows.csv", [0, 1, 2], order)
    lines = path.read_text().splitlines()
    cells = next(csv.reader([lines[2]]))
    cells[order.index("ash")] = cell
    lines[2] = ",".join(f'"{c}"' if "," in c else c for c in cells)
    path.write_text("\n".join(lines) + "\n")
    assert main(["predict", str(bundled_wine_run.run_dir), str(path)]) == 2
    separator = "," if message.startswith("column 'ash': expected float32 values") else ":"
    assert capsys.readouterr().err == f"rxpipe predict: {path}, line 3{separator} {message}\n"


def test_a_card_without_column_names_still_refuses_a_csv(
    bundled_wine_run: rxpipe.RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wine bundle whose card has no ``columns`` (exported before they were recorded)
    loads as before and refuses a CSV, saying what to give instead."""
    model = shutil.copytree(Path(bundled_wine_run.artifacts["model"]), tmp_path / "model")
    card = json.loads((model / "model_card.json").read_text())
    del card["inputs"]["features"]["columns"]
    (model / "model_card.json").write_text(json.dumps(card))
    path = write_wine(tmp_path / "wine.csv", [0], shuffled_columns())
    assert main(["predict", str(model), str(path)]) == 2
    assert capsys.readouterr().err == (
        f"rxpipe predict: {path}: expected a model on a table (one input per column, as "
        "collect.csv reads them) for a CSV file. Received: model 'wine', whose input is "
        "features float32[13] (arrays of several values a sample, whose columns the model "
        "card does not name: give .npy, .npz, .json or .jsonl rows)\n"
    )
