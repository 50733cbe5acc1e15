"""Tests of collect.image_folder and collect.text_folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reactivex

from rxpipe import ConfigError, StageError
from rxpipe.flow._tally import Tally, tallying
from rxpipe.operators import collect
from rxpipe.testing import collect as run


def test_image_folder_reads_bytes_with_labels_from_folders(digit_folder: Path) -> None:
    """Files arrive as their bytes, classes interleaved, ids naming the files."""
    batches = run(reactivex.empty().pipe(collect.image_folder(str(digit_folder), chunk_size=25)))
    ids = np.concatenate([b.ids for b in batches]).tolist()
    labels = np.concatenate([b.labels for b in batches])
    meta = batches[0].metadata
    assert len(ids) == 120
    assert len(set(ids)) == 120
    assert meta.label_names == tuple(str(d) for d in range(10))
    assert [i.split("/")[0] for i in ids[:10]] == [str(d) for d in range(10)]
    assert [meta.label_names[k] for k in labels] == [i.split("/")[0] for i in ids]
    first = batches[0].features[0]
    assert isinstance(first, bytes)
    assert first == (digit_folder / ids[0]).read_bytes()


def test_image_folder_limit_and_extensions(digit_folder: Path) -> None:
    """limit reads the first files only; extensions filter by suffix."""
    [batch] = run(reactivex.empty().pipe(collect.image_folder(str(digit_folder), limit=7)))
    assert batch.size == 7
    with pytest.raises(ConfigError, match=r"collect\.image_folder\.path: expected one subfolder"):
        collect.image_folder(str(digit_folder), extensions=[".jpg"])


def test_missing_or_flat_folders_fail_at_construction(tmp_path: Path) -> None:
    """A folder that does not exist, or has no class subfolders, is a clear config error."""
    with pytest.raises(ConfigError, match="which does not exist"):
        collect.image_folder(str(tmp_path / "nope"))
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ConfigError, match="expected one subfolder per class"):
        collect.image_folder(str(tmp_path))
    with pytest.raises(ConfigError, match=r"collect\.text_folder\.encoding"):
        collect.text_folder(str(tmp_path), encoding="klingon")


def _texts(tmp_path: Path) -> Path:
    for label, texts in {
        "ham": ["see you at lunch", "meeting moved"],
        "spam": ["win cash"],
    }.items():
        (tmp_path / label).mkdir()
        for index, text in enumerate(texts):
            (tmp_path / label / f"{index}.txt").write_text(text, encoding="utf-8")
    return tmp_path


def test_text_folder_reads_each_file_as_one_sample(tmp_path: Path) -> None:
    """Each .txt file is one text; labels come from the folder names."""
    [batch] = run(reactivex.empty().pipe(collect.text_folder(str(_texts(tmp_path)))))
    assert batch.features.tolist() == ["see you at lunch", "win cash", "meeting moved"]
    assert batch.labels.tolist() == [0, 1, 0]
    assert batch.ids.tolist() == ["ham/0.txt", "spam/0.txt", "ham/1.txt"]
    assert batch.metadata.label_names == ("ham", "spam")


def test_undecodable_text_fails_naming_the_file(tmp_path: Path) -> None:
    """A file that is not valid UTF-8 fails the run with its path and sample id."""
    root = _texts(tmp_path)
    (root / "spam" / "bad.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    with pytest.raises(StageError, match=r"cannot read '.*spam/bad\.txt'") as info:
        run(reactivex.empty().pipe(collect.text_folder(str(root))))
    assert info.value.sample_ids == ("spam/bad.txt",)
    assert str(info.value).endswith(
        "expected utf-8 text (the encoding parameter). Received: the byte 0xff at offset 0"
    )


def test_undecodable_text_is_skipped_and_reported_under_skip(tmp_path: Path) -> None:
    """With on_error='skip' the bad file is left out and counted in the pass's tally."""
    root = _texts(tmp_path)
    (root / "spam" / "bad.txt").write_bytes(b"\xff\xfe")
    tally = Tally("collect.text_folder")
    with tallying(tally):
        stage = collect.text_folder(str(root), on_error="skip")
        batches = run(reactivex.empty().pipe(stage))
    assert sum(b.size for b in batches) == 3
    assert [s.sample_id for s in tally.skipped] == ["spam/bad.txt"]
    assert tally.skipped[0].reason == "the byte 0xff at offset 0"


