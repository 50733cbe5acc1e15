"""Tests of collect.csv and collect.text_csv."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st

from rxpipe import ConfigError, Pipeline, SamplesSkipped, StageError
from rxpipe.flow._tally import Tally, tallying
from rxpipe.operators import access, collect, process
from rxpipe.operators.collect import _csv
from rxpipe.testing import EventRecorder
from rxpipe.testing import collect as run

TABLE = """age,color,income,label
31,red,1200.5,yes
,blue,NA,no
45,red,980,yes
27,,1500,no
"""


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """A small CSV with a missing number, a missing string and a label column."""
    path = tmp_path / "people.csv"
    path.write_text(TABLE)
    return path


def test_columns_are_typed_with_missing_values(table: Path) -> None:
    """Numbers become float32 with NaN; text becomes objects with None; labels stay raw."""
    [batch] = run(reactivex.empty().pipe(collect.csv(str(table), label="label")))
    features = batch.features
    assert isinstance(features, dict)
    assert list(features) == ["age", "color", "income"]
    assert features["age"].dtype == np.float32
    assert np.isnan(features["age"][1])
    assert np.isnan(features["income"][1])
    assert features["color"].tolist() == ["red", "blue", "red", None]
    assert batch.labels.tolist() == ["yes", "no", "yes", "no"]
    assert batch.ids.tolist() == [0, 1, 2, 3]
    assert batch.metadata.features["color"].dtype == "object"  # type: ignore[index]


def test_every_pass_shares_one_metadata_object(table: Path) -> None:
    """Reading the file again gives equal metadata as the same object (for downstream caches)."""
    stream = reactivex.empty().pipe(collect.csv(str(table), label="label"))
    assert run(stream)[0].metadata is run(stream)[0].metadata


def test_label_names_encode_labels_and_chunks_are_lazy(table: Path) -> None:
    """With label_names the labels are class indices; rows arrive chunk_size at a time."""
    stage = collect.csv(str(table), label="label", label_names=["no", "yes"], chunk_size=3)
    batches = run(reactivex.empty().pipe(stage))
    assert [b.size for b in batches] == [3, 1]
    assert np.concatenate([b.labels for b in batches]).tolist() == [1, 0, 1, 0]
    assert batches[0].metadata.label_names == ("no", "yes")


def test_types_columns_and_id_column(tmp_path: Path) -> None:
    """types forces a column's type; columns picks features; id_column gives the ids."""
    path = tmp_path / "t.csv"
    path.write_text("id,zip,score,y\na,0101,1.5,2.0\nb,0202,2.5,3.0\n")
    stage = collect.csv(
        str(path), label="y", columns=["zip", "score"], types={"zip": "str"}, id_column="id"
    )
    [batch] = run(reactivex.empty().pipe(stage))
    assert batch.features["zip"].tolist() == ["0101", "0202"]  # type: ignore[index]
    assert batch.ids.tolist() == ["a", "b"]
    assert batch.labels.dtype == np.float32


def test_one_feature_column_is_a_plain_array_and_headerless_files(tmp_path: Path) -> None:
    """A single feature column is one array; without a header, columns are named by position."""
    path = tmp_path / "h.csv"
    path.write_text("1;x\n2;y\n")
    [batch] = run(
        reactivex.empty().pipe(collect.csv(str(path), header=False, delimiter=";", label="1"))
    )
    assert batch.features.tolist() == [1.0, 2.0]
    assert batch.labels.tolist() == ["x", "y"]


def test_malformed_rows_fail_naming_file_and_line(table: Path) -> None:
    """A short row or a non-number in a number column names the file, line and column."""
    table.write_text(TABLE + "50,red\n")
    with pytest.raises(StageError, match=r"people\.csv' line 6: expected 4 fields") as info:
        run(reactivex.empty().pipe(collect.csv(str(table), label="label")))
    assert info.value.sample_ids == (4,)
    table.write_text(TABLE + "old,red,5,yes\n")
    stage = collect.csv(str(table), label="label", types={"age": "float"})
    with pytest.raises(StageError, match=r"line 6: column 'age': expected a number"):
        run(reactivex.empty().pipe(stage))


def test_malformed_rows_are_skipped_and_reported(table: Path) -> None:
    """With on_error='skip' the bad rows are left out, the good ones of the chunk kept."""
    table.write_text(TABLE + "50,red\nold,red,5,yes\n52,blue,7,maybe\n")
    tally = Tally("collect.csv")
    with tallying(tally):
        stage = collect.csv(
            str(table),
            label="label",
            label_names=["no", "yes"],
            types={"age": "float"},
            on_error="skip",
        )
        batches = run(reactivex.empty().pipe(stage))
    assert np.concatenate([b.ids for b in batches]).tolist() == [0, 1, 2, 3]
    assert [s.sample_id for s in tally.skipped] == [4, 5, 6]
    assert "label_names" in tally.skipped[2].reason


