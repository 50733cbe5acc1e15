"""The names of a feature vector's values (``FeatureSpec.columns``) through the process
steps: kept where a step keeps each value in its place, dropped where it changes the
layout; the raw input's names always stay with the raw input (``input_features``)."""

from __future__ import annotations

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, DatasetMetadata, FeatureSpec
from rxpipe.operators import access, collect, process
from rxpipe.stage import Operator
from rxpipe.testing import collect as run

NAMED = FeatureSpec((2,), "float32", columns=["a", "b"])
TABLE = DatasetMetadata(
    "t", {"m": NAMED, "age": FeatureSpec((), "float32"), "color": FeatureSpec((), "object")}
)


def table_batch() -> Batch:
    """Two training rows of a table with a named vector column ``m``."""
    columns = {
        "m": np.array([[1.0, np.nan], [3.0, 4.0]], "float32"),
        "age": np.array([1.0, np.nan], "float32"),
        "color": np.array(["red", "green"], dtype=object),
    }
    return Batch(columns, None, np.arange(2), TABLE, "train")


def wine_names() -> tuple[str, ...]:
    [batch] = run(reactivex.empty().pipe(collect.wine(limit=1)))
    names = batch.metadata.feature_spec.columns
    assert names is not None
    assert len(names) == 13
    return names


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([process.standardize()], id="standardize"),
        pytest.param([process.fill_missing()], id="fill_missing"),
        pytest.param([process.fill_missing(strategy="median")], id="fill_missing-median"),
        pytest.param([process.fill_missing(strategy="constant", value=0.0)], id="constant"),
        pytest.param([process.normalize(scale=0.5)], id="normalize"),
        pytest.param(
            [process.fill_missing(), process.standardize(), process.normalize(scale=2.0)],
            id="all-three",
        ),
    ],
)
def test_steps_that_keep_each_value_in_place_keep_the_names(
    steps: list[Operator[Batch, Batch]],
) -> None:
    """collect.wine's 13 names survive scaling and filling, on the processed features
    and on the raw input the exported model takes."""
    names = wine_names()
    stream = reactivex.empty().pipe(collect.wine(), access.split(seed=0), *steps)
    batches = run(stream)
    for batch in batches:
        assert batch.metadata.feature_spec.columns == names
        raw = batch.metadata.raw_features
        assert isinstance(raw, FeatureSpec)
        assert raw.columns == names
        assert len(batch.metadata.preprocessing) == len(steps)


def test_a_named_column_of_a_table_keeps_its_names_where_it_keeps_its_layout() -> None:
    """Filling a table's vector column, or one-hot encoding another column, leaves the
    vector's names as they were; the one-hot column has none (its values are categories
    of one column, not named measurements)."""
    [filled] = run(
        reactivex.of(table_batch()).pipe(
            process.fill_missing(strategy="constant", value=0.0, columns=["m", "age"])
        )
    )
    assert filled.metadata.features["m"] == NAMED  # type: ignore[index]
    [encoded] = run(reactivex.of(table_batch()).pipe(process.one_hot(["color"])))
    specs = encoded.metadata.features
    assert isinstance(specs, dict)
    assert specs["m"] == NAMED
    assert specs["color"] == FeatureSpec((2,), "float32", (0.0, 1.0))
    assert specs["color"].columns is None


def test_joining_columns_drops_the_names_and_the_raw_input_keeps_them() -> None:
    """concat_columns makes a new vector (a one-hot part has no names): it has no
    columns, while the raw table, which serving takes, keeps the vector's names."""
    [joined] = run(
        reactivex.of(table_batch()).pipe(
            process.one_hot(["color"]), process.concat_columns(columns=["m", "age", "color"])
        )
    )
    assert joined.metadata.feature_spec == FeatureSpec((5,), "float32")
    assert joined.metadata.feature_spec.columns is None
    raw = joined.metadata.raw_features
    assert isinstance(raw, dict)
    assert raw["m"].columns == ("a", "b")
