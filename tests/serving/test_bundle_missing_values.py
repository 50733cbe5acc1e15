"""A trained table model answers for rows with missing values as training computed them:
through Bundle.predict, a real ``rxpipe serve`` over HTTP, and ``rxpipe predict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import reactivex

from rxpipe.cli import main
from rxpipe.operators import access, collect, process
from rxpipe.testing import collect as run

from .conftest import serving

CITIES = ["rome", "oslo", "", "?", "rome", "-999", "lima"]
"""City cells: "" is a city (the missing strings below do not hold it); "?" and "-999"
are missing text, filled with "rome"."""
SIZES = ["1.5", "-999", "2.25", "?", "-999.0", "3.0", "-9.99e2", "0.5", "4.0"]
"""Size cells: -999 written three ways and "?" are missing numbers."""


def write_table(path: Path, rows: int = 63) -> list[tuple[str, str]]:
    """A regression table (city, size → y) with missing cells; its (city, size) cells."""
    cells = [(CITIES[i % len(CITIES)], SIZES[i % len(SIZES)]) for i in range(rows)]
    lines = ["city,size,y", *(f"{c},{s},{i % 5 * 0.5}" for i, (c, s) in enumerate(cells))]
    path.write_text("\n".join(lines) + "\n")
    return cells


def data_stages(path: Path) -> list[Any]:
    """collect.csv(missing=["?", "-999"]) and the default table steps."""
    return [
        collect.csv(str(path), label="y", missing=["?", "-999"], chunk_size=16),
        access.split(1.0, 0.0, 0.0, seed=0),
        process.fill_missing(),
        process.one_hot(["city"]),
        process.standardize(columns=["size"]),
        process.concat_columns(),
    ]


def client_rows(cells: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The rows as a JSON client sends them: a missing value as null, -999 as the number
    -999 however the CSV wrote it, "" and other text as written."""
    return [
        {
            "city": None if city == "?" else city,
            "size": None if size == "?" else float(size),
        }
        for city, size in cells
    ]


@pytest.mark.slow
def test_missing_values_are_served_as_training_read_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """collect.csv(missing=["?", "-999"]) → fill_missing, one_hot, standardize → mlp →
    export: for the CSV's rows sent as JSON (null for "?", the number -999 for -999,
    -999.0 and -9.99e2), Bundle.predict, :predict and /predict over HTTP and rxpipe
    predict answer what the trained model (and model.keras) computes on the training-time
    features of those rows."""
    import keras

    from rxpipe import Pipeline
    from rxpipe.operators import deploy, models, train
    from rxpipe.serving.bundle import Bundle

    path = tmp_path / "table.csv"
    cells = write_table(path)
    pipeline = Pipeline(
        *data_stages(path),
        access.batch(16),
        models.mlp(hidden=[4], dropout=0.0),
        train.fit(epochs=2),
        deploy.export(),
        name="sentinels",
        runs_dir=tmp_path / "runs",
    )
    result = pipeline.run(progress=False)
    assert result.trained is not None
    assert result.run_dir is not None
    batches = run(reactivex.empty().pipe(*data_stages(path)))
    order = np.argsort(np.concatenate([b.ids for b in batches]).astype(int))
    features = np.concatenate([b.features for b in batches])[order]
    expected = np.asarray(result.trained.model(features, training=False))
    saved = keras.models.load_model(result.run_dir / "model" / "model.keras")
    np.testing.assert_allclose(np.asarray(saved(features)), expected, rtol=1e-6, atol=1e-7)
    assert np.ptp(expected) > 0  # the rows' answers differ: a wrong feature would show

    rows = client_rows(cells)
    bundle = Bundle.load(result.run_dir)
    columns = {name: [row[name] for row in rows] for name in ("city", "size")}
    served = bundle.predict(columns)["scores"]
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    same = bundle.predict({"city": [None, "?", "-999", "rome"], "size": [-999, None, -999.0, 2.0]})
    assert same["scores"][0] == same["scores"][1] == same["scores"][2]  # all missing, filled
    assert same["scores"][3] != same["scores"][0]

    with serving(result.run_dir, tmp_path) as server:
        tf_serving = httpx.post(
            f"{server.url}/v1/models/sentinels:predict", json={"instances": rows}, timeout=60
        )
        pipcook = httpx.post(f"{server.url}/predict", json={"instances": rows}, timeout=60)
    assert tf_serving.status_code == 200, tf_serving.text
    np.testing.assert_allclose(tf_serving.json()["predictions"], served, rtol=1e-6)
    assert pipcook.status_code == 200, pipcook.text
    values = [answer["value"] for answer in pipcook.json()]
    np.testing.assert_allclose(values, served[:, 0], rtol=1e-6)

    (tmp_path / "rows.json").write_text(json.dumps(rows))
    assert main(["predict", str(result.run_dir), str(tmp_path / "rows.json"), "--json"]) == 0
    printed = [answer["value"] for answer in json.loads(capsys.readouterr().out)]
    np.testing.assert_allclose(printed, served[:, 0], rtol=1e-6)
