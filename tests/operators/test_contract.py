"""One contract, run over every registered batch→batch plugin (collect, access, process).

Each plugin must: complete on good input; pass an upstream error through unchanged (the
same object); report its own errors as a ``StageError`` naming its stage and the
samples involved; dispose its upstream when its subscriber goes away (reading no more
of a streaming source than it needs); keep the order it promises; and leave no thread
behind. A new plugin without a case here fails ``test_every_plugin_has_a_case``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import reactivex
from reactivex import operators as ops

from rxpipe import (
    Batch,
    BatchError,
    ConfigError,
    DatasetMetadata,
    FeatureSpec,
    Pipeline,
    PluginKind,
    Stage,
    StageError,
    registry,
)
from rxpipe.context import RunContext, running
from rxpipe.events import EventBus
from rxpipe.flow import generate, map_batches
from rxpipe.operators import access, collect, process
from rxpipe.testing import check_contract, wait_for
from rxpipe.testing import collect as run

pytestmark = pytest.mark.usefixtures("no_thread_leak")

Operator = Callable[[reactivex.Observable[Any]], reactivex.Observable[Any]]
Source = Callable[[int], reactivex.Observable[Batch]]
SPLITS = ("train", "test")
BATCH = 4


def _png(value: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _objects(values: list[Any]) -> np.ndarray:  # type: ignore[type-arg]
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _rows(kind: str, ids: np.ndarray) -> tuple[Any, DatasetMetadata]:  # type: ignore[type-arg]
    """Features of ``kind`` for the samples ``ids``, and their metadata."""
    if kind == "matrix":
        x = np.stack([ids, ids * 2.0, ids % 3, -ids], axis=1).astype("float32")
        return x, DatasetMetadata("m", FeatureSpec((4,), "float32"), ("a", "b", "c"))
    if kind == "images":
        x = (ids[:, None, None, None] * 7 % 256 * np.ones((1, 6, 6, 3))).astype("uint8")
        return x, DatasetMetadata(
            "i", FeatureSpec((6, 6, 3), "uint8", (0.0, 255.0)), ("a", "b", "c")
        )
    if kind == "png":
        return _objects([_png(int(i) % 256) for i in ids]), DatasetMetadata(
            "p", FeatureSpec((), "object"), ("a", "b", "c")
        )
    if kind == "text":
        words = ["red", "green", "blue", "cyan"]
        texts = [f"{words[int(i) % 4]} sample {int(i) % 5}" for i in ids]
        return _objects(texts), DatasetMetadata("t", FeatureSpec((), "object"), ("a", "b", "c"))
    columns = {
        "size": (ids * 1.5).astype("float32"),
        "color": _objects([["red", "blue", None][int(i) % 3] for i in ids]),
    }
    meta = DatasetMetadata(
        "c",
        {"size": FeatureSpec((), "float32"), "color": FeatureSpec((), "object")},
        ("a", "b", "c"),
    )
    return columns, meta


@attrs.define
class Pulls:
    """What a source was asked for: batches produced, and whether it was closed."""

    produced: int = 0
    closed: bool = False


def source_of(kind: str, split: str | None = None, pulls: Pulls | None = None) -> Source:
    """A cold source of ``n`` batches of ``kind`` (splits alternate unless ``split``)."""

    def make(n: int) -> reactivex.Observable[Batch]:
        def batches() -> Iterator[Batch]:
            try:
                for index in range(n):
                    ids = np.arange(index * BATCH, (index + 1) * BATCH)
                    features, meta = _rows(kind, ids)
                    which = split or SPLITS[index % 2]
                    if pulls is not None:
                        pulls.produced += 1
                    yield Batch(features, ids % 3, ids, meta, which)
            finally:
                if pulls is not None:
                    pulls.closed = True

        return generate(batches)

    return make


@attrs.frozen
class Case:
    """A plugin under contract."""

    make: Callable[[Path], Operator]
    kind: str = "matrix"
    split: str | None = None
    bad: Callable[[Path], tuple[Operator, reactivex.Observable[Batch]]] | None = None
    ordered: bool = True
    streaming: bool = True
    source: bool = False


def _bad_csv(files: Path) -> tuple[Operator, reactivex.Observable[Batch]]:
    return collect.csv(str(files / "bad.csv"), label="y"), reactivex.empty()


def _bad_text_folder(files: Path) -> tuple[Operator, reactivex.Observable[Batch]]:
    return collect.text_folder(str(files / "bad_texts")), reactivex.empty()


def _bad_tfrecord(files: Path) -> tuple[Operator, reactivex.Observable[Batch]]:
    return collect.tfrecord([str(files / "bad.tfrecord")], {"x": "float32"}), reactivex.empty()


def _mixed_shapes(_: Path) -> reactivex.Observable[Batch]:
    meta = DatasetMetadata("m", FeatureSpec((4,), "float32"))
    return reactivex.of(
        Batch(np.zeros((3, 4), "float32"), None, [0, 1, 2], meta, "train"),
        Batch(np.zeros((3, 5), "float32"), None, [3, 4, 5], meta, "train"),
    )


def bad_input(kind: str, split: str | None = "train") -> Callable[[int], Any]:
    """A source of ``kind`` features, for a plugin that does not accept them."""
    return source_of(kind, split)


def with_input(stage: Operator, data: reactivex.Observable[Batch]) -> Any:
    """A ``bad`` factory: the stage and its input."""
    return lambda _: (stage, data)


CASES: dict[str, Case] = {
    "collect.digits": Case(lambda _: collect.digits(limit=10, chunk_size=4), source=True),
    "collect.iris": Case(lambda _: collect.iris(limit=10, chunk_size=4), source=True),
    "collect.wine": Case(lambda _: collect.wine(limit=10, chunk_size=4), source=True),
    "collect.breast_cancer": Case(lambda _: collect.breast_cancer(limit=10), source=True),
    "collect.diabetes": Case(lambda _: collect.diabetes(limit=10), source=True),
    "collect.numpy": Case(
        lambda files: collect.numpy(path=str(files / "arrays.npz"), chunk_size=3), source=True
    ),
    "collect.image_folder": Case(
        lambda files: collect.image_folder(str(files / "images"), chunk_size=2), source=True
    ),
    "collect.text_folder": Case(
        lambda files: collect.text_folder(str(files / "texts")), source=True, bad=_bad_text_folder
    ),
    "collect.csv": Case(
        lambda files: collect.csv(str(files / "good.csv"), label="y", chunk_size=2),
        source=True,
        bad=_bad_csv,
    ),
    "collect.text_csv": Case(
        lambda files: collect.text_csv(str(files / "texts.csv")),
        source=True,
        bad=lambda files: (
            collect.text_csv(str(files / "bad.csv"), text="a", label="y"),
            reactivex.empty(),
        ),
    ),
    "collect.tfrecord": Case(
        lambda files: collect.tfrecord([str(files / "good.tfrecord")], {"x": "float32"}),
        source=True,
        bad=_bad_tfrecord,
    ),
    "access.batch": Case(
        lambda _: access.batch(5),
        bad=lambda files: (access.batch(5), _mixed_shapes(files)),
    ),
    "access.shuffle": Case(
        lambda _: access.shuffle(buffer_size=6, seed=0),
        ordered=False,
        bad=lambda files: (access.shuffle(buffer_size=2, seed=0), _mixed_shapes(files)),
    ),
    "access.split": Case(lambda _: access.split(seed=0), split="unsplit"),
    "access.split(stratify)": Case(
        lambda _: access.split(stratify=True, seed=0),
        split="unsplit",
        streaming=False,
        bad=lambda _: (
            access.split(stratify=True),
            reactivex.of(
                Batch(
                    np.zeros((2, 1)),
                    np.array([0.5, 1.5]),
                    [0, 1],
                    DatasetMetadata("r", FeatureSpec((1,), "float64")),
                )
            ),
        ),
    ),
    "access.unbatch": Case(lambda _: access.unbatch()),
    "access.cache": Case(lambda _: access.cache()),
    "access.shard": Case(lambda _: access.shard(1, 2, seed=0)),
    "access.take": Case(lambda _: access.take(1000)),
    "access.skip": Case(lambda _: access.skip(3)),
    "access.buffer": Case(lambda _: access.buffer(2)),
    # a dropping buffer never makes its source wait, so it may read everything before disposal
    "access.buffer(drop_oldest)": Case(
        lambda _: access.buffer(2, overflow="drop_oldest"), streaming=False
    ),
    "access.prefetch": Case(lambda _: access.prefetch(2)),
    "process.normalize": Case(
        lambda _: process.normalize(),
        kind="images",
        bad=lambda _: (process.normalize(), bad_input("matrix")(2)),
    ),
    "process.normalize(workers=2)": Case(
        lambda _: process.normalize(workers=2),
        kind="images",
        bad=lambda _: (process.normalize(workers=2), bad_input("matrix")(2)),
    ),
    "process.decode_image": Case(
        lambda _: process.decode_image(size=[4, 4]),
        kind="png",
        bad=lambda _: (
            process.decode_image(),
            reactivex.of(
                Batch(
                    _objects([b"not an image"]),
                    None,
                    ["x.png"],
                    DatasetMetadata("p", FeatureSpec((), "object")),
                )
            ),
        ),
    ),
    "process.decode_image(workers=2)": Case(
        lambda _: process.decode_image(size=[4, 4], workers=2), kind="png"
    ),
    "process.resize": Case(
        lambda _: process.resize([3, 3]),
        kind="images",
        bad=lambda _: (process.resize([3, 3]), bad_input("png")(2)),
    ),
    "process.grayscale": Case(
        lambda _: process.grayscale(),
        kind="images",
        bad=lambda _: (process.grayscale(), bad_input("png")(2)),
    ),
    "process.augment": Case(
        lambda _: process.augment(flip="both", rotation=10.0, seed=0),
        kind="images",
        bad=lambda _: (process.augment(), bad_input("png")(2)),
    ),
    "process.vectorize": Case(
        lambda _: process.vectorize(sequence_length=4),
        kind="text",
        streaming=False,
        bad=lambda _: (process.vectorize(), bad_input("matrix")(2)),
    ),
    "process.standardize": Case(
        lambda _: process.standardize(),
        streaming=False,
        bad=lambda _: (process.standardize(), bad_input("text")(2)),
    ),
    "process.fill_missing": Case(
        lambda _: process.fill_missing(),
        kind="columns",
        streaming=False,
        bad=lambda _: (process.fill_missing(), bad_input("text")(2)),
    ),
    "process.one_hot": Case(
        lambda _: process.one_hot(["color"]),
        kind="columns",
        streaming=False,
        bad=lambda _: (process.one_hot(["color"]), bad_input("matrix")(2)),
    ),
    "process.concat_columns": Case(
        lambda _: reactivex.compose(process.one_hot(["color"]), process.concat_columns()),
        kind="columns",
        streaming=False,
        bad=lambda _: (process.concat_columns(), bad_input("columns")(2)),
    ),
    "process.label_encode": Case(
        lambda _: process.label_encode(),
        streaming=False,
        bad=lambda _: (process.label_encode(["a"]), bad_input("matrix")(2)),
    ),
}
"""Every case, by plugin name (a suffix in parentheses marks a variant)."""

OWN_STAGE = {"process.concat_columns": "process.concat_columns"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the collect plugins read (good and broken)."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("contract")
    np.savez(root / "arrays.npz", x=np.zeros((7, 2), "float32"), y=np.arange(7) % 2)
    for label in ("a", "b"):
        (root / "images" / label).mkdir(parents=True)
        (root / "texts" / label).mkdir(parents=True)
        (root / "bad_texts" / label).mkdir(parents=True)
        for index in range(3):
            (root / "images" / label / f"{index}.png").write_bytes(_png(index))
            (root / "texts" / label / f"{index}.txt").write_text(f"text {label} {index}")
            (root / "bad_texts" / label / f"{index}.txt").write_text("fine")
    (root / "bad_texts" / "b" / "9.txt").write_bytes(b"\xff\xfe")
    (root / "good.csv").write_text("a,b,y\n1,2,x\n3,4,y\n5,6,x\n")
    (root / "texts.csv").write_text("text,label\nhello there,x\nbye now,y\n")
    (root / "bad.csv").write_text("a,b,y\n1,2,x\n3,4\n")
    with tf.io.TFRecordWriter(str(root / "good.tfrecord")) as writer:
        for index in range(5):
            feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[index]))}
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    raw = (root / "good.tfrecord").read_bytes()
    (root / "bad.tfrecord").write_bytes(raw[: len(raw) // 2 + 5])
    return root


@pytest.fixture(autouse=True)
def fresh_run() -> Iterator[None]:
    """Every test in its own run, so fitted state and caches start empty."""
    with running(RunContext("contract", "contract", None, EventBus("contract"))):
        yield


PARAMS = [pytest.param(name, case, id=name) for name, case in CASES.items()]
BAD = [pytest.param(name, case, id=name) for name, case in CASES.items() if case.bad is not None]


def stage_name(name: str) -> str:
    """The registered name of a case (without its variant)."""
    return name.partition("(")[0]


def test_every_plugin_has_a_case() -> None:
    """Every registered built-in collect, access and process plugin is under contract."""
    registered = {
        info.name
        for info in registry.infos()
        if info.kind.value in ("collect", "access", "process")
        and info.factory.__module__.startswith("rxpipe.operators")
    }
    assert registered == {stage_name(n) for n in CASES}


@pytest.mark.parametrize(("name", "case"), PARAMS)
def test_completes_and_keeps_order(name: str, case: Case, files: Path) -> None:
    """The plugin completes; samples keep their order where it promises to."""
    data = source_of(case.kind, case.split)
    out = run(data(6).pipe(case.make(files)))
    assert all(isinstance(b, Batch) for b in out)
    given = [int(i) for b in run(data(6)) for i in b.ids]
    if case.source:
        got = [i for b in out for i in b.ids.tolist()][: len(given)]
        assert got == given, "a source emits its input first, unchanged"
        assert sum(b.size for b in out) > len(given)
        return
    if case.ordered:
        by_split: dict[str, list[int]] = {}
        for batch in out:
            by_split.setdefault(batch.split.value, []).extend(int(i) for i in batch.ids)
        for ids in by_split.values():
            assert ids == sorted(ids), f"{name} reordered samples within a split"


@pytest.mark.parametrize(("name", "case"), PARAMS)
def test_upstream_errors_pass_through_unchanged(name: str, case: Case, files: Path) -> None:
    """An upstream error reaches the subscriber as the very same object."""
    error = RuntimeError(f"upstream failure before {name}")
    data = reactivex.concat(source_of(case.kind, case.split)(3), reactivex.throw(error))
    with pytest.raises(RuntimeError) as info:
        run(data.pipe(case.make(files)))
    assert info.value is error


@pytest.mark.parametrize(("name", "case"), BAD)
def test_own_errors_name_the_stage_and_samples(name: str, case: Case, files: Path) -> None:
    """The plugin's own failure is a StageError with its name and the samples' ids."""
    assert case.bad is not None
    stage, data = case.bad(files)
    with pytest.raises(StageError) as info:
        run(data.pipe(stage))
    assert info.value.stage == stage_name(name)
    assert info.value.sample_ids, f"{name}: the error names no sample"


@pytest.mark.parametrize(("name", "case"), PARAMS)
def test_disposes_its_upstream(name: str, case: Case, files: Path) -> None:
    """Taking one batch disposes the upstream (within 3 s); a streaming plugin reads less."""
    pulls = Pulls()
    data = source_of(case.kind, case.split, pulls)(200)
    [first] = run(data.pipe(case.make(files), ops.take(1)))
    assert isinstance(first, Batch)
    assert wait_for(lambda: pulls.closed, timeout=3.0), "the upstream was not disposed"
    if case.streaming:
        assert pulls.produced < 200


def test_a_batch_stage_emitting_something_else_fails_naming_itself() -> None:
    """A process stage that emits arrays fails as itself, not in the stage after it."""
    arrays = Stage("process.features_only", ops.map(lambda b: b.features), PluginKind.PROCESS)
    data = source_of("matrix")(2)
    with pytest.raises(BatchError) as info:
        run(data.pipe(arrays))
    assert str(info.value).startswith(
        "process.features_only: expected a process plugin to emit Batch items. Received: "
        "array([[ 0., 0., 0., 0.], [ 1., 2., 1., -1.], "
    )
    pipeline = Pipeline(lambda _: data, arrays, access.batch(8), name="wrong_items")
    with pytest.raises(StageError) as failed:
        pipeline.collect()
    assert failed.value.stage == "process.features_only"


def test_a_stage_whose_operator_returns_no_observable_names_itself() -> None:
    """An operator that returns something other than an Observable fails naming the stage."""
    stage: Stage[Batch, Batch] = Stage("process.nothing", lambda source: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(StageError) as info:
        stage(reactivex.empty())
    assert str(info.value) == (
        "stage 'process.nothing' failed: expected its operator to return an Observable. "
        "Received: None (NoneType)"
    )


def _swallows_completion(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    return reactivex.create(
        lambda observer, scheduler=None: source.subscribe(
            observer.on_next, observer.on_error, scheduler=scheduler
        )
    )


def _hides_errors(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    return source.pipe(ops.catch(reactivex.empty()))


def _keeps_reading(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    def subscribe(observer: Any, scheduler: Any = None) -> Any:
        source.subscribe(observer.on_next, observer.on_error, observer.on_completed)
        return reactivex.disposable.Disposable()  # never disposes its upstream

    return reactivex.create(subscribe)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Stage("custom.swallow", _swallows_completion),
            r"^custom\.swallow: expected on_completed within 1\.0 s after its input completed "
            r"\(a stage must call on_completed after its input completes\)\. Received: 3 "
            r"item\(s\) out and no on_completed",
        ),
        (
            lambda: Stage("custom.arrays", ops.map(lambda b: b.features)),
            r"^custom\.arrays: expected Batch items\. Received: array\(\[\[ 0\., 1\.",
        ),
        (
            lambda: Stage("custom.reverse", ops.to_list(), PluginKind.CUSTOM),
            r"^custom\.reverse: expected Batch items\. Received: \[Batch",
        ),
        (
            lambda: Stage("custom.hide", _hides_errors),
            r"^custom\.hide: expected the upstream error passed on unchanged\. Received: "
            r"completion",
        ),
        (
            lambda: Stage("custom.keep_reading", _keeps_reading),
            r"^custom\.keep_reading: expected to read only what its subscriber takes",
        ),
    ],
)
def test_check_contract_names_the_rule_a_plugin_breaks(
    make: Callable[[], Operator], message: str
) -> None:
    """rxpipe.testing.check_contract fails with the stage's name and the broken rule."""
    with pytest.raises(AssertionError, match=message):
        check_contract(make, timeout=1.0)