def test_a_run_reports_skipped_rows_once_in_its_result_and_events(tmp_path: Path) -> None:
    """In a run, rows skipped by collect.csv reach RunResult.skipped and the stage counts.

    standardize fits on a first pass, so the file is read twice; each bad row is
    reported once.
    """
    rows = ["x,y,label", *(f"{i},{i % 3},{i % 2}" for i in range(20))]
    rows[5], rows[9] = "oops,1,0", "7,1"  # lines 6 and 10: not a number; too few fields
    (tmp_path / "rows.csv").write_text("\n".join(rows) + "\n")
    pipeline = Pipeline(
        collect.csv(
            str(tmp_path / "rows.csv"), label="label", types={"x": "float"}, on_error="skip"
        ),
        access.split(train=0.5, validation=0.0, test=0.5, seed=0),
        process.standardize(),
        name="skips",
        runs_dir=tmp_path / "runs",
    )
    recorder = EventRecorder()
    pipeline.events.subscribe(recorder)
    result = pipeline.run(progress=False)
    assert sorted(s.sample_id for s in result.skipped) == [4, 8]
    assert all(s.stage == "collect.csv" for s in result.skipped)
    counts = result.counts["collect.csv"]
    assert counts.passes == 2
    assert counts.samples_out == 2 * 18
    assert counts.samples_failed == 2 * 2
    reported = [i for e in recorder.of_type(SamplesSkipped) for i in e.sample_ids]
    assert sorted(reported) == [4, 8]


def test_bad_parameters_fail_at_construction(table: Path, tmp_path: Path) -> None:
    """A missing file, an unknown type or a long delimiter is a config error."""
    with pytest.raises(ConfigError, match=r"collect\.csv\.path: expected an existing file"):
        collect.csv(str(tmp_path / "none.csv"))
    with pytest.raises(ConfigError, match=r"collect\.csv\.types\.age: expected one of"):
        collect.csv(str(table), types={"age": "decimal"})
    with pytest.raises(ConfigError, match=r"collect\.csv\.delimiter"):
        collect.csv(str(table), delimiter=";;")


def test_unknown_label_column_names_the_columns(table: Path) -> None:
    """A label column that is not in the file's header fails at construction, listing them."""
    with pytest.raises(ConfigError, match=r"collect\.csv\.label: expected columns .*age, color"):
        collect.csv(str(table), label="target")
    with pytest.raises(ConfigError, match=r"collect\.csv\.columns: .*Received: 'size'"):
        collect.csv(str(table), columns=["age", "size"])


def test_text_csv_reads_quoted_texts(tmp_path: Path) -> None:
    """collect.text_csv gives one text per sample, quotes and commas included."""
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\n"loved it, really",pos\n"meh",neg\n')
    [batch] = run(reactivex.empty().pipe(collect.text_csv(str(path))))
    assert batch.features.tolist() == ["loved it, really", "meh"]
    assert batch.labels.tolist() == ["pos", "neg"]


def test_text_csv_reads_texts_longer_than_pythons_default_field_limit(tmp_path: Path) -> None:
    """A document of 300,000 characters in a text column (csv's default limit: 131,072)."""
    path = tmp_path / "long.csv"
    document = "word " * 60_000
    path.write_text(f'text,label\n"{document}",pos\nshort,neg\n')
    [batch] = run(reactivex.empty().pipe(collect.text_csv(str(path))))
    assert batch.features.tolist() == [document, "short"]


@pytest.mark.timeout(60)  # before the fix, the empty label made the reader spin forever
def test_an_empty_label_cell_is_a_row_error(tmp_path: Path) -> None:
    """A missing label fails naming line and column, or is skipped alone; it never hangs."""
    path = tmp_path / "x.csv"
    path.write_text("a,label\n1.0,0\n2.0,\n3.0,nan\n4.0,1\n")
    expected = r"x\.csv' line 3: column 'label': expected a number \(or a class name\)\. "
    with pytest.raises(StageError, match=expected + "Received: a missing value") as info:
        run(reactivex.empty().pipe(collect.csv(str(path), label="label")))
    assert info.value.sample_ids == (1,)
    stage = collect.csv(str(path), label="label", label_names=["0", "1"])
    with pytest.raises(StageError, match=r"line 3: .*label_names.*Received: a missing value"):
        run(reactivex.empty().pipe(stage))
    tally = Tally("collect.csv")
    with tallying(tally):
        [batch] = run(
            reactivex.empty().pipe(collect.csv(str(path), label="label", on_error="skip"))
        )
    assert batch.ids.tolist() == [0, 3]
    assert batch.labels.tolist() == [0.0, 1.0]
    assert [s.sample_id for s in tally.skipped] == [1, 2]


@pytest.mark.timeout(60)
def test_a_chunk_error_no_row_reproduces_fails_instead_of_retrying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the row-by-row check finds no bad row, the chunk's error is raised, not retried."""
    from rxpipe.operators.collect import _csv

    path = tmp_path / "x.csv"
    path.write_text("a,label\n1.0,0\noops,1\n")
    monkeypatch.setattr(_csv._Reader, "_drop_bad_rows", lambda self, rows, *_: rows)
    stage = collect.csv(str(path), label="label", types={"a": "float"}, on_error="skip")
    with pytest.raises(StageError, match=r"lines 2-3: column 'a': expected a number") as info:
        run(reactivex.empty().pipe(stage))
    assert info.value.sample_ids == (0, 1)


