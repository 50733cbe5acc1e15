"""Tests of rxpipe.lineage: what a stage's input is made of, and how two lineages differ."""

from __future__ import annotations

import os
from pathlib import Path

import reactivex
from reactivex import operators as ops

import rxpipe
from rxpipe import Stage
from rxpipe.lineage import current_lineage, difference, lineage, lineage_of
from rxpipe.operators import access, process


def test_plugins_and_parameters_are_described_in_order() -> None:
    described = lineage([process.normalize(scale=0.5), access.batch(8)], seed=3)()
    assert described is not None
    assert described["seed"] == 3
    assert described["rxpipe"] == rxpipe.__version__
    assert [s["plugin"] for s in described["stages"]] == ["process.normalize", "access.batch"]
    assert described["stages"][0]["params"]["scale"] == 0.5


def test_what_cannot_be_seen_into_is_unknown() -> None:
    """A plain operator, a hand-made Stage, a function parameter, a Python source."""
    normalize = process.normalize(scale=0.5)
    assert lineage([normalize, ops.map(lambda b: b)], seed=0)() is None
    assert lineage([Stage("custom.mine", ops.map(lambda b: b))], seed=0)() is None
    with_function = Stage("process.normalize", normalize.operator, params={"fn": print})
    assert lineage([with_function], seed=0)() is None
    assert lineage([normalize], seed=0, known_source=False)() is None


def test_a_folder_stands_for_every_file_under_it(tmp_path: Path) -> None:
    """Adding or changing a file in a subfolder changes the folder's state."""
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(b"12")
    stage = Stage("process.normalize", ops.map(lambda b: b), params={"data": str(tmp_path)})

    def state() -> dict[str, object]:
        described = lineage([stage], seed=0)()
        assert described is not None
        params: dict[str, object] = described["stages"][0]["params"]["data"]
        return params

    first = state()
    assert (first["files"], first["bytes"]) == (1, 2)
    (tmp_path / "cats" / "b.png").write_bytes(b"345")
    second = state()
    assert (second["files"], second["bytes"]) == (2, 5)
    stamp = os.stat(tmp_path / "cats" / "a.png").st_mtime_ns + 10**9
    os.utime(tmp_path / "cats" / "a.png", ns=(stamp, stamp))
    third = state()
    assert third["bytes"] == 5
    assert third["digest"] != second["digest"]
    assert (
        difference(
            {"stages": [{"plugin": "collect.x", "params": {"data": second}}]},
            {"stages": [{"plugin": "collect.x", "params": {"data": third}}]},
        )
        == f"collect.x.data: {str(tmp_path)!r} changed (modified)"
    )


def test_differences_are_named_for_people() -> None:
    def stages(*plugins: str, **params: object) -> dict[str, object]:
        return {"seed": 0, "stages": [{"plugin": p, "params": dict(params)} for p in plugins]}

    assert difference(stages("a.x"), stages("a.x")) is None
    assert difference(stages("a.x"), stages("a.x", "b.y")) == (
        "stages before the cache: ['a.x'] → ['a.x', 'b.y']"
    )
    assert difference(stages("a.x", size={"w": 1}), stages("a.x", size={"w": 2})) == (
        "a.x.size.w: 1 → 2"
    )
    assert difference({**stages("a.x"), "rxpipe": "0.1"}, {**stages("a.x"), "rxpipe": "0.2"}) == (
        "rxpipe: '0.1' → '0.2'"
    )


def test_the_current_lineage_is_set_only_within_its_block() -> None:
    described = lineage([process.normalize(scale=0.5)], seed=0)
    assert current_lineage() is None
    with lineage_of(described):
        assert current_lineage() == described()
    assert current_lineage() is None


def test_a_pipeline_run_gives_each_stage_the_lineage_of_its_input(tmp_path: Path) -> None:
    seen: list[object] = []

    def probe(source: reactivex.Observable[object]) -> reactivex.Observable[object]:
        return reactivex.defer(lambda _: (seen.append(current_lineage()), source)[1])

    pipeline = rxpipe.Pipeline(
        rxpipe.operators.collect.iris(), probe, name="probe", runs_dir=tmp_path
    )
    pipeline.run(progress=False)
    (described,) = seen
    assert isinstance(described, dict)
    assert [s["plugin"] for s in described["stages"]] == ["collect.iris"]
