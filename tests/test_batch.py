"""Tests for rxpipe.batch."""

from __future__ import annotations

import numpy as np
import pytest

from rxpipe import Batch, BatchError, DatasetMetadata, FeatureSpec, Split
from rxpipe.preprocessing import Rescale

META = DatasetMetadata("toy", FeatureSpec((2,), "float32"), ("a", "b"))


def make(n: int = 4, split: Split | str = Split.TRAIN) -> Batch:
    """A batch of ``n`` samples with ids 10, 11, ..."""
    return Batch(
        np.arange(2 * n, dtype="float32").reshape(n, 2),
        np.arange(n) % 2,
        np.arange(10, 10 + n),
        META,
        split,
    )


def test_batch_reports_size_and_split() -> None:
    """A batch knows its size and converts split names to Split."""
    batch = make(3, "validation")
    assert batch.size == len(batch) == 3
    assert batch.split is Split.VALIDATION


def test_labels_of_wrong_length_are_rejected_with_expected_and_received() -> None:
    """Labels with a different first dimension name both sizes."""
    with pytest.raises(BatchError, match=r"labels: expected 3 entries.*Received: shape \(2,\)"):
        Batch(np.zeros((3, 2)), np.zeros(2), np.arange(3), META)


def test_ids_of_wrong_length_are_rejected() -> None:
    """Ids must match the number of samples."""
    with pytest.raises(BatchError, match="ids: expected 3 entries"):
        Batch(np.zeros((3, 2)), None, np.arange(4), META)


def test_named_features_must_agree_on_sample_count() -> None:
    """A mapping of features with different first dimensions is rejected."""
    with pytest.raises(BatchError, match="same number of samples"):
        Batch({"a": np.zeros((3, 1)), "b": np.zeros((2, 1))}, None, np.arange(3), META)


def test_unknown_split_lists_valid_ones() -> None:
    """An unknown split name lists the valid names."""
    with pytest.raises(BatchError, match=r"split: expected one of .*'train'.*Received: 'training'"):
        make(split="training")


def test_select_keeps_features_labels_and_ids_aligned() -> None:
    """Selecting with a mask keeps every field aligned."""
    batch = make(4)
    picked = batch.select(np.array([True, False, True, False]))
    assert picked.ids.tolist() == [10, 12]
    assert picked.labels is not None
    assert picked.labels.tolist() == [0, 0]
    assert picked.features.tolist() == [[0.0, 1.0], [4.0, 5.0]]  # type: ignore[union-attr]


def test_concat_joins_batches_and_rejects_mixed_splits() -> None:
    """Concatenation joins samples in order and refuses to mix splits."""
    joined = Batch.concat([make(2), make(3)])
    assert joined.size == 5
    with pytest.raises(BatchError, match="one split"):
        Batch.concat([make(2, "train"), make(2, "test")])
    with pytest.raises(BatchError, match="at least one batch"):
        Batch.concat([])


def test_evolve_shares_unchanged_arrays() -> None:
    """Evolving a batch does not copy the arrays it does not change."""
    batch = make(2)
    moved = batch.evolve(split=Split.TEST)
    assert moved.features is batch.features
    assert moved.split is Split.TEST


def test_feature_spec_check_names_shape_and_dtype() -> None:
    """FeatureSpec.check reports wrong shapes and dtypes with expected and received."""
    spec = FeatureSpec((2,), "float32")
    spec.check(np.zeros((5, 2), "float32"), "x")
    with pytest.raises(BatchError, match=r"x: expected samples of shape \(2,\)"):
        spec.check(np.zeros((5, 3), "float32"), "x")
    with pytest.raises(BatchError, match=r"expected dtype float32\. Received: dtype int64"):
        spec.check(np.zeros((5, 2), "int64"), "x")


def test_metadata_records_preprocessing_and_raw_spec() -> None:
    """Adding a preprocessor keeps the raw input spec for serving."""
    raw = DatasetMetadata("img", FeatureSpec((8, 8, 1), "uint8", (0, 16)), ("0", "1"))
    step = Rescale(1 / 16)
    processed = raw.with_preprocessor(step, FeatureSpec((8, 8, 1), "float32", (0, 1)))
    assert processed.raw_features == raw.features
    assert processed.feature_spec.dtype == "float32"
    assert processed.preprocessing == (step,)
    assert processed.num_classes == 2