def test_an_empty_label_is_not_a_class(tmp_path: Path) -> None:
    """Empty label cells of text_csv and csv string labels are row errors, not a class ''."""
    path = tmp_path / "texts.csv"
    path.write_text('text,label\n"hello world",\ngood food,cooking\n  ,  \nnice match,sports\n')
    with pytest.raises(StageError, match=r"line 2: column 'label': expected a class name"):
        run(reactivex.empty().pipe(collect.text_csv(str(path))))
    tally = Tally("collect.text_csv")
    with tallying(tally):
        [batch] = run(reactivex.empty().pipe(collect.text_csv(str(path), on_error="skip")))
    assert batch.labels.tolist() == ["cooking", "sports"]
    assert [s.sample_id for s in tally.skipped] == [0, 2]
    assert "Received: a missing value" in tally.skipped[0].reason
    with tallying(Tally("collect.csv")):
        [batch] = run(
            reactivex.empty().pipe(
                collect.csv(str(path), label="label", types={"text": "str"}, on_error="skip")
            )
        )
    assert batch.labels.tolist() == ["cooking", "sports"]


def _rows_with_a_bad_byte(path: Path) -> None:
    """2,000 good rows with one undecodable byte (0xe9) on line 1002 between them."""
    good = [f"{i}.5,{i}.25,{i % 3}\n".encode() for i in range(2000)]
    path.write_bytes(
        b"a,b,label\n" + b"".join(good[:1000]) + b"7.5,\xe9,1\n" + b"".join(good[1000:])
    )


def test_an_undecodable_byte_loses_only_its_row(tmp_path: Path) -> None:
    """Under skip every good row arrives and the bad one is reported at its true line."""
    path = tmp_path / "rows.csv"
    _rows_with_a_bad_byte(path)
    tally = Tally("collect.csv")
    with tallying(tally):
        stage = collect.csv(str(path), label="label", types={"b": "str"}, on_error="skip")
        batches = run(reactivex.empty().pipe(stage))
    assert sum(b.size for b in batches) == 2000
    assert [s.sample_id for s in tally.skipped] == [1000]
    assert "rows.csv' line 1002: column 'b': expected utf-8 text" in tally.skipped[0].reason
    assert "Received: the byte 0xe9" in tally.skipped[0].reason


def test_an_undecodable_byte_fails_naming_its_line(tmp_path: Path) -> None:
    """Under raise the error names the file, the row's real line, the column and the byte."""
    path = tmp_path / "rows.csv"
    _rows_with_a_bad_byte(path)
    stage = collect.csv(str(path), label="label", types={"b": "str"})
    with pytest.raises(StageError, match=r"rows\.csv' line 1002: column 'b': .*0xe9") as info:
        run(reactivex.empty().pipe(stage))
    assert info.value.sample_ids == (1000,)
    path.write_bytes("a,label\n1,x\n2,caf\u00e9\n".encode("latin-1"))  # read as utf-8
    with pytest.raises(StageError, match=r"line 3: column 'label': expected utf-8 text"):
        run(reactivex.empty().pipe(collect.csv(str(path), label="label")))
    [batch] = run(reactivex.empty().pipe(collect.csv(str(path), label="label", encoding="latin-1")))
    assert batch.labels.tolist() == ["x", "caf\u00e9"]
    path.write_bytes(b"a,l\xe9bel\n1,x\n")
    with pytest.raises(
        ConfigError,
        match=r"collect\.csv\.encoding: the header of '.*rows\.csv', column 2: expected utf-8 "
        r"text\. Received: the byte 0xe9",
    ):
        collect.csv(str(path))


def test_duplicate_header_names_are_rejected(tmp_path: Path) -> None:
    """A repeated column name fails at construction (or when read), naming file and name."""
    path = tmp_path / "dup.csv"
    path.write_text("a,a,label\n1,100,0\n2,200,1\n")
    with pytest.raises(
        ConfigError,
        match=r"collect\.csv\.path: expected distinct column names in the header "
        r"of '.*dup\.csv'\. Received: 'a' in columns 1, 2",
    ):
        collect.csv(str(path), label="label")
    renamed = collect.csv(str(path), label="label", names=["a1", "a2", "label"])
    [batch] = run(reactivex.empty().pipe(renamed))
    assert list(batch.features) == ["a1", "a2"]
    path.write_text("a,b,label\n1,100,0\n")
    stage = collect.csv(str(path), label="label")
    path.write_text("a, b,b ,label\n1,100,0\n")  # changed after construction
    with pytest.raises(StageError, match=r"Received: 'b' in columns 2, 3"):
        run(reactivex.empty().pipe(stage))


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    """With UTF-8 a BOM is dropped, so the first column keeps its name; latin-1 is as before."""
    path = tmp_path / "bom.csv"
    path.write_text("label,a,b\n1,2.0,3.0\n", encoding="utf-8-sig")
    for encoding in ("utf-8", "UTF8"):
        stage = collect.csv(str(path), label="label", encoding=encoding)
        [batch] = run(reactivex.empty().pipe(stage))
        assert list(batch.features) == ["a", "b"]
        assert batch.labels.tolist() == [1.0]
    [batch] = run(reactivex.empty().pipe(collect.csv(str(path), encoding="latin-1")))
    assert list(batch.features) == ["\u00ef\u00bb\u00bflabel", "a", "b"]


IDS = "id,x,label\na,1,0\nb,2,1\na,3,0\n,4,1\nNA,5,0\nc,6,1\n"


