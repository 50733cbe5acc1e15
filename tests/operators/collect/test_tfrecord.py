"""Tests of collect.tfrecord: tf.train.Example records parsed with a feature spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reactivex

from rxpipe import ConfigError, StageError
from rxpipe.flow._tally import Tally, tallying
from rxpipe.operators import collect
from rxpipe.testing import collect as run


def write_records(path: Path, count: int, texts: dict[int, bytes] | None = None) -> None:
    """Write ``count`` examples with a float vector, a text and an int label.

    ``texts`` replaces the text of some records (record index → raw bytes).
    """
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            text = (texts or {}).get(i, f"t{i}".encode())
            feature = {
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[i, i + 0.5])),
                "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3])),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


SPEC = {"x": "float32[2]", "text": "string"}


def test_records_are_parsed_with_the_spec(tmp_path: Path) -> None:
    """Several files (a glob) become named features, int labels, ids file#index."""
    write_records(tmp_path / "a.tfrecord", 5)
    write_records(tmp_path / "b.tfrecord", 2)
    stage = collect.tfrecord([str(tmp_path / "*.tfrecord")], SPEC, label="label", chunk_size=3)
    batches = run(reactivex.empty().pipe(stage))
    assert [b.size for b in batches] == [3, 2, 2]
    assert batches[0].features["x"].tolist() == [[0.0, 0.5], [1.0, 1.5], [2.0, 2.5]]  # type: ignore[index]
    assert batches[0].features["text"].tolist() == ["t0", "t1", "t2"]  # type: ignore[index]
    assert np.concatenate([b.labels for b in batches]).tolist() == [0, 1, 2, 0, 1, 0, 1]
    assert batches[2].ids.tolist() == ["b.tfrecord#0", "b.tfrecord#1"]


