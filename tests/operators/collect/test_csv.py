"""Tests of collect.csv and collect.text_csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reactivex

from rxpipe import ConfigError, StageError
from rxpipe.flow._tally import Tally, tallying
from rxpipe.operators import collect
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