def test_an_empty_or_repeated_id_fails_naming_the_line_it_first_appeared_on(
    tmp_path: Path,
) -> None:
    """A repeated id_column value fails naming both lines; an empty id fails naming its line."""
    path = tmp_path / "ids.csv"
    path.write_text(IDS)
    stage = collect.csv(str(path), label="label", id_column="id")
    with pytest.raises(
        StageError,
        match=r"ids\.csv' line 4: column 'id' \(the id_column\): expected an id unique in the "
        r"file\. Received: 'a', the id of line 2 already$",
    ) as info:
        run(reactivex.empty().pipe(stage))
    assert info.value.sample_ids == (2,)
    path.write_text("id,x,label\na,1,0\n  ,2,1\n")
    with pytest.raises(
        StageError,
        match=r"line 3: column 'id' \(the id_column\): expected a sample id\. "
        r"Received: an empty cell$",
    ):
        run(reactivex.empty().pipe(stage))


def test_repeated_and_missing_ids_are_skipped_across_chunks(tmp_path: Path) -> None:
    """Under skip each bad id loses only its row, whichever chunk the first one was in."""
    path = tmp_path / "ids.csv"
    path.write_text(IDS)
    tally = Tally("collect.csv")
    with tallying(tally):
        stage = collect.csv(str(path), label="label", id_column="id", chunk_size=2, on_error="skip")
        batches = run(reactivex.empty().pipe(stage))
    assert np.concatenate([b.ids for b in batches]).tolist() == ["a", "b", "c"]
    assert np.concatenate([b.features for b in batches]).tolist() == [1.0, 2.0, 6.0]
    assert [s.sample_id for s in tally.skipped] == [2, 3, 4]
    reasons = [s.reason for s in tally.skipped]
    assert "line 4: column 'id' (the id_column)" in reasons[0]
    assert "Received: 'a', the id of line 2 already" in reasons[0]
    assert "line 5: " in reasons[1]
    assert "Received: an empty cell" in reasons[1]
    assert "line 6: " in reasons[2]
    assert "Received: a missing value ('NA')" in reasons[2]


def test_an_id_is_taken_only_by_a_row_that_is_read(tmp_path: Path) -> None:
    """A row skipped for a bad value does not claim its id, so a later fixed row keeps it."""
    path = tmp_path / "ids.csv"
    path.write_text("id,x,label\na,oops,0\nb,2,1\na,1,0\n")
    tally = Tally("collect.csv")
    with tallying(tally):
        stage = collect.csv(
            str(path), label="label", id_column="id", types={"x": "float"}, on_error="skip"
        )
        [batch] = run(reactivex.empty().pipe(stage))
    assert batch.ids.tolist() == ["b", "a"]
    assert batch.features.tolist() == [2.0, 1.0]
    assert [s.sample_id for s in tally.skipped] == [0]
    assert "column 'x': expected a number" in tally.skipped[0].reason


def test_an_empty_column_name_is_rejected_unless_columns_leaves_it_out(tmp_path: Path) -> None:
    """An unnamed header column fails naming its position; columns= may leave it out."""
    path = tmp_path / "frame.csv"
    path.write_text(",a,b,label\n0,1.5,x,1\n1,2.5,y,0\n")  # pandas' to_csv with its index
    with pytest.raises(
        ConfigError,
        match=r"collect\.csv\.path: the header of '.*frame\.csv', column 1: expected a column "
        r"name\. Received: an empty name \(name it in the file, give names= for every column, "
        r"or pick the named columns with columns=\)",
    ):
        collect.csv(str(path), label="label")
    [batch] = run(reactivex.empty().pipe(collect.csv(str(path), label="label", columns=["a", "b"])))
    assert list(batch.features) == ["a", "b"]
    assert batch.labels.tolist() == [1.0, 0.0]
    renamed = collect.csv(str(path), label="label", names=["row", "a", "b", "label"])
    [batch] = run(reactivex.empty().pipe(renamed))
    assert list(batch.features) == ["row", "a", "b"]
    stage = collect.csv(str(path), label="label", columns=["a"])
    path.write_text("a, ,label\n1,2,0\n")  # changed after construction: column 2 unnamed
    assert run(reactivex.empty().pipe(stage))[0].features.tolist() == [1.0]
    path.write_text("a,b, \n1,2,0\n")
    stage = collect.csv(str(path), label="label", names=["a", "c", "label"])
    assert run(reactivex.empty().pipe(stage))[0].labels.tolist() == [0.0]  # names= wins
    path.write_text("a,b,label,c\n1,2,0,3\n")
    stage = collect.csv(str(path), label="label")
    path.write_text("a,,label,\n1,2,0,3\n")  # changed after construction
    with pytest.raises(StageError, match=r"columns 2, 4: expected a column name"):
        run(reactivex.empty().pipe(stage))


def test_text_csv_reads_a_file_with_an_unnamed_index_column(tmp_path: Path) -> None:
    """collect.text_csv reads only its two columns, so an unnamed index column is fine."""
    path = tmp_path / "texts.csv"
    path.write_text(",text,label\n0,hello,x\n1,bye,y\n")
    [batch] = run(reactivex.empty().pipe(collect.text_csv(str(path))))
    assert batch.features.tolist() == ["hello", "bye"]


def _mostly_numbers(path: Path, bad: dict[int, str]) -> None:
    """40 rows: age numbers (``bad`` replaces some, by row), a text column, a label."""
    colors = ["red", "green", "blue", "7"]  # words with one number: still a text column
    rows = [f"{bad.get(i, str(20 + i))},{colors[i % 4]},{i % 2}" for i in range(40)]
    path.write_text("age,color,label\n" + "\n".join(rows) + "\n")