def test_feature_spec_of_named_features_is_an_error() -> None:
    """Asking for the single spec of named features explains why it cannot."""
    meta = DatasetMetadata("tab", {"a": FeatureSpec((1,), "float32")})
    with pytest.raises(BatchError, match="named features"):
        _ = meta.feature_spec


def test_metadata_keeps_the_sources_missing_strings_through_preprocessing() -> None:
    """missing_strings defaults to None (old call sites unchanged), becomes a tuple, and
    survives every step recorded after the source."""
    assert META.missing_strings is None
    meta = DatasetMetadata("t", FeatureSpec((2,), "float32"), missing_strings=["", "?"])
    assert meta.missing_strings == ("", "?")
    after = meta.with_preprocessor(Rescale(0.5), FeatureSpec((2,), "float32"))
    assert after.missing_strings == ("", "?")
    assert after.evolve(name="u").missing_strings == ("", "?")
    assert meta != meta.evolve(missing_strings=["?"])  # another source's metadata


def test_metadata_pickled_before_missing_strings_existed_loads() -> None:
    """An access.cache folder of an older rxpipe holds metadata without missing_strings:
    it unpickles with the field's default (and round trips otherwise)."""
    import pickle

    meta = DatasetMetadata("t", FeatureSpec((2,), "float32"), missing_strings=["?"])
    assert pickle.loads(pickle.dumps(meta)) == meta
    old = {k: v for k, v in meta.__getstate__().items() if k != "missing_strings"}
    loaded = DatasetMetadata.__new__(DatasetMetadata)
    loaded.__setstate__(old)
    assert loaded.missing_strings is None
    assert loaded == meta.evolve(missing_strings=None)


def test_feature_columns_name_each_value_of_a_vector_once() -> None:
    """A vector's column names are as many as its values, distinct; a spec that is no
    vector has none."""
    spec = FeatureSpec((3,), "float32", columns=["alcohol", "ash", "hue"])
    assert spec.columns == ("alcohol", "ash", "hue")
    assert FeatureSpec((3,), "float32").columns is None
    expected = "expected names of the values of a feature vector, one per value and each once"
    with pytest.raises(BatchError) as info:
        FeatureSpec((3,), "float32", columns=["alcohol", "ash"])
    assert str(info.value) == (
        f"FeatureSpec.columns: {expected} (3 names for shape (3,)). Received: 2 names"
    )
    with pytest.raises(BatchError) as info:
        FeatureSpec((3,), "float32", columns=["ash", "hue", "ash"])
    assert str(info.value) == f"FeatureSpec.columns: {expected}. Received: 'ash' more than once"
    with pytest.raises(BatchError) as info:
        FeatureSpec((1, 2), "float32", columns=["a", "b"])
    assert str(info.value) == (
        f"FeatureSpec.columns: {expected}. Received: 2 names for samples of shape (1, 2), "
        "not a vector"
    )


def test_the_raw_inputs_column_names_stay_with_it_after_preprocessing() -> None:
    """input_features, what serving takes, keeps the raw vector's names whatever spec a
    step gives the processed features."""
    raw = FeatureSpec((2,), "float32", columns=["age", "bmi"])
    meta = DatasetMetadata("t", raw).with_preprocessor(Rescale(0.5), FeatureSpec((4,), "float32"))
    assert meta.raw_features == raw
    assert meta.feature_spec.columns is None


def test_a_feature_spec_pickled_before_columns_existed_loads() -> None:
    """An access.cache folder of an older rxpipe holds specs without columns: they unpickle
    with none (and a spec with names round trips)."""
    import pickle

    spec = FeatureSpec((2,), "float32", (0.0, 1.0), columns=["a", "b"])
    assert pickle.loads(pickle.dumps(spec)) == spec
    old = {k: v for k, v in spec.__getstate__().items() if k != "columns"}
    loaded = FeatureSpec.__new__(FeatureSpec)
    loaded.__setstate__(old)
    assert loaded == FeatureSpec((2,), "float32", (0.0, 1.0))
