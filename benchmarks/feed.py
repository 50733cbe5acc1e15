"""Does rxpipe feed TensorFlow as fast as data already in memory?

One process, one model: the Keras CNN of issue 4 (28×28×1 → conv 16 → max-pool → dense 64 →
dense 10, batch 128, Adam) on random data, trained with rxpipe's compiled train step fed
three ways:

(a) ``tf.data.Dataset.from_tensor_slices(...).batch(128).prefetch(AUTOTUNE)`` (data already
    normalised, no shuffle);
(b) the compute-only bound: one batch, already a tensor, repeated for the same number of steps;
(c) an rxpipe pipeline: numpy source → access.shuffle → access.batch(128) →
    process.normalize → train.fit (uint8 in, normalised on the fly).

Then (d): (c) with an extra process stage doing about one train step's worth of GIL-releasing
numpy work per batch, run by ``rxpipe.flow.parallel_map`` with 2 worker threads.

Every variant runs a warm-up epoch (tracing) that is not measured. Goals: (c)/(b) ≥ 0.97,
(c)/(a) ≥ 1.0, (d)/(b) ≥ 0.90. Also reports the share of step time the trainer waited.

Each round runs every variant once and each ratio is taken within its round (the machine is
shared and drifts); the median round is reported, with every round's ratio.

Usage: python benchmarks/feed.py [--quick] [--json] [--rounds N]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def build_model(_: Any = None) -> Any:
    """The benchmark CNN."""
    import keras

    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def fresh_steps(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> Any:
    """A new model and rxpipe's compiled steps for it (same code path as train.fit)."""
    import keras

    from rxpipe.testing import make_metadata
    from rxpipe.training.steps import compile_steps, make_optimizer

    keras.utils.set_random_seed(0)
    model = build_model()
    optimizer = make_optimizer("adam", 1e-3, None)
    optimizer.build(model.trainable_variables)
    return compile_steps(model, optimizer, make_metadata(x, y), x, y, None, ("accuracy",))


def timed_epochs(run_epoch: Any, epochs: int) -> float:
    """Seconds per measured epoch (after one warm-up epoch)."""
    run_epoch()
    start = time.perf_counter()
    for _ in range(epochs):
        run_epoch()
    return (time.perf_counter() - start) / epochs


def tf_data_rate(x: Any, y: Any, epochs: int) -> float:
    import tensorflow as tf

    steps = fresh_steps(x[:128], y[:128])
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(128).prefetch(tf.data.AUTOTUNE)

    def epoch() -> None:
        loss = None
        for xb, yb in data:
            loss = steps.train_step(xb, yb)
        float(loss)

    return len(x) / timed_epochs(epoch, epochs)


def compute_bound_rate(x: Any, y: Any, epochs: int) -> float:
    import tensorflow as tf

    steps = fresh_steps(x[:128], y[:128])
    xb, yb = tf.constant(x[:128]), tf.constant(y[:128])
    count = -(-len(x) // 128)

    def epoch() -> None:
        loss = None
        for _ in range(count):
            loss = steps.train_step(xb, yb)
        float(loss)

    return count * 128 / timed_epochs(epoch, epochs)


def rxpipe_rate(raw: Any, y: Any, epochs: int, extra: list[Any]) -> tuple[float, float]:
    import tempfile

    import reactivex

    import rxpipe
    from rxpipe.operators import access, process, train
    from rxpipe.testing import from_arrays

    source = from_arrays(raw, y, batch_size=1024, split="train")
    plan = lambda data: reactivex.just(rxpipe.ModelPlan("cnn", data, build_model))  # noqa: E731
    pipeline = rxpipe.Pipeline(
        access.shuffle(buffer_size=10_000, seed=0),
        access.batch(128),
        process.normalize(scale=1 / 255),
        *extra,
        plan,
        train.fit(epochs=epochs + 1, validate=False, checkpoint=False),
        source=source,
        name="feed-bench",
        runs_dir=tempfile.mkdtemp(),
    )
    recorder: list[Any] = []
    pipeline.events.subscribe(recorder.append)
    pipeline.run(progress=False)
    measured = [e for e in recorder if isinstance(e, rxpipe.EpochEnded)][1:]
    return (
        float(np.mean([e.samples_per_s for e in measured])),
        float(np.mean([e.data_wait_share for e in measured])),
    )


def costly_stage(seconds: float) -> Any:
    """A process stage doing ~``seconds`` of GIL-releasing numpy work per batch."""
    size = 1
    matrix = np.random.default_rng(0).random((256, 256))
    start = time.perf_counter()
    for _ in range(20):
        matrix @ matrix
    per_product = (time.perf_counter() - start) / 20
    size = max(1, round(seconds / per_product))

    def work(batch: Any) -> Any:
        for _ in range(size):
            matrix @ matrix
        return batch

    return work


def main() -> int:
    from _common import Report, at_least, machine, make_parser

    parser = make_parser(__doc__)
    parser.add_argument("--rounds", type=int, help="rounds of all variants (default 3, quick 2)")
    args = parser.parse_args()
    n, epochs = (20_000, 1) if args.quick else (60_000, 2)
    rounds = args.rounds or (2 if args.quick else 3)
    report = Report(json_lines=args.json)
    report.note(f"machine: {machine()}; {n} samples, {epochs} measured epoch(s), {rounds} rounds")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    x = raw.astype(np.float32) / 255
    from rxpipe.flow import parallel_map

    # The variants run interleaved, round after round, and each ratio is taken within a
    # round: the machine is shared, and its speed drifts between minutes.
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for _ in range(rounds):
        bound = compute_bound_rate(x, y, epochs)
        tf_data = tf_data_rate(x, y, epochs)
        fed, wait = rxpipe_rate(raw, y, epochs, [])
        stage = parallel_map("process.costly", costly_stage(128 / bound), workers=2)
        slow, slow_wait = rxpipe_rate(raw, y, epochs, [stage])
        for name, value, base, waited in (
            ("feed.tf_data_vs_compute_bound", tf_data, bound, 0.0),
            ("feed.rxpipe_vs_compute_bound", fed, bound, wait),
            ("feed.rxpipe_vs_tf_data", fed, tf_data, wait),
            ("feed.rxpipe_costly_stage_2_workers_vs_compute_bound", slow, bound, slow_wait),
        ):
            rows.setdefault(name, []).append((value, base, waited))
    goals = {
        "feed.rxpipe_vs_compute_bound": at_least(0.97, "ratio"),
        "feed.rxpipe_vs_tf_data": at_least(1.0, "ratio"),
        "feed.rxpipe_costly_stage_2_workers_vs_compute_bound": at_least(0.90, "ratio"),
    }
    for name, measured in rows.items():
        ratios = sorted(v / b for v, b, _ in measured)
        # the lower median: with an even number of rounds, the less flattering middle one
        value, base, waited = sorted(measured, key=lambda m: m[0] / m[1])[(len(measured) - 1) // 2]
        report.result(
            name,
            value,
            "samples/s",
            baseline=base,
            goal=goals.get(name),
            data_wait_share=round(waited, 3),
            ratios=[round(r, 3) for r in ratios],
        )
    return report.summary()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