def test_a_few_non_numbers_do_not_make_a_number_column_text(tmp_path: Path) -> None:
    """A column of numbers with a few bad cells stays float; the bad cells are row errors."""
    path = tmp_path / "ages.csv"
    _mostly_numbers(path, {3: "?", 30: "old"})
    with pytest.raises(
        StageError,
        match=r"ages\.csv' line 5: column 'age': expected a number \(the column's inferred "
        r"type: add the value to missing=, or give types=\{'age': 'str'\} to read it as "
        r"text\)\. Received: '\?'$",
    ) as info:
        run(reactivex.empty().pipe(collect.csv(str(path), label="label")))
    assert info.value.sample_ids == (3,)
    tally = Tally("collect.csv")
    with tallying(tally):
        stage = collect.csv(str(path), label="label", on_error="skip")
        [batch] = run(reactivex.empty().pipe(stage))
    assert batch.features["age"].dtype == np.float32  # type: ignore[index]
    assert batch.features["color"].dtype == object  # type: ignore[index]
    assert "7" in batch.features["color"].tolist()  # type: ignore[index]
    assert batch.size == 38
    assert [s.sample_id for s in tally.skipped] == [3, 30]
    assert "line 32: column 'age'" in tally.skipped[1].reason
    assert "Received: 'old'" in tally.skipped[1].reason
    with_missing = collect.csv(str(path), label="label", missing=["", "?", "old"])
    [batch] = run(reactivex.empty().pipe(with_missing))
    assert np.isnan(batch.features["age"][[3, 30]]).all()  # type: ignore[index]
    as_text = collect.csv(str(path), label="label", types={"age": "str"})
    [batch] = run(reactivex.empty().pipe(as_text))
    assert batch.features["age"][3] == "?"  # type: ignore[index]


def test_a_column_with_many_non_numbers_is_text(tmp_path: Path) -> None:
    """Below nine numbers in ten present values, a column is read as text, as before."""
    path = tmp_path / "ages.csv"
    _mostly_numbers(path, dict.fromkeys(range(0, 40, 8), "unknown"))  # 5 of 40: 87.5 %
    [batch] = run(reactivex.empty().pipe(collect.csv(str(path), label="label")))
    assert batch.features["age"].dtype == object  # type: ignore[index]
    assert batch.features["age"][:2].tolist() == ["unknown", "21"]  # type: ignore[index]


def test_an_inferred_label_column_names_the_type_it_was_given(tmp_path: Path) -> None:
    """A rare class name in a column of numeric labels fails with a hint to read it as text."""
    path = tmp_path / "labels.csv"
    path.write_text("x,label\n" + "".join(f"{i},{i % 3}\n" for i in range(20)) + "20,other\n")
    stage = collect.csv(str(path), label="label", chunk_size=64)
    with pytest.raises(
        StageError,
        match=r"line 22: column 'label': expected a number \(the column's inferred type: give "
        r"types=\{'label': 'str'\} to read it as class names\)\. Received: 'other'$",
    ):
        run(reactivex.empty().pipe(stage))
    as_text = collect.csv(str(path), label="label", types={"label": "str"})
    [batch] = run(reactivex.empty().pipe(as_text))
    assert batch.labels[-1] == "other"


@pytest.fixture
def short_field_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The csv module's default field limit (131,072 characters), for this test only."""
    monkeypatch.setattr(_csv, "FIELD_LIMIT", 131_072)
    before = csv.field_size_limit(131_072)
    yield
    csv.field_size_limit(before)


@pytest.mark.usefixtures("short_field_limit")
def test_rows_around_a_parse_error_and_a_bad_byte_keep_their_lines(tmp_path: Path) -> None:
    """A row the csv module rejects before an undecodable byte: both named at their lines."""
    path = tmp_path / "rows.csv"
    good = [f"{i}.5,{i % 3}\n".encode() for i in range(3000)]
    huge = b'"' + b"9" * 200_000 + b'",1\n'  # longer than the csv module's field limit
    path.write_bytes(
        b"a,label\n"
        + b"".join(good[:10])
        + huge
        + b"".join(good[10:2000])
        + b"\xff,1\n"
        + b"".join(good[2000:])
    )
    tally = Tally("collect.csv")
    with tallying(tally):
        stage = collect.csv(str(path), label="label", on_error="skip")
        batches = run(reactivex.empty().pipe(stage))
    ids = np.concatenate([b.ids for b in batches])
    assert len(ids) == 3000
    assert ids[:11].tolist() == [*range(10), 11]
    features = np.concatenate([b.features for b in batches])
    assert features[[0, 2999]].tolist() == [0.5, 2999.5]
    assert [s.sample_id for s in tally.skipped] == [10, 2001]
    assert "line 12: cannot parse the row" in tally.skipped[0].reason
    assert "line 2003: column 'a': expected utf-8 text" in tally.skipped[1].reason


