"""Tests of collect.numpy: arrays in memory, .npy (memory-mapped) and .npz (streamed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reactivex

from rxpipe import BatchError, ConfigError, FeatureSpec
from rxpipe.operators import collect
from rxpipe.testing import collect as run

X = np.arange(60, dtype=np.float32).reshape(10, 3, 2)
Y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])


def rows(stage: object) -> tuple[np.ndarray, np.ndarray, list[int]]:  # type: ignore[type-arg]
    """Features, labels and batch sizes the stage emits."""
    batches = run(reactivex.empty().pipe(stage))  # type: ignore[arg-type]
    return (
        np.concatenate([b.features for b in batches]),
        np.concatenate([b.labels for b in batches]),
        [b.size for b in batches],
    )


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_members_are_read_in_chunks(tmp_path: Path, save: object) -> None:
    """An .npz archive (plain or compressed) gives back its arrays, chunk_size rows at a time."""
    path = tmp_path / "data.npz"
    save(path, x=X, y=Y)  # type: ignore[operator]
    features, labels, sizes = rows(collect.numpy(path=str(path), chunk_size=4))
    assert sizes == [4, 4, 2]
    np.testing.assert_array_equal(features, X)
    np.testing.assert_array_equal(labels, Y)


def test_npy_files_and_label_names(tmp_path: Path) -> None:
    """A .npy features file and a .npy labels file; integer labels name classes 0..max."""
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    stage = collect.numpy(path=str(tmp_path / "x.npy"), labels_path=str(tmp_path / "y.npy"))
    [batch] = run(reactivex.empty().pipe(stage))
    np.testing.assert_array_equal(batch.features, X)
    assert batch.metadata.label_names == ("0", "1", "2")
    assert batch.metadata.name == "x"


def test_arrays_from_python_and_limit() -> None:
    """In-memory arrays work the same; limit keeps the first rows."""
    features, labels, sizes = rows(collect.numpy(arrays={"x": X, "y": Y}, limit=5, chunk_size=2))
    assert sizes == [2, 2, 1]
    np.testing.assert_array_equal(features, X[:5])
    np.testing.assert_array_equal(labels, Y[:5])


def test_errors_name_the_file_and_the_keys(tmp_path: Path) -> None:
    """Missing arrays, mismatched lengths and bad files are config errors."""
    path = tmp_path / "data.npz"
    np.savez(path, features=X, y=Y[:4])
    with pytest.raises(ConfigError, match=r"expected arrays \['x'\].*Received: arrays"):
        collect.numpy(path=str(path))
    with pytest.raises(ConfigError, match=r"collect\.numpy\.labels: expected as many labels"):
        collect.numpy(path=str(path), features="features")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="expected a readable numpy file"):
        collect.numpy(path=str(tmp_path / "bad.npz"))
    with pytest.raises(ConfigError, match="exactly one of path and arrays"):
        collect.numpy()


@pytest.mark.parametrize("dtype", ["float32", "int64", "uint8", "bool"])
def test_one_hot_labels_are_classes_of_their_width(dtype: str) -> None:
    """One-hot rows (as keras.utils.to_categorical makes them) are classes 0..width-1;
    other float rows stay regression targets."""
    y = np.eye(4, dtype=dtype)[[0, 3, 1, 1, 2]]
    stage = collect.numpy(arrays={"x": np.zeros((5, 2), "float32"), "y": y})
    [batch] = run(reactivex.empty().pipe(stage))
    assert batch.metadata.label_names == ("0", "1", "2", "3")
    soft = np.full((5, 4), 0.25, "float32")
    stage = collect.numpy(arrays={"x": np.zeros((5, 2), "float32"), "y": soft})
    [batch] = run(reactivex.empty().pipe(stage))
    assert batch.metadata.label_names is None


def test_a_value_range_is_recorded_in_the_feature_spec(tmp_path: Path) -> None:
    """value_range=[0, 1] reaches the data set's FeatureSpec (as floats), from arrays or a
    file; without it the spec declares none."""
    images = np.linspace(0, 1, 10 * 4, dtype=np.float32).reshape(10, 2, 2, 1)
    [batch] = run(
        reactivex.empty().pipe(collect.numpy(arrays={"x": images}, labels=None, value_range=[0, 1]))
    )
    assert batch.metadata.feature_spec == FeatureSpec((2, 2, 1), "float32", (0.0, 1.0))
    np.save(tmp_path / "x.npy", images)
    [batch] = run(
        reactivex.empty().pipe(collect.numpy(path=str(tmp_path / "x.npy"), value_range=(0.0, 1.0)))
    )
    assert batch.metadata.feature_spec.value_range == (0.0, 1.0)
    [batch] = run(reactivex.empty().pipe(collect.numpy(arrays={"x": images}, labels=None)))
    assert batch.metadata.feature_spec.value_range is None


@pytest.mark.parametrize(
    "value", [[1, 0], [0, 0], [0], [0, 1, 2], [0, float("inf")], [float("nan"), 1]]
)
def test_a_value_range_that_is_not_low_below_high_is_a_config_error(value: list[float]) -> None:
    """Two finite numbers, low < high, or the plugin is not built."""
    with pytest.raises(ConfigError) as info:
        collect.numpy(arrays={"x": X}, labels=None, value_range=value)
    assert str(info.value).startswith(
        "collect.numpy.value_range: expected [low, high], two finite numbers with low < high. "
        f"Received: {value!r}"
    )


def test_a_value_range_needs_numeric_features() -> None:
    """Text features have no value range."""
    with pytest.raises(ConfigError, match=r"value_range: expected numeric features .* dtype str32"):
        collect.numpy(arrays={"x": np.array(["a", "b"])}, labels=None, value_range=[0, 1])


def test_values_outside_the_declared_range_fail_naming_the_samples() -> None:
    """0–255 pixels declared as [0, 1]: the run fails on the first chunk holding them."""
    x = np.zeros((10, 3), np.float32)
    x[6, 1] = 255.0
    x[7, 0] = np.nan  # missing, not out of range
    stage = collect.numpy(arrays={"x": x}, labels=None, value_range=[0, 1], chunk_size=4)
    with pytest.raises(BatchError) as info:
        run(reactivex.empty().pipe(stage))
    assert str(info.value) == (
        "collect.numpy: expected feature values within value_range [0.0, 1.0]. "
        "Received: values from 0.0 to 255.0 in samples [6]"
    )
    assert info.value.sample_ids == (6,)
