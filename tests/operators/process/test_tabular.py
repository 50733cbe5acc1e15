"""Tests of the tabular processors: standardize, fill_missing, one_hot, concat_columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reactivex

from rxpipe import Batch, ConfigError, DatasetMetadata, FeatureSpec, StageError
from rxpipe.operators import access, collect, process
from rxpipe.operators.process._tabular_steps import (
    ConcatColumns,
    FillMissing,
    OneHot,
    Standardize,
)
from rxpipe.testing import collect as run
from rxpipe.testing import from_arrays


def test_standardize_learns_from_the_training_split_only() -> None:
    """Mean and std are the training split's; other splits use them as they are."""
    train = np.random.default_rng(0).normal(5.0, 2.0, (200, 3)).astype("float32")
    test = train[:10] + 100.0
    meta = DatasetMetadata("t", FeatureSpec((3,), "float32"))
    stream = reactivex.concat(
        from_arrays(train, split="train", batch_size=33, metadata=meta),
        from_arrays(test, split="test", metadata=meta),
    )
    out = run(stream.pipe(process.standardize()))
    trained = np.concatenate([b.features for b in out if b.split.value == "train"])
    np.testing.assert_allclose(trained.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(trained.std(axis=0), 1.0, atol=1e-4)
    [step] = out[0].metadata.preprocessing
    assert isinstance(step, Standardize)
    np.testing.assert_allclose(step.mean, train.mean(axis=0), rtol=1e-5)


def test_fill_missing_uses_training_statistics() -> None:
    """Means for numbers and the most frequent value for text, from the training split."""
    meta = DatasetMetadata(
        "t", {"age": FeatureSpec((), "float32"), "city": FeatureSpec((), "object")}
    )
    columns = {
        "age": np.array([20.0, np.nan, 40.0], "float32"),
        "city": np.array(["rome", "oslo", None], dtype=object),
    }
    extra = {"age": np.array([0.0], "float32"), "city": np.array(["rome"], dtype=object)}
    batches = reactivex.of(
        Batch(columns, None, np.arange(3), meta, "train"),
        Batch(extra, None, np.arange(3, 4), meta, "train"),
    )
    [first, _] = run(batches.pipe(process.fill_missing()))
    assert first.features["age"].tolist() == [20.0, 20.0, 40.0]  # mean of 20, 40, 0
    assert first.features["city"].tolist() == ["rome", "oslo", "rome"]


def test_fill_missing_median_is_exact_and_ignores_outliers() -> None:
    """The median of the training values, whatever the batching; text still gets the mode."""
    meta = DatasetMetadata(
        "t", {"income": FeatureSpec((), "float64"), "city": FeatureSpec((), "object")}
    )
    incomes = np.array([30.0, np.nan, 40.0, 1e9, 35.0, np.nan, 50.0])  # median 40
    cities = np.array(["rome", None, "oslo", "rome", None, "bern", "oslo"], dtype=object)
    batches = reactivex.from_iterable(  # a list: the fit reads the data, then the apply
        [
            Batch(
                {"income": incomes[i : i + 2], "city": cities[i : i + 2]},
                None,
                np.arange(i, min(i + 2, 7)),
                meta,
                "train",
            )
            for i in range(0, 7, 2)
        ]
    )
    out = run(batches.pipe(process.fill_missing("median")))
    filled = np.concatenate([b.features["income"] for b in out])
    assert filled[[1, 5]].tolist() == [40.0, 40.0]
    assert [c for b in out for c in b.features["city"]][1] == "oslo"  # 2 each: first by name
    x = np.array([[1.0, np.nan], [2.0, np.nan], [np.nan, np.nan], [10.0, np.nan]])
    [matrix] = run(from_arrays(x, split="train").pipe(process.fill_missing("median")))
    assert matrix.features.tolist()[2] == [2.0, 0.0]  # an all-missing column gets 0


def test_fill_missing_constant_needs_a_matching_value() -> None:
    """A constant fill value must suit the column: numbers for numbers."""
    x = np.array([[1.0, np.nan]], "float32")
    [batch] = run(from_arrays(x).pipe(process.fill_missing("constant", value=-1.0)))
    assert batch.features.tolist() == [[1.0, -1.0]]
    with pytest.raises(ConfigError, match=r"process\.fill_missing\.value"):
        process.fill_missing("constant")
    with pytest.raises(StageError, match="expected a number for a numeric matrix"):
        run(from_arrays(x).pipe(process.fill_missing("constant", value="zero")))


CSV = """size,color,shape,price
1.0,red,round,10
2.0,blue,square,20
,red,round,15
4.0,green,,40
3.0,red,square,30
"""


def test_a_csv_table_becomes_one_matrix(tmp_path: Path) -> None:
    """fill_missing → one_hot → standardize → concat_columns gives the model's matrix."""
    path = tmp_path / "shop.csv"
    path.write_text(CSV)
    stages = [
        collect.csv(str(path), label="price", chunk_size=2),
        access.split(1.0, 0.0, 0.0),
        process.fill_missing(),
        process.one_hot(["color", "shape"]),
        process.standardize(columns=["size"]),
        process.concat_columns(),
    ]
    batches = run(reactivex.empty().pipe(*stages))
    matrix = np.concatenate([b.features for b in batches])
    meta = batches[0].metadata
    assert matrix.shape == (5, 1 + 3 + 2)
    assert meta.feature_spec.shape == (6,)
    assert [s.name for s in meta.preprocessing] == [
        "fill_missing",
        "one_hot",
        "standardize",
        "concat_columns",
    ]
    assert sorted(meta.raw_features) == ["color", "shape", "size"]  # type: ignore[arg-type]
    np.testing.assert_allclose(matrix[:, 0].mean(), 0.0, atol=1e-6)
    assert matrix[:, 1:4].sum(axis=1).tolist() == [1.0] * 5  # blue, green, red


def test_concat_columns_rejects_text_columns() -> None:
    """Text columns must be encoded first; the error says how."""
    meta = DatasetMetadata("t", {"a": FeatureSpec((), "float32"), "b": FeatureSpec((), "object")})
    batch = Batch(
        {"a": np.zeros(1, "float32"), "b": np.array(["x"], dtype=object)}, None, [0], meta
    )
    with pytest.raises(
        StageError, match=r"text columns \['b'\].*process\.one_hot.*a thousands separator"
    ):
        run(reactivex.of(batch).pipe(process.concat_columns()))


def test_one_hot_unknown_and_missing_values_are_zero() -> None:
    """Categories seen only outside training, and missing values, encode as all zeros."""
    step = OneHot(("c", "n"), (("a", "b"), (1.0, 2.0)))
    out = step.apply({"c": np.array(["b", "z", None], dtype=object), "n": np.array([2, 7, 1])})
    assert out["c"].tolist() == [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    assert out["n"].tolist() == [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]


def test_tabular_steps_equal_their_tf_twins() -> None:
    """Each tabular step computes the same in numpy and in TF (strings: '' is missing)."""
    import tensorflow as tf

    x = np.array([[1.0, np.nan], [np.nan, 4.0]], "float32")
    for step in (FillMissing((0.5, 2.0)), Standardize((1.0, 2.0), (2.0, 4.0))):
        np.testing.assert_allclose(step.apply(x), step.apply_tf(tf.constant(x)).numpy())
    columns = {"c": np.array(["b", "z", None], dtype=object), "n": np.array([2.0, 7.0, 1.0])}
    tf_columns = {"c": tf.constant(["b", "z", ""]), "n": tf.constant([2.0, 7.0, 1.0])}
    steps = [
        FillMissing(("b",), columns=("c",)),
        OneHot(("c", "n"), (("a", "b"), (1.0, 2.0))),
        ConcatColumns(("c", "n"), (2, 2)),
    ]
    mine, theirs = columns, tf_columns
    for step in steps:
        mine, theirs = step.apply(mine), step.apply_tf(theirs)
    np.testing.assert_array_equal(mine, theirs.numpy())


class Identity:
    """A stand-in model that returns its (preprocessed) input, to compare features."""

    def __call__(self, x: object, training: bool = False) -> object:
        return x


def serving_function(meta: DatasetMetadata) -> tuple[object, dict[str, object]]:
    """The export's serving_default function for ``meta`` (identity model), and its inputs."""
    import tensorflow as tf

    from rxpipe.operators.deploy._signatures import build_endpoints
    from rxpipe.serving.bundle import describe_spec

    fn, [signature] = build_endpoints(
        Identity(),  # type: ignore[arg-type]
        meta.raw_features,
        meta.preprocessing,
        classify=False,
    )["serving_default"]
    specs = signature if isinstance(signature, dict) else {"features": signature}
    inputs = {name: describe_spec(name, spec) for name, spec in specs.items()}
    return tf.function(fn, input_signature=[signature]), inputs


MISSING_CSV_ROWS = 120


def write_csv_with_missing_values(path: Path) -> list[dict[str, str]]:
    """A CSV whose cells are missing as "", "NA", "N/A", " null " (written) and its rows."""
    rng = np.random.default_rng(0)
    cities = ["paris", "london", "zürich", "oslo"]
    tokens = ["", "NA", "N/A", " null "]
    rows = []
    for i in range(MISSING_CSV_ROWS):
        age = tokens[i % 4] if i % 7 == 0 else f"{rng.normal(40, 10):.1f}"
        city = tokens[i % 4] if i % 5 == 0 else cities[i % 4]
        rows.append({"age": age, "city": city, "n": str(i % 3), "y": str(i % 2)})
    text = "age,city,n,y\n" + "".join(f"{r['age']},{r['city']},{r['n']},{r['y']}\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return rows


@pytest.mark.parametrize("client", ["null", "as written"])
def test_training_and_serving_agree_on_rows_with_missing_values(
    tmp_path: Path, client: str
) -> None:
    """Rows with missing cells give the same features in training and through the export.

    A client sends a missing value as JSON null (checked and converted by the serving
    input parser, since the model fills that input) or as the CSV text ("NA", ...).
    """

    import tensorflow as tf

    from rxpipe.serving.inputs import filled_inputs, rows_to_batch

    path = tmp_path / "people.csv"
    rows = write_csv_with_missing_values(path)
    stages = [
        collect.csv(str(path), label="y", types={"n": "int"}, chunk_size=50),
        access.split(1.0, 0.0, 0.0, seed=0),
        process.fill_missing(),
        process.one_hot(["city", "n"]),
        process.standardize(columns=["age"]),
        process.concat_columns(),
    ]
    batches = run(reactivex.empty().pipe(*stages))
    trained = np.concatenate([b.features for b in batches])
    order = np.argsort(np.concatenate([b.ids for b in batches]).astype(int))
    meta = batches[0].metadata
    serve, inputs = serving_function(meta)
    card_steps = json.loads(
        json.dumps([{"name": s.name, **s.to_config()} for s in meta.preprocessing])
    )
    missing_ok = filled_inputs(card_steps, inputs)
    assert missing_ok == {"age", "city", "n"}  # n: an int64 input, null still refused

    def cell(text: str, number: bool) -> object:
        if client == "null" and text.strip() in ("", "NA", "N/A", "null"):
            return None
        return (
            (float(text) if text.strip() not in ("", "NA", "N/A", "null") else None)
            if number
            else text
        )

    instances = [
        {"age": cell(r["age"], True), "city": cell(r["city"], False), "n": int(r["n"])}
        for r in rows
    ]
    if client == "as written":  # numbers still travel as numbers: a missing one as NaN
        for instance in instances:
            instance["age"] = float("nan") if instance["age"] is None else instance["age"]
    batch = rows_to_batch(instances, inputs, missing_ok)
    served = serve({k: tf.constant(v) for k, v in batch.items()})["scores"].numpy()  # type: ignore[operator]
    np.testing.assert_allclose(served, trained[order], rtol=0, atol=1e-6)
    assert np.isfinite(served).all()


def test_missing_strings_are_missing_in_numpy_and_tf_alike() -> None:
    """ "NA", " N/A ", "" (and None in numpy) are missing for FillMissing and OneHot, both sides."""
    import tensorflow as tf

    cells = ["NA", " N/A ", "", "null", "rome", " rome", "None", "nan"]
    fill = FillMissing(("oslo",), columns=("city",))
    onehot = OneHot(("city",), (("oslo", "rome"),))
    mine = onehot.apply(fill.apply({"city": np.array(cells, dtype=object)}))["city"]
    served = onehot.apply_tf(fill.apply_tf({"city": tf.constant(cells)}))["city"].numpy()
    np.testing.assert_array_equal(mine, served)
    assert mine.tolist() == [[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 2 + [[1.0, 0.0]] * 2
    zeros = onehot.apply_tf({"city": tf.constant(["NA", "rome"])})["city"].numpy()
    assert zeros.tolist() == [[0.0, 0.0], [0.0, 1.0]]
    assert fill.to_config()["missing"] == ["", "NA", "N/A", "NaN", "nan", "null", "None"]


def test_missing_strings_can_be_given_as_collect_csv_got_them() -> None:
    """missing= on fill_missing and one_hot is fitted, applied and recorded for serving."""
    import tensorflow as tf

    meta = DatasetMetadata("t", {"city": FeatureSpec((), "object")})
    city = np.array(["rome", "?", "rome", "NA"], dtype=object)
    batch = Batch({"city": city}, None, np.arange(4), meta, "train")
    stages = [process.fill_missing(missing=["?"]), process.one_hot(["city"], missing=["?"])]
    [out] = run(reactivex.of(batch).pipe(*stages))
    fill, onehot = out.metadata.preprocessing
    assert fill.to_config()["missing"] == ["?"]
    assert onehot.categories == (("NA", "rome"),)  # type: ignore[attr-defined]
    served = onehot.apply_tf(fill.apply_tf({"city": tf.constant(city.tolist())}))
    np.testing.assert_array_equal(out.features["city"], served["city"].numpy())
    with pytest.raises(ConfigError, match=r"process\.one_hot\.missing: expected "):
        process.one_hot(["city"], missing="NA")


def test_fill_missing_on_an_integer_matrix_exports_unchanged() -> None:
    """Integers cannot be missing: the serving function builds and passes them through."""
    import tensorflow as tf

    x = np.array([[1, 2], [4, 6], [7, 9]], "int64")
    [batch] = run(from_arrays(x, np.array([0, 1, 0]), split="train").pipe(process.fill_missing()))
    assert batch.features.tolist() == x.tolist()
    serve, _ = serving_function(batch.metadata)
    served = serve(tf.constant(x))["scores"].numpy()  # type: ignore[operator]
    assert served.tolist() == x.tolist()


def test_missing_strings_in_any_whitespace_are_missing_on_both_sides() -> None:
    """Python's strip() takes every Unicode space (a no-break space from a spreadsheet, an
    ideographic space); serving strips the same ones, not only ASCII's."""
    import sys

    import tensorflow as tf

    spaces = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    cells = ["\xa0NA", "NA\u3000", "\u2028N/A\u2029", "\x0bnull", f"{spaces}None{spaces}", "rome"]
    fill = FillMissing(("oslo",), columns=("city",))
    mine = fill.apply({"city": np.array(cells, dtype=object)})["city"]
    served = fill.apply_tf({"city": tf.constant(cells)})["city"].numpy()
    assert mine.tolist() == ["oslo"] * 5 + ["rome"]
    assert [v.decode() for v in served] == mine.tolist()


def test_categories_are_compared_without_surrounding_spaces_on_both_sides() -> None:
    """ " Paris", "Paris " and "Paris" are one category when fitted, applied and served
    (a CSV written "a, b" or a client's stray space); letter case still counts."""
    import tensorflow as tf

    meta = DatasetMetadata("t", {"city": FeatureSpec((), "object")})
    city = np.array([" Paris", "Paris ", "Rome", "\xa0Rome", "Paris", None], dtype=object)
    batch = Batch({"city": city}, None, np.arange(6), meta, "train")
    [out] = run(reactivex.of(batch).pipe(process.fill_missing(), process.one_hot(["city"])))
    fill, onehot = out.metadata.preprocessing
    assert onehot.categories == (("Paris", "Rome"),)  # type: ignore[attr-defined]
    assert fill.values == ("Paris",)  # type: ignore[attr-defined]  # 3 Paris, 2 Rome
    assert out.features["city"].tolist() == [[1.0, 0.0]] * 2 + [[0.0, 1.0]] * 2 + [[1.0, 0.0]] * 2
    served = ["Paris", "\u3000Rome\t", " paris ", "Madrid", "", "Rome"]
    mine = onehot.apply(fill.apply({"city": np.array(served, dtype=object)}))["city"]
    theirs = onehot.apply_tf(fill.apply_tf({"city": tf.constant(served)}))["city"].numpy()
    np.testing.assert_array_equal(mine, theirs)
    assert mine.tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]


def test_a_text_column_given_to_standardize_is_named() -> None:
    """Numbers written "1,234" are read as text; standardize names the column and says so."""
    meta = DatasetMetadata(
        "t", {"amount": FeatureSpec((), "object"), "n": FeatureSpec((), "float32")}
    )
    columns = {"amount": np.array([None, "1,234"], dtype=object), "n": np.zeros(2, "float32")}
    batch = Batch(columns, None, np.arange(2), meta, "train")
    with pytest.raises(StageError) as info:
        run(reactivex.of(batch).pipe(process.standardize(columns=["n", "amount"])))
    assert (
        "process.standardize: column 'amount': expected numbers, one per sample. "
        "Received: text such as '1,234' (numbers written with a thousands separator"
    ) in str(info.value)


def test_a_vector_column_given_to_fill_missing_or_standardize_is_named() -> None:
    """A vector column is refused by name where per-column statistics are fitted (not by
    numpy's error); a constant still fills it."""
    meta = DatasetMetadata(
        "t", {"v": FeatureSpec((2,), "float32"), "n": FeatureSpec((), "float32")}
    )
    columns = {"v": np.array([[1.0, np.nan]] * 3, "float32"), "n": np.zeros(3, "float32")}
    batch = Batch(columns, None, np.arange(3), meta, "train")
    for stage in (process.fill_missing(columns=["n", "v"]), process.standardize(columns=["v"])):
        with pytest.raises(
            StageError,
            match=r"column 'v': expected numbers.*, one per sample\. "
            r"Received: samples of shape \(2,\)",
        ):
            run(reactivex.of(batch).pipe(stage))
    constant = process.fill_missing("constant", value=0.0, columns=["v"])
    [out] = run(reactivex.of(batch).pipe(constant))
    assert out.features["v"].tolist() == [[1.0, 0.0]] * 3


def test_a_spread_too_small_for_float32_scales_by_one() -> None:
    """A standard deviation that is 0 in float32 is no divisor: the values stay finite."""
    x = np.zeros((1000, 1), "float32")
    x[0] = np.float32(1.4e-45)  # the smallest float32: std ~4e-47, 0 in float32
    source = from_arrays(x, split="train", batch_size=1000)
    [batch] = run(source.pipe(process.standardize()))
    [step] = batch.metadata.preprocessing
    assert step.std == (1.0,)  # type: ignore[attr-defined]
    assert np.isfinite(batch.features).all()


def test_a_csv_with_one_feature_column_is_filled_and_standardized(tmp_path: Path) -> None:
    """collect.csv gives one unnamed array for one feature column: fill_missing and
    standardize treat it as one column, in training and in the exported function alike."""
    import tensorflow as tf

    path = tmp_path / "one.csv"
    path.write_text("x,y\n1.0,a\n,b\n3.0,a\n8.0,b\n")
    stages = [
        collect.csv(str(path), label="y"),
        access.split(1.0, 0.0, 0.0),
        process.fill_missing(),
        process.standardize(),
    ]
    [batch] = run(reactivex.empty().pipe(*stages))
    assert batch.features.shape == (4,)
    x = np.array([1.0, 4.0, 3.0, 8.0])
    np.testing.assert_allclose(batch.features, (x - x.mean()) / x.std(), rtol=1e-6)
    serve, inputs = serving_function(batch.metadata)
    assert list(inputs) == ["features"]
    raw = tf.constant([1.0, np.nan, 3.0, 8.0], tf.float32)
    served = serve(raw)["scores"].numpy()  # type: ignore[operator]
    np.testing.assert_allclose(served, batch.features, rtol=0, atol=1e-6)
    with pytest.raises(
        StageError,
        match=r"to pick columns \['x'\] from\. Received: one "
        r"unnamed array of samples of shape \(\) \(collect\.csv reads a file "
        r"with one feature column as one array\)$",
    ):
        run(reactivex.empty().pipe(*stages[:2], process.one_hot(["x"])))
    with pytest.raises(StageError, match=r"leave process\.concat_columns out"):
        run(reactivex.empty().pipe(*stages, process.concat_columns()))


def test_an_infinite_value_is_named_where_it_would_spoil_a_fitted_statistic() -> None:
    """One inf would make the mean (and every standardized value) inf or NaN: the column
    and sample are named instead."""
    meta = DatasetMetadata("t", {"a": FeatureSpec((), "float32"), "b": FeatureSpec((), "float32")})
    columns = {
        "a": np.array([1.0, 2.0, 3.0], "float32"),
        "b": np.array([1.0, np.nan, -np.inf], "float32"),
    }
    batch = Batch(columns, None, np.array([10, 11, 12]), meta, "train")
    expected = (
        r": column 'b', sample 12: expected finite numbers \(NaN for a missing value\)\. "
        r"Received: -inf$"
    )
    for name, stage in (
        ("standardize", process.standardize()),
        ("fill_missing", process.fill_missing()),
        ("fill_missing", process.fill_missing("median")),  # median of 1 and -inf: -inf
    ):
        with pytest.raises(StageError, match=rf"process\.{name}{expected}") as info:
            run(reactivex.of(batch).pipe(stage))
        assert info.value.sample_ids == (12,)
    x = np.array([[1.0, np.inf]], "float32")
    with pytest.raises(StageError, match=r"column 1, sample 0: expected finite"):
        run(from_arrays(x, split="train").pipe(process.standardize()))
    values = {"a": np.ones(4, "float32"), "b": np.array([1.0, np.nan, 1.0, -np.inf], "float32")}
    counted = Batch(values, None, np.arange(4), meta, "train")
    [frequent] = run(reactivex.of(counted).pipe(process.fill_missing("most_frequent")))
    assert frequent.features["b"].tolist() == [1.0, 1.0, 1.0, -np.inf]  # counts stay sound


QUESTION_MARK_CSV = """city,size,y
rome,1.5,a
?,2.0,b
rome,?,a
oslo,4.0,b
 ? ,3.0,a
NA,2.5,b
rome,1.0,a
"""
"""A table whose missing cells are written "?" (and " ? "); "NA" is a city here."""


def question_mark_stages(path: Path, *fills: dict[str, Any]) -> list[Any]:
    """collect.csv reading "?" as missing, then the tabular steps (fill_missing with each
    of ``fills``, default one with default parameters)."""
    return [
        collect.csv(str(path), label="y", missing=["", "?"], chunk_size=3),
        access.split(1.0, 0.0, 0.0, seed=0),
        *(process.fill_missing(**fill) for fill in fills or [{}]),
        process.one_hot(["city"]),
        process.standardize(columns=["size"]),
        process.concat_columns(),
    ]


def raw_rows(text: str) -> list[dict[str, object]]:
    """The CSV's rows as a client sends them: text as written, a missing number as null."""
    lines = text.strip().splitlines()[1:]
    cells = [line.split(",") for line in lines]
    return [{"city": c, "size": None if s == "?" else float(s)} for c, s, _ in cells]


@pytest.mark.parametrize(
    "fills",
    [
        [{}],
        [{"strategy": "most_frequent", "missing": []}],  # the source's strings are added
        [{"strategy": "constant", "value": "rome", "columns": ["city"]}, {}],
    ],
)
def test_the_source_missing_strings_are_missing_in_training_and_serving(
    tmp_path: Path, fills: list[dict[str, Any]]
) -> None:
    """With collect.csv(missing=["", "?"]) and the steps' default (or another) missing, a
    "?" is missing in the fitted, recorded and served steps alike, and "NA" is a city."""
    import tensorflow as tf

    from rxpipe.serving.inputs import filled_inputs, rows_to_batch

    path = tmp_path / "q.csv"
    path.write_text(QUESTION_MARK_CSV)
    batches = run(reactivex.empty().pipe(*question_mark_stages(path, *fills)))
    trained = np.concatenate([b.features for b in batches])
    order = np.argsort(np.concatenate([b.ids for b in batches]).astype(int))
    meta = batches[0].metadata
    assert meta.missing_strings == ("", "?")
    *fill_steps, onehot = meta.preprocessing[: len(fills) + 1]
    for fill_step in fill_steps:
        assert set(fill_step.to_config()["missing"]) >= {"", "?"}
    assert onehot.categories == (("NA", "oslo", "rome"),)  # type: ignore[attr-defined]
    serve, inputs = serving_function(meta)
    card = [{"name": s.name, **s.to_config()} for s in meta.preprocessing]
    batch = rows_to_batch(raw_rows(QUESTION_MARK_CSV), inputs, filled_inputs(card, inputs))
    served = serve({k: tf.constant(v) for k, v in batch.items()})["scores"].numpy()  # type: ignore[operator]
    np.testing.assert_allclose(served, trained[order], rtol=0, atol=1e-6)
    rome = [0.0, 0.0, 1.0]  # the most frequent city, or the constant: "?" was filled
    assert served[1, :3].tolist() == served[4, :3].tolist() == rome


@pytest.mark.slow
def test_an_exported_model_reads_the_source_missing_strings_as_training_did(
    tmp_path: Path,
) -> None:
    """End to end: collect.csv(missing=["", "?"]) → fill_missing/one_hot → train → export;
    the bundle's answers for the raw rows ("?" as written) are the trained model's answers
    for the training-time features of those rows."""
    from rxpipe import Pipeline
    from rxpipe.operators import deploy, models, train
    from rxpipe.serving.bundle import Bundle

    path = tmp_path / "q.csv"
    path.write_text(QUESTION_MARK_CSV)
    stages = question_mark_stages(path)
    pipeline = Pipeline(
        *stages,  # type: ignore[arg-type]
        access.batch(8),
        process.label_encode(),
        models.mlp(hidden=[4]),
        train.fit(epochs=1),
        deploy.export(),
        name="q",
        runs_dir=tmp_path / "runs",
    )
    result = pipeline.run(progress=False)
    assert result.trained is not None
    assert result.run_dir is not None
    trained = result.trained
    batches = run(reactivex.empty().pipe(*question_mark_stages(path)))
    features = np.concatenate([b.features for b in batches])
    order = np.argsort(np.concatenate([b.ids for b in batches]).astype(int))
    expected = np.asarray(trained.model(features[order], training=False))
    rows = raw_rows(QUESTION_MARK_CSV)
    bundle = Bundle.load(result.run_dir / "model")
    columns = {name: [row[name] for row in rows] for name in ("city", "size")}
    served = bundle.predict(columns)["scores"]
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    question = bundle.predict({"city": ["?", "rome"], "size": [2.0, 2.0]})["scores"]
    np.testing.assert_allclose(question[0], question[1], rtol=1e-6)  # "?" filled as "rome"


SENTINEL_ROWS = [  # city, size, y: TOKEN is the CSV's missing string, -999 its number
    ("rome", "1.5", "1.0"),
    ("", "2.0", "2.0"),  # "" is a city: the missing strings do not hold it
    ("TOKEN", "3.0", "3.0"),
    ("oslo", "-999", "4.0"),
    ("rome", "-999.0", "5.0"),
    ("-999", " -9.99e2 ", "6.0"),
    ("oslo", "TOKEN", "7.0"),
    ("", "4.5", "8.0"),
    ("rome", "0.5", "9.0"),
]


def sentinel_csv(path: Path, token: str) -> None:
    """The rows of :data:`SENTINEL_ROWS` with ``token`` as the missing string."""
    lines = ["city,size,y", *(",".join(r).replace("TOKEN", token) for r in SENTINEL_ROWS)]
    path.write_text("\n".join(lines) + "\n")


def sentinel_client_rows(token: str) -> list[dict[str, object]]:
    """The rows as a JSON client sends them: numbers as numbers (-999 however the CSV
    wrote it), a missing value as null, "" and other text as written."""
    rows: list[dict[str, object]] = []
    for city, size, _ in SENTINEL_ROWS:
        rows.append(
            {
                "city": None if city == "TOKEN" else city,
                "size": None if size == "TOKEN" else float(size),
            }
        )
    return rows


@pytest.mark.parametrize("token", ["?", "NA"])
@pytest.mark.parametrize("standardize_first", [False, True])
def test_null_and_numeric_missing_values_are_served_as_training_read_them(
    tmp_path: Path, token: str, standardize_first: bool
) -> None:
    """collect.csv(missing=[token, "-999"]), without "": a served null is the column's
    missing value (filled, not the category ""), and a served -999 (written -999.0 or
    -9.99e2 in the CSV) is missing in the number column, whether standardize runs before
    fill_missing or after; a text "-999" is missing text. Served features equal training's."""
    import tensorflow as tf

    from rxpipe.serving.inputs import filled_inputs, rows_to_batch

    path = tmp_path / "sentinel.csv"
    sentinel_csv(path, token)
    scale = [process.standardize(columns=["size"])]
    stages = [
        collect.csv(str(path), label="y", missing=[token, "-999"], chunk_size=4),
        access.split(1.0, 0.0, 0.0, seed=0),
        *(scale if standardize_first else []),
        process.fill_missing(),
        process.one_hot(["city"]),
        *([] if standardize_first else scale),
        process.concat_columns(),
    ]
    batches = run(reactivex.empty().pipe(*stages))
    trained = np.concatenate([b.features for b in batches])
    order = np.argsort(np.concatenate([b.ids for b in batches]).astype(int))
    meta = batches[0].metadata
    assert meta.preprocessing[0].name == "missing_numbers"
    serve, inputs = serving_function(meta)
    card = json.loads(json.dumps([{"name": s.name, **s.to_config()} for s in meta.preprocessing]))
    filled = filled_inputs(card, inputs)
    assert filled.null_text["city"] == token
    batch = rows_to_batch(sentinel_client_rows(token), inputs, filled)
    served = serve({k: tf.constant(v) for k, v in batch.items()})["scores"].numpy()  # type: ignore[operator]
    np.testing.assert_allclose(served, trained[order], rtol=0, atol=1e-6)
    size = served[:, -1]
    assert size[3] == size[4] == size[5] == size[6]  # -999 in any spelling, and the token
    assert served[1, :3].tolist() == served[7, :3].tolist() == [1.0, 0.0, 0.0]  # the city ""
    assert served[2, :3].tolist() == served[5, :3].tolist() == [0.0, 0.0, 1.0]  # filled: rome