# Numbers are read a column chunk at a time by numpy (_csv._parse_floats, _csv._int) and,
# when that fails, cell by cell (_csv._float_cells, _csv._int_cells), which also names the
# bad cell. Both must read every cell alike; these are the cells where Python's float()
# and int() are lenient or strict.
TRICKY_CELLS = (
    *("1", "-2.5", "+3", ".5", "5.", "1e5", "1E+05", "-1e-3", "010", "1e400", "-1e400", "1e-400"),
    *("1_000", "1_0.5", "1__0", "_1", "1_", "1e1_0"),  # underscores between digits only
    *(" 1 ", "\t-1.5\n", "\u20031\u2003", "\xa02", "\x1c3\x1f", "\x1c", "1 2"),  # whitespace
    *("\u0661\u0662", "\uff11\uff12", "\u0663.\u0665", "\u0661\u066b\u0665"),  # other digits
    *("inf", "-INF", "Infinity", "+infinity", "nan", "-nan", "NaN", "nan(1)", "in f", "inf_"),
    *("0x10", "0b1", "0o7", "1j", "1.5d0", "1e", "+-1", "--1", "e5", ".", "True"),
    *("", " ", "NA", " NA ", "N/A", "null", "None", "?", "-999", " -999", "-999.0", "1_0"),
    *("1\x00", "\x001", "1\udce9", "\udce9", "\u00e9", "9" * 30, "99999999999999999999"),
    *("9223372036854775807", "-9223372036854775808", "9223372036854775808", "3.4028236e38"),
)
MISSING_SETS: tuple[frozenset[str], ...] = (
    frozenset(_csv.MISSING),
    frozenset({*_csv.MISSING, "-999", "?"}),  # a numeric sentinel: " -999" is missing too
    frozenset({" "}),  # a stripped cell never equals it: " " is not missing
    frozenset({"1_0", " NA ", "inf"}),
    frozenset(),
)
Reader = Callable[[str, Sequence[str], frozenset[str]], np.ndarray[Any, Any]]


def _floats_fast(column: str, cells: Sequence[str], missing: frozenset[str]) -> Any:
    return _csv._float(column, cells, missing, "")


def _floats_by_cell(column: str, cells: Sequence[str], missing: frozenset[str]) -> Any:
    return _csv._float_cells(column, cells, missing, "")


def _outcome(read: Reader, cells: Sequence[str], missing: frozenset[str]) -> tuple[str, Any]:
    """What a reader makes of a column chunk: its array's dtype and bits, or its RowError."""
    try:
        with np.errstate(over="ignore"):  # 1e300 as float32: inf (both warn, tested below)
            array = read("x", cells, missing)
    except _csv.RowError as error:
        return "error", str(error)
    return str(array.dtype), array.tobytes()


def _same_outcome(cells: Sequence[str], missing: frozenset[str]) -> None:
    for fast, by_cell in ((_floats_fast, _floats_by_cell), (_csv._int, _csv._int_cells)):
        assert _outcome(fast, cells, missing) == _outcome(by_cell, cells, missing), (cells, missing)


@pytest.mark.parametrize("missing", MISSING_SETS, ids=lambda m: repr(sorted(m)))
def test_tricky_cells_read_alike_in_one_call_and_cell_by_cell(missing: frozenset[str]) -> None:
    """Each tricky cell, alone and among plain numbers, gives the same value or error."""
    for cell in TRICKY_CELLS:
        _same_outcome([cell], missing)
        _same_outcome(["1.5", cell, "-2", cell, "7"], missing)
        _same_outcome([*sorted(missing), cell], missing)  # with every missing string
    good = [c for c in TRICKY_CELLS if _outcome(_floats_by_cell, [c], missing)[0] != "error"]
    _same_outcome(good, missing)  # every readable cell at once


def test_the_one_call_path_reads_common_cells_and_finds_stripped_sentinels() -> None:
    """numpy reads plain, spaced, underscored, non-ASCII and missing cells without a fallback;
    in this first pass a cell that reads as a missing number is NaN only if it is that
    string once stripped (_float then marks the other spellings of the value, see below)."""
    missing = frozenset({*_csv.MISSING, "-999"})
    cells = ["1", " 2 ", "1_000", "\u0661\u0662", "inf", "", "NA", "nan", " -999", "-999.0"]
    parsed = _csv._parse_floats(cells, missing)  # no ValueError: no cell-by-cell fallback
    expected = [1.0, 2.0, 1000.0, 12.0, np.inf, np.nan, np.nan, np.nan, np.nan, -999.0]
    np.testing.assert_array_equal(parsed, expected)
    with pytest.raises(ValueError, match="could not convert string to float: ' NA '"):
        _csv._parse_floats(["1", " NA "], missing)  # float() rejects it: read cell by cell
    assert np.isnan(_csv._float("x", ["1", " NA "], missing, "")[1])
    assert _csv._float("x", ["\x1c3\x1f"], missing, "").tolist() == [3.0]  # str.strip() wins


BEYOND_FLOAT32 = ("5e38", "-1e300", "1e400", "-1e400", " 3.4028236e38 ")
"""Numbers written as such that are infinite in float32 (the last just past rounding)."""


