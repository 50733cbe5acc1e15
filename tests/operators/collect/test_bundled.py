"""Tests of collect.iris, .wine, .breast_cancer and .diabetes (scikit-learn's bundled tables)."""

from __future__ import annotations

import numpy as np
import pytest
import reactivex

from rxpipe import ConfigError
from rxpipe.operators import collect
from rxpipe.testing import collect as run


@pytest.mark.parametrize(
    ("source", "rows", "columns", "classes"),
    [
        (collect.iris, 150, 4, 3),
        (collect.wine, 178, 13, 3),
        (collect.breast_cancer, 569, 30, 2),
        (collect.diabetes, 442, 10, None),
    ],
)
def test_tables_emit_every_row_in_chunks(
    source: object, rows: int, columns: int, classes: int | None
) -> None:
    """Each table arrives whole, in chunks of float32 rows, ids 0..n-1, with its classes."""
    batches = run(reactivex.empty().pipe(source(chunk_size=100)))  # type: ignore[operator]
    assert [b.size for b in batches[:-1]] == [100] * (len(batches) - 1)
    assert sum(b.size for b in batches) == rows
    assert np.concatenate([b.ids for b in batches]).tolist() == list(range(rows))
    meta = batches[0].metadata
    assert meta.feature_spec.shape == (columns,)
    assert batches[0].features.dtype == np.float32
    assert meta.num_classes == classes


def test_diabetes_targets_are_raw_float_scores() -> None:
    """The regression targets are the raw progression scores (25 to 346)."""
    labels = np.concatenate([b.labels for b in run(reactivex.empty().pipe(collect.diabetes()))])
    assert labels.dtype == np.float32
    assert (labels.min(), labels.max()) == (25.0, 346.0)


def test_limit_and_chaining_after_another_source() -> None:
    """limit cuts the table; a source emits what it receives first."""
    stream = reactivex.empty().pipe(collect.iris(limit=5), collect.wine(limit=3))
    names = [b.metadata.name for b in run(stream)]
    assert names == ["iris", "wine"]


def test_bad_parameters_name_the_plugin_and_parameter() -> None:
    """Parameters are checked when the stage is built."""
    with pytest.raises(ConfigError, match=r"collect\.wine\.chunk_size: expected an int >= 1"):
        collect.wine(chunk_size=0)
    with pytest.raises(ConfigError, match=r"collect\.iris\.limit"):
        collect.iris(limit=-1)


@pytest.mark.parametrize(
    ("source", "loader"),
    [
        (collect.iris, "load_iris"),
        (collect.wine, "load_wine"),
        (collect.breast_cancer, "load_breast_cancer"),
        (collect.diabetes, "load_diabetes"),
    ],
)
def test_tables_name_their_columns_as_scikit_learn_does(source: object, loader: str) -> None:
    """The feature spec names each value of a row, in scikit-learn's order."""
    from sklearn import datasets

    [batch] = run(reactivex.empty().pipe(source(limit=2)))  # type: ignore[operator]
    expected = tuple(str(n) for n in getattr(datasets, loader)().feature_names)
    assert batch.metadata.feature_spec.columns == expected
    assert len(expected) == batch.features.shape[1]


def test_wine_names_its_13_measurements() -> None:
    """collect.wine's columns, as a CSV of the data set names them."""
    [batch] = run(reactivex.empty().pipe(collect.wine(limit=1)))
    assert batch.metadata.feature_spec.columns == (
        "alcohol",
        "malic_acid",
        "ash",
        "alcalinity_of_ash",
        "magnesium",
        "total_phenols",
        "flavanoids",
        "nonflavanoid_phenols",
        "proanthocyanins",
        "color_intensity",
        "hue",
        "od280/od315_of_diluted_wines",
        "proline",
    )