def test_max_skipped_bounds_the_bad_files(tmp_path: Path) -> None:
    """Skipping more files than max_skipped fails the run."""
    root = _texts(tmp_path)
    for index in range(3):
        (root / "ham" / f"bad{index}.txt").write_bytes(b"\xff")
    with pytest.raises(StageError, match=r"expected at most 1 skipped samples"):
        run(reactivex.empty().pipe(collect.text_folder(str(root), on_error="skip", max_skipped=1)))


def test_an_empty_class_folder_fails_at_construction(tmp_path: Path) -> None:
    """A class folder without a matching file is a config error naming the folder."""
    root = _texts(tmp_path)
    (root / "eggs").mkdir()
    with pytest.raises(
        ConfigError,
        match=r"collect\.text_folder\.path: expected \.txt files in every class subfolder\. "
        r"Received: no such file in '.*eggs'",
    ):
        collect.text_folder(str(root))
    (root / "eggs" / "notes.md").write_text("not a .txt file")
    with pytest.raises(ConfigError, match=r"no such file in '.*eggs'"):
        collect.text_folder(str(root))
    (root / "eggs" / "1.txt").write_text("scrambled")
    [batch] = run(reactivex.empty().pipe(collect.text_folder(str(root))))
    assert batch.metadata.label_names == ("eggs", "ham", "spam")


def test_a_utf8_byte_order_mark_is_not_part_of_the_text(tmp_path: Path) -> None:
    """With UTF-8 a file's BOM is dropped; other encodings read the bytes as before."""
    root = _texts(tmp_path)
    (root / "spam" / "0.txt").write_text("win cash", encoding="utf-8-sig")
    [batch] = run(reactivex.empty().pipe(collect.text_folder(str(root))))
    assert "win cash" in batch.features.tolist()
    [batch] = run(reactivex.empty().pipe(collect.text_folder(str(root), encoding="latin-1")))
    assert "\u00ef\u00bb\u00bfwin cash" in batch.features.tolist()


def test_images_beside_the_class_folders_fail_naming_them(tmp_path: Path) -> None:
    """Image files directly in the root folder (no class) are an error that lists them."""
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "1.png").write_bytes(b"x")
    (tmp_path / "README.md").write_text("not an image: ignored")
    (tmp_path / ".thumb.png").write_bytes(b"hidden: ignored")
    [batch] = run(reactivex.empty().pipe(collect.image_folder(str(tmp_path))))
    assert batch.ids.tolist() == ["cat/1.png", "dog/1.png"]
    for index in range(5):
        (tmp_path / f"{index}.PNG").write_bytes(b"x")
    with pytest.raises(
        ConfigError,
        match=r"collect\.image_folder\.path: expected one subfolder per class holding the "
        r"\.png, .* files \(.*/<class>/<file>\)\. Received: 5 such files directly in '.*': "
        r"'0\.PNG', '1\.PNG', '2\.PNG', \.\.\. \(2 more\) \(move each into its class's "
        r"subfolder, or out of '.*'\)$",
    ):
        collect.image_folder(str(tmp_path))
    for index in range(1, 5):
        (tmp_path / f"{index}.PNG").unlink()
    with pytest.raises(ConfigError, match=r"Received: 1 such file directly in '.*': '0\.PNG' "):
        collect.text_folder(str(tmp_path), extensions=[".png"])


def test_root_files_added_after_construction_fail_the_run(tmp_path: Path) -> None:
    """The check runs again when the folder is read, as a stage error naming the files."""
    root = _texts(tmp_path)
    stage = collect.text_folder(str(root))
    (root / "notes.txt").write_text("which class?")
    with pytest.raises(StageError, match=r"Received: 1 such file directly in .*'notes\.txt'"):
        run(reactivex.empty().pipe(stage))