def test_a_corrupt_file_fails_naming_it_or_is_skipped(tmp_path: Path) -> None:
    """A truncated file fails naming it and the record; under skip its rest is reported."""
    write_records(tmp_path / "a.tfrecord", 6)
    raw = (tmp_path / "a.tfrecord").read_bytes()
    (tmp_path / "a.tfrecord").write_bytes(raw[: len(raw) // 2 + 20])  # cut inside record 3
    with pytest.raises(StageError, match=r"a\.tfrecord' is corrupt after record 3") as info:
        run(reactivex.empty().pipe(collect.tfrecord([str(tmp_path / "a.tfrecord")], SPEC)))
    assert info.value.sample_ids == ("a.tfrecord#3",)
    tally = Tally("collect.tfrecord")
    with tallying(tally):
        stage = collect.tfrecord([str(tmp_path / "a.tfrecord")], SPEC, on_error="skip")
        batches = run(reactivex.empty().pipe(stage))
    assert sum(b.size for b in batches) == 3
    assert [s.sample_id for s in tally.skipped] == ["a.tfrecord#3"]


def test_records_that_miss_the_spec_name_the_record(tmp_path: Path) -> None:
    """A feature of the wrong length fails naming the record."""
    write_records(tmp_path / "a.tfrecord", 2)
    stage = collect.tfrecord([str(tmp_path / "a.tfrecord")], {"x": "float32[3]"})
    with pytest.raises(StageError, match=r"record 'a\.tfrecord#0' does not match the feature spec"):
        run(reactivex.empty().pipe(stage))


def test_bad_specs_and_paths_fail_at_construction(tmp_path: Path) -> None:
    """An unknown dtype or a glob matching nothing is a config error naming the parameter."""
    write_records(tmp_path / "a.tfrecord", 1)
    with pytest.raises(ConfigError, match=r"collect\.tfrecord\.features\.x: expected 'float32'"):
        collect.tfrecord([str(tmp_path / "a.tfrecord")], {"x": "float64"})
    with pytest.raises(ConfigError, match=r"collect\.tfrecord\.paths: expected files"):
        collect.tfrecord([str(tmp_path / "*.rec")], {"x": "float32"})


def test_paths_naming_no_file_fail_at_construction(tmp_path: Path) -> None:
    """A missing file, a glob matching nothing or a file named twice is a config error."""
    write_records(tmp_path / "a.tfrecord", 1)
    good = str(tmp_path / "a.tfrecord")
    with pytest.raises(
        ConfigError,
        match=r"collect\.tfrecord\.paths: expected an existing file\. "
        r"Received: '.*typo\.tfrecord', which does not exist",
    ):
        collect.tfrecord([good, str(tmp_path / "typo.tfrecord")], {"x": "float32[2]"})
    with pytest.raises(ConfigError, match=r"paths: .*Received: '.*\*\.rec', which matches no file"):
        collect.tfrecord([good, str(tmp_path / "*.rec")], {"x": "float32[2]"})
    with pytest.raises(ConfigError, match=r"paths: expected a file\. Received: .*a directory"):
        collect.tfrecord([good, str(tmp_path)], {"x": "float32[2]"})
    with pytest.raises(ConfigError, match=r"paths: expected each file once\. .*a\.tfrecord' twice"):
        collect.tfrecord([str(tmp_path / "*.tfrecord"), good], {"x": "float32[2]"})


def test_a_string_that_is_not_utf8_is_a_record_error(tmp_path: Path) -> None:
    """Invalid UTF-8 in a 'string' feature fails naming file and record, or is skipped alone."""
    write_records(tmp_path / "a.tfrecord", 4, texts={1: b"\xff\xfe"})
    path = str(tmp_path / "a.tfrecord")
    with pytest.raises(
        StageError,
        match=r"a\.tfrecord': record 'a\.tfrecord#1': feature 'text': expected UTF-8 text",
    ) as info:
        run(reactivex.empty().pipe(collect.tfrecord([path], SPEC)))
    assert info.value.sample_ids == ("a.tfrecord#1",)
    tally = Tally("collect.tfrecord")
    with tallying(tally):
        [batch] = run(reactivex.empty().pipe(collect.tfrecord([path], SPEC, on_error="skip")))
    assert batch.ids.tolist() == ["a.tfrecord#0", "a.tfrecord#2", "a.tfrecord#3"]
    assert batch.features["text"].tolist() == ["t0", "t2", "t3"]  # type: ignore[index]
    assert [s.sample_id for s in tally.skipped] == ["a.tfrecord#1"]


def test_a_label_outside_label_names_is_a_record_error(tmp_path: Path) -> None:
    """An int label with no class in label_names fails naming the record."""
    write_records(tmp_path / "a.tfrecord", 3)  # labels 0, 1, 2
    stage = collect.tfrecord(
        [str(tmp_path / "a.tfrecord")], SPEC, label="label", label_names=["a", "b"]
    )
    with pytest.raises(
        StageError,
        match=r"record 'a\.tfrecord#2': label 'label': expected a class index in \[0, 2\)",
    ):
        run(reactivex.empty().pipe(stage))


def test_files_of_one_name_in_different_folders_get_different_ids(tmp_path: Path) -> None:
    """Ids name a file by its path below the folder all files share, so they never collide."""
    for split, count in (("train", 2), ("val", 1)):
        (tmp_path / "data" / split).mkdir(parents=True)
        write_records(tmp_path / "data" / split / "part-0.tfrecord", count)
    stage = collect.tfrecord([str(tmp_path / "data" / "*" / "part-0.tfrecord")], SPEC)
    ids = np.concatenate([b.ids for b in run(reactivex.empty().pipe(stage))]).tolist()
    assert ids == ["train/part-0.tfrecord#0", "train/part-0.tfrecord#1", "val/part-0.tfrecord#0"]
    alone = collect.tfrecord([str(tmp_path / "data" / "val" / "part-0.tfrecord")], SPEC)
    [batch] = run(reactivex.empty().pipe(alone))
    assert batch.ids.tolist() == ["part-0.tfrecord#0"]