def test_a_number_beyond_float32_is_a_row_error_in_both_paths() -> None:
    """A number infinite in float32 is a RowError naming column and value, without a
    warning, either way; infinity written as such, float32's largest and tiny numbers read."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for read in (_floats_fast, _floats_by_cell):
            for cell in BEYOND_FLOAT32:
                with pytest.raises(_csv.RowError) as info:
                    read("x", ["1", "", cell], frozenset({""}))
                assert str(info.value) == (
                    "column 'x': expected a finite float32 number (magnitude at most "
                    f"3.402823e+38). Received: {cell!r}, which overflows float32"
                )
            cells = ["inf", "-Infinity", "3.4028235e38", "1e-50", "-1e-400", "NA"]
            read_back = read("x", cells, frozenset({"NA"})).tolist()
            assert read_back[:5] == [np.inf, -np.inf, 3.4028234663852886e38, 0.0, -0.0]
            assert np.isnan(read_back[5])


CELL_TEXT = st.text(
    alphabet=st.sampled_from(
        [
            *"0123456789+-._eEinfatyINFAT xX?",
            *("\t", "\n", "\x1c", "\u2003", "\xa0"),  # whitespace (\x1c: str.strip() only)
            *("\u0661", "\u066b", "\uff11", "\udce9", "\x00"),  # digits, a bad byte, NUL
        ]
    ),
    max_size=8,
)
CELLS = st.one_of(
    st.sampled_from(TRICKY_CELLS),
    CELL_TEXT,
    st.floats(width=32).map(repr),
    st.floats().map(lambda x: f"{x:.3g}"),
    st.integers(-(2**70), 2**70).map(str),
    st.tuples(st.sampled_from(["", " ", "\t"]), st.sampled_from(sorted(_csv.MISSING))).map(
        lambda t: t[0] + t[1] + t[0]
    ),
)


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(CELLS, max_size=12), missing=st.sampled_from(MISSING_SETS))
def test_any_column_chunk_reads_alike_in_one_call_and_cell_by_cell(
    cells: list[str], missing: frozenset[str]
) -> None:
    """For any cells and missing strings, numpy's chunk read equals the cell-by-cell read."""
    _same_outcome(cells, missing)


def test_tricky_cells_in_a_file_keep_their_values_and_errors(tmp_path: Path) -> None:
    """Through collect.csv, lenient cells read as float() reads them stripped, missing ones
    are NaN, and under skip a bad cell loses only its row, named by line, column and value."""
    path = tmp_path / "cells.csv"
    x = ["1_000", " 2 ", "\u0661\u0662", "", " -999", "NA", "-1e3", "oops", "inf", "-999.5"]
    path.write_text("x,n,label\n" + "".join(f"{c},{i},{i % 2}\n" for i, c in enumerate(x)))
    stage = collect.csv(
        str(path), label="label", types={"x": "float", "n": "int"}, missing=["", "NA", "-999"]
    )
    with pytest.raises(StageError, match=r"cells\.csv' line 9: column 'x': expected a number\. "):
        run(reactivex.empty().pipe(stage))
    tally = Tally("collect.csv")
    with tallying(tally):
        stage = collect.csv(
            str(path),
            label="label",
            types={"x": "float", "n": "int"},
            missing=["", "NA", "-999"],
            on_error="skip",
        )
        [batch] = run(reactivex.empty().pipe(stage))
    features = batch.features
    assert isinstance(features, dict)
    expected = [1000.0, 2.0, 12.0, np.nan, np.nan, np.nan, -1000.0, np.inf, -999.5]
    np.testing.assert_array_equal(features["x"], np.array(expected, dtype=np.float32))
    assert features["n"].dtype == np.int64
    assert features["n"].tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert [s.sample_id for s in tally.skipped] == [7]
    assert "line 9: column 'x': expected a number. Received: 'oops'" in tally.skipped[0].reason


def test_a_number_beyond_float32_in_a_file_is_a_row_error(tmp_path: Path) -> None:
    """5e38 (which serving refuses too) fails naming file, line and column, or loses its
    row under skip, reported; 1e-50 reads as 0, float32's rounding."""
    path = tmp_path / "overflow.csv"
    path.write_text("x,z,y\n1,1,a\n5e38,2,b\n1e-50,3,a\n-1e400,4,b\n")
    with pytest.raises(
        StageError,
        match=r"overflow\.csv' line 3: column 'x': expected a finite float32 number "
        r"\(magnitude at most 3\.402823e\+38\)\. Received: '5e38', which overflows float32$",
    ) as info:
        run(reactivex.empty().pipe(collect.csv(str(path), label="y")))
    assert info.value.sample_ids == (1,)
    tally = Tally("collect.csv")
    with tallying(tally):
        skip = collect.csv(str(path), label="y", on_error="skip")
        [batch] = run(reactivex.empty().pipe(skip))
    features = batch.features
    assert isinstance(features, dict)
    assert features["x"].tolist() == [1.0, 0.0]
    assert batch.ids.tolist() == [0, 2]
    assert [s.sample_id for s in tally.skipped] == [1, 3]
    assert "line 5: column 'x': expected a finite float32" in tally.skipped[1].reason


def test_a_label_beyond_float32_is_a_row_error(tmp_path: Path) -> None:
    """A regression target infinite in float32 is refused like a feature."""
    path = tmp_path / "target.csv"
    path.write_text("x,y\n1,2.5\n2,4e38\n")
    with pytest.raises(StageError, match=r"line 3: column 'y': expected a finite float32 "):
        run(reactivex.empty().pipe(collect.csv(str(path), label="y")))