@attrs.frozen
class _NumpyOnly:
    """A preprocessing step without apply_tf: it trains, but cannot be served."""

    name: str = "half"

    def apply(self, features: Any) -> Any:
        return features * 0.5

    def to_config(self) -> dict[str, Any]:
        return {}


def _records_numpy_only(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    def apply(batch: Batch) -> Batch:
        meta = batch.metadata.with_preprocessor(_NumpyOnly(), batch.metadata.features)  # type: ignore[arg-type]
        return batch.evolve(features=batch.features * 0.5, metadata=meta)

    return source.pipe(ops.map(apply))


def test_a_step_serving_cannot_repeat_fails_when_recorded() -> None:
    """A recorded step without apply_tf fails at the first batch it records (export would
    fail after training): the contract check, like a run, stops there."""
    with pytest.raises(ConfigError) as info:
        check_contract(lambda: Stage("process.half", _records_numpy_only, PluginKind.PROCESS))
    assert str(info.value) == (
        "expected a preprocessing step with a name, apply, apply_tf and to_config "
        "(deploy.export builds apply_tf into the serving signature). Received: _NumpyOnly, "
        "without apply_tf"
    )


def test_check_contract_passes_well_behaved_plugins() -> None:
    """A map, a fitted processor and a parallel map pass the public contract check."""
    check_contract(lambda: process.normalize(scale=0.5))
    check_contract(lambda: process.standardize(), streaming=False)
    check_contract(lambda: map_batches("custom.same", lambda b: b, workers=2))