def test_the_missing_strings_are_recorded_in_the_metadata(tmp_path: Path) -> None:
    """collect.csv records its missing strings as given (once each, in order); text_csv
    reads no text as missing and records none; other sources record nothing."""
    path = tmp_path / "q.csv"
    path.write_text("text,label\n?,a\nNA,b\n")
    [batch] = run(reactivex.empty().pipe(collect.csv(str(path), missing=["?", "", "?"])))
    assert batch.metadata.missing_strings == ("?", "")
    assert batch.features["text"].tolist() == [None, "NA"]  # type: ignore[call-overload]
    [batch] = run(reactivex.empty().pipe(collect.csv(str(path))))
    assert batch.metadata.missing_strings == _csv.MISSING
    [batch] = run(reactivex.empty().pipe(collect.text_csv(str(path))))
    assert batch.metadata.missing_strings == ()
    assert batch.features.tolist() == ["?", "NA"]  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"collect\.csv\.missing: expected "):
        collect.csv(str(path), missing="NA")


def test_an_integer_beyond_int64_is_a_row_error(tmp_path: Path) -> None:
    """An int cell too large for int64 fails naming line, column and value, or loses its row."""
    path = tmp_path / "big.csv"
    path.write_text("n,label\n1,0\n99999999999999999999,1\n-3,0\n")
    stage = collect.csv(str(path), label="label", types={"n": "int"})
    with pytest.raises(
        StageError,
        match=r"big\.csv' line 3: column 'n': expected an integer from -2\*\*63 to 2\*\*63 - 1\. "
        r"Received: '99999999999999999999'$",
    ) as info:
        run(reactivex.empty().pipe(stage))
    assert info.value.sample_ids == (1,)
    with tallying(Tally("collect.csv")):
        skip = collect.csv(str(path), label="label", types={"n": "int"}, on_error="skip")
        [batch] = run(reactivex.empty().pipe(skip))
    assert batch.features.tolist() == [1, -3]


SENTINEL_CSV = """size,code,n,city,y
1.5,-999,1,rome,2.0
-999,-999.0,-999,-999,1.0
-999.0,7,2,-999.0,3.0
 -9.99e2 ,x,3, -999 ,4.0
-999.5,?,4,oslo,5.0
?,,5,,6.0
"""
"""Numbers written as the sentinel -999 in several ways, in a float, a text, an int column."""


def test_a_numeric_missing_string_is_missing_however_a_number_cell_writes_it(
    tmp_path: Path,
) -> None:
    """With missing=["?", "-999"], a float cell whose value is -999 is NaN whatever its
    spelling (-999.0, -9.99e2: serving gets the number, not the text); in a text column the
    text is compared ("-999.0" is a category); an int column keeps -999 as a number."""
    path = tmp_path / "sentinel.csv"
    path.write_text(SENTINEL_CSV)
    stage = collect.csv(
        str(path), label="y", missing=["?", "-999"], types={"code": "str", "n": "int"}
    )
    [batch] = run(reactivex.empty().pipe(stage))
    features = batch.features
    assert isinstance(features, dict)
    np.testing.assert_array_equal(
        features["size"], np.array([1.5, np.nan, np.nan, np.nan, -999.5, np.nan], np.float32)
    )
    assert features["code"].tolist() == [None, "-999.0", "7", "x", None, ""]
    assert features["city"].tolist() == ["rome", None, "-999.0", None, "oslo", ""]
    assert features["n"].tolist() == [1, -999, 2, 3, 4, 5]


def test_a_numeric_missing_value_is_recorded_for_the_float_columns(tmp_path: Path) -> None:
    """collect.csv records a MissingNumbers step for its float columns when a missing
    string reads as a number (one unnamed array: the step's columns are None); the
    default missing strings, or no float column, record none."""
    from rxpipe.operators.collect._missing_numbers import MissingNumbers

    path = tmp_path / "sentinel.csv"
    path.write_text(SENTINEL_CSV)
    types = {"code": "str", "n": "int"}
    stage = collect.csv(str(path), label="y", missing=["?", "-999"])  # n inferred float
    [batch] = run(reactivex.empty().pipe(stage))
    assert batch.metadata.preprocessing == (MissingNumbers((-999.0,), ("size", "n")),)
    assert batch.metadata.raw_features == batch.metadata.features
    assert np.isnan(batch.features["n"][1])  # type: ignore[call-overload]
    stage = collect.csv(str(path), label="y", missing=["?", "-999.0", "1e39"], types=types)
    [batch] = run(reactivex.empty().pipe(stage))
    assert batch.metadata.preprocessing == (MissingNumbers((-999.0,), ("size",)),)
    one = collect.csv(str(path), label="y", columns=["size"], missing=["?", "-999"])
    [batch] = run(reactivex.empty().pipe(one))
    assert batch.metadata.preprocessing == (MissingNumbers((-999.0,), None),)
    assert np.isnan(batch.features).sum() == 4  # type: ignore[arg-type]
    [batch] = run(reactivex.empty().pipe(collect.csv(str(path), label="y", types=types)))
    assert batch.metadata.preprocessing == ()
    texts = collect.csv(str(path), label="y", columns=["city"], missing=["-999"])
    [batch] = run(reactivex.empty().pipe(texts))
    assert batch.metadata.preprocessing == ()


def test_a_label_whose_value_is_a_missing_number_is_a_missing_label(tmp_path: Path) -> None:
    """A regression target written -999.0 with missing=["-999"] is a missing label, as
    "-999" is, naming line and value."""
    path = tmp_path / "target.csv"
    path.write_text("x,y\n1,2.5\n2,-999.0\n")
    stage = collect.csv(str(path), label="y", missing=["", "-999"])
    with pytest.raises(
        StageError, match=r"line 3: column 'y': expected a number .*a missing value \('-999\.0'\)"
    ):
        run(reactivex.empty().pipe(stage))
