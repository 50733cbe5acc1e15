"""Does rxpipe feed TensorFlow as fast as data already in memory?

One process, one model: the Keras CNN of issue 4 (28×28×1 → conv 16 → max-pool → dense 64 →
dense 10, batch 128, Adam) on random data, trained with rxpipe's compiled train step fed
three ways:

(a) ``tf.data.Dataset.from_tensor_slices(...).batch(128).prefetch(AUTOTUNE)`` (data already
    normalised, no shuffle);
(b) the compute-only bound: one batch, already a tensor, repeated for the same number of steps;
(c) an rxpipe pipeline: numpy source → access.shuffle → access.batch(128) →
    process.normalize → train.fit (uint8 in, normalised on the fly).

Then (d): (c) with an extra process stage costing about one train step per batch, run by
``rxpipe.flow.parallel_map`` with 2 worker threads, in two kinds:

(d-cpu) one train step's worth of single-threaded, GIL-releasing numpy work (CPU-bound: on
        a machine whose cores the step already fills, it competes with the step);
(d-io)  one train step's worth of waiting (``time.sleep``, standing in for reading remote
        storage or a slow decoder service: latency, not CPU).

(d-cpu) also runs in tf.data, as ``.map(tf.numpy_function(work), num_parallel_calls=2)``
between (a)'s batch and prefetch, so its ratio can be read against what tf.data makes of the
same work on the same cores.

And (e), no goal: the preparation of (c) written by hand without rxpipe, to tell the cost of
the work from the cost of the framework. One thread shuffles the uint8 samples through a
buffer of 10,000 (each arriving chunk of 1,024 swapped for 1,024 held samples drawn without
replacement), slices batches of 128, normalises them and makes tensors (with rxpipe's
zero-copy ``to_tensor``), into a ``queue.Queue(4)`` the same compiled train step reads from.
(c)/(e) near 1 means rxpipe's operators, events and accounting cost nothing measurable.

Every variant runs a warm-up epoch (tracing) that is not measured. Goals: (c)/(b) ≥ 0.97,
(c)/(a) ≥ 1.0, (d)/(b) ≥ 0.90. Also reports the share of step time the trainer waited.

The machine is shared and its speed drifts by ±10% from one few-second stretch to the next,
so every measured epoch of a variant is paired with epochs of the compute bound run right
before and right after it (for rxpipe, by a Keras callback between epochs, outside the
measured time) and its ratio is taken against their mean. Each result is the median of its
per-epoch ratios; (c)/(a) divides the two medians. ``samples/s`` are medians too.

Usage: python benchmarks/feed.py [--quick] [--json] [--epochs N]
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from _common import Report, alternated, at_least, machine, make_parser, paired, quartiles


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


class ComputeBound:
    """(b): one batch, already a tensor, trained on again and again (compiled once)."""

    def __init__(self, x: Any, y: Any) -> None:
        import tensorflow as tf

        self.steps = fresh_steps(x[:128], y[:128])
        self.x, self.y = tf.constant(x[:128]), tf.constant(y[:128])
        self.count = -(-len(x) // 128)
        self.rate()  # trace

    def rate(self) -> float:
        """Samples/s over one epoch's worth of steps."""
        start = time.perf_counter()
        loss = None
        for _ in range(self.count):
            loss = self.steps.train_step(self.x, self.y)
        float(loss)
        return self.count * 128 / (time.perf_counter() - start)


def tf_data_ratios(
    x: Any, y: Any, bound: ComputeBound, epochs: int, work: Any = None
) -> tuple[list[float], list[float]]:
    """(a), or (d-cpu) in tf.data with ``work``: per-epoch samples/s and ratios to the bound."""
    import tensorflow as tf

    steps = fresh_steps(x[:128], y[:128])
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(128)
    if work is not None:

        def costly(xb: Any, yb: Any) -> Any:
            out = tf.numpy_function(work, [xb], tf.float32, stateful=False)
            out.set_shape(xb.shape)
            return out, yb

        data = data.map(costly, num_parallel_calls=2)
    data = data.prefetch(tf.data.AUTOTUNE)

    def epoch() -> float:
        start = time.perf_counter()
        loss = None
        for xb, yb in data:
            loss = steps.train_step(xb, yb)
        float(loss)
        return len(x) / (time.perf_counter() - start)

    epoch()  # warm-up
    return alternated(epochs, epoch, bound.rate)


def handwritten_ratios(
    raw: Any, y: Any, bound: ComputeBound, epochs: int
) -> tuple[list[float], list[float]]:
    """(e): per-epoch samples/s and ratios to the bound around each epoch."""
    import queue
    import threading

    from rxpipe.preprocessing import Rescale
    from rxpipe.training.tensors import to_tensor

    steps = fresh_steps(raw[:128].astype(np.float32), y[:128])
    rescale = Rescale(scale=1 / 255)
    held = 10_000

    def batches(rng: np.random.Generator) -> Any:
        """The shuffled batches of one epoch, as (uint8 features, labels)."""
        pool_x, pool_y = raw[:held].copy(), y[:held].copy()
        for start in range(held, len(raw), 1024):
            count = min(1024, len(raw) - start)
            chosen = rng.choice(held, count, replace=False)
            out_x, out_y = pool_x[chosen], pool_y[chosen]
            pool_x[chosen], pool_y[chosen] = raw[start : start + count], y[start : start + count]
            for i in range(0, count, 128):
                yield out_x[i : i + 128], out_y[i : i + 128]
        order = rng.permutation(held)
        for i in range(0, held, 128):
            yield pool_x[order[i : i + 128]], pool_y[order[i : i + 128]]

    def epoch(seed: int) -> float:
        ready: queue.Queue[Any] = queue.Queue(4)

        def produce() -> None:
            for xb, yb in batches(np.random.default_rng(seed)):
                ready.put((to_tensor(rescale.apply(xb)), to_tensor(yb)))
            ready.put(None)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        first = ready.get()  # the buffer's first fill is start-up, as for rxpipe
        start = time.perf_counter()
        loss = steps.train_step(*first)
        samples = len(first[1])
        while (item := ready.get()) is not None:
            loss = steps.train_step(*item)
            samples += len(item[1])
        float(loss)
        thread.join()
        return samples / (time.perf_counter() - start)

    epoch(0)  # warm-up
    seeds = itertools.count(1)
    return alternated(epochs, lambda: epoch(next(seeds)), bound.rate)


def rxpipe_ratios(
    raw: Any, y: Any, bound: ComputeBound, epochs: int, extra: list[Any]
) -> tuple[list[float], list[float], list[float], dict[str, int]]:
    """(c) or (d): per-epoch samples/s, ratios to the bound around each epoch, wait shares,
    and the run's step traces (the last partial batch of each epoch must not add any)."""
    import tempfile

    import keras
    import reactivex

    import rxpipe
    from rxpipe.operators import access, process, train
    from rxpipe.testing import from_arrays

    bounds: list[float] = []

    class MeasureBound(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            bounds.append(bound.rate())  # between epochs: not in the measured time

    source = from_arrays(raw, y, batch_size=1024, split="train")
    plan = lambda data: reactivex.just(rxpipe.ModelPlan("cnn", data, build_model))  # noqa: E731
    pipeline = rxpipe.Pipeline(
        access.shuffle(buffer_size=10_000, seed=0),
        access.batch(128),
        process.normalize(scale=1 / 255),
        *extra,
        plan,
        train.fit(epochs=epochs + 1, validate=False, checkpoint=False, callbacks=[MeasureBound()]),
        source=source,
        name="feed-bench",
        runs_dir=tempfile.mkdtemp(),
    )
    recorder: list[Any] = []
    pipeline.events.subscribe(recorder.append)
    pipeline.run(progress=False)
    measured = [e for e in recorder if isinstance(e, rxpipe.EpochEnded)][1:]  # after warm-up
    rates = [e.samples_per_s for e in measured]
    waits = [e.data_wait_share for e in measured]
    return rates, paired(rates, bounds), waits, dict(measured[-1].traces)


def costly_stage(seconds: float, kind: str) -> Any:
    """A process stage costing ~``seconds`` per batch: numpy work (``cpu``) or waiting (``io``).

    Both release the GIL, as real decoding and reading do.
    """
    if kind == "io":

        def wait(batch: Any) -> Any:
            time.sleep(seconds)
            return batch

        return wait
    values = np.random.default_rng(0).random(16_384)
    start = time.perf_counter()
    for _ in range(50):
        np.sin(values)
    per_call = (time.perf_counter() - start) / 50
    calls = max(1, round(seconds / per_call))

    def work(batch: Any) -> Any:
        for _ in range(calls):
            np.sin(values)  # single-threaded, like decoding one image (BLAS would use every core)
        return batch

    return work


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--epochs", type=int, help="measured epochs per variant (default 10, quick 3)"
    )
    args = parser.parse_args()
    n = 20_000 if args.quick else 60_000
    epochs = args.epochs or (3 if args.quick else 10)
    report = Report(json_lines=args.json)
    report.note(f"machine: {machine()}; {n} samples, {epochs} measured epochs per variant")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    x = raw.astype(np.float32) / 255
    from rxpipe.flow import parallel_map

    bound = ComputeBound(x, y)
    step_s = 128 / bound.rate()  # what the costly stages cost per batch

    work = {kind: costly_stage(step_s, kind) for kind in ("io", "cpu")}

    def stage(kind: str) -> list[Any]:
        return [parallel_map(f"process.{kind}", work[kind], workers=2)]

    tf_rates, tf_ratios = tf_data_ratios(x, y, bound, epochs)
    tf_cpu_rates, tf_cpu_ratios = tf_data_ratios(x, y, bound, epochs, work["cpu"])
    hand_rates, hand_ratios = handwritten_ratios(raw, y, bound, epochs)
    results = {
        "feed.rxpipe_vs_compute_bound": rxpipe_ratios(raw, y, bound, epochs, []),
        "feed.rxpipe_costly_io_stage_2_workers_vs_compute_bound": rxpipe_ratios(
            raw, y, bound, epochs, stage("io")
        ),
        "feed.rxpipe_costly_cpu_stage_2_workers_vs_compute_bound": rxpipe_ratios(
            raw, y, bound, epochs, stage("cpu")
        ),
    }
    goal = at_least(0.90, "ratio")
    goals = {"feed.rxpipe_vs_compute_bound": at_least(0.97, "ratio")}

    def median(values: list[float]) -> float:
        return float(np.median(values))

    def vs_bound(name: str, rates: list[float], ratios: list[float], **extra: Any) -> None:
        """One variant against the compute bound, with the quartiles of its ratios."""
        baseline = median(rates) / median(ratios)
        quarters = quartiles(ratios)
        report.result(
            name, median(rates), "samples/s", baseline=baseline, ratio_quartiles=quarters, **extra
        )

    def vs_other(
        name: str, rates: list[float], ratios: list[float], other: list[float], **extra: Any
    ) -> None:
        """The ratio of two variants' medians of ratios to the bound."""
        baseline = median(rates) * median(other) / median(ratios)
        report.result(name, median(rates), "samples/s", baseline=baseline, **extra)

    vs_bound("feed.tf_data_vs_compute_bound", tf_rates, tf_ratios)
    for name, (rates, ratios, waits, traces) in results.items():
        vs_bound(
            name,
            rates,
            ratios,
            goal=goals.get(name, goal),
            data_wait_share=round(median(waits), 3),
            traces=traces,
        )
    vs_bound("feed.tf_data_costly_cpu_stage_2_calls_vs_compute_bound", tf_cpu_rates, tf_cpu_ratios)
    cpu_rates, cpu_ratios, *_ = results["feed.rxpipe_costly_cpu_stage_2_workers_vs_compute_bound"]
    vs_other(
        "feed.rxpipe_costly_cpu_stage_vs_tf_data",
        cpu_rates,
        cpu_ratios,
        tf_cpu_ratios,
        note="ratio = median (d-cpu)/(b) over the same stage in tf.data (map, 2 parallel calls)",
    )
    vs_bound("feed.handwritten_thread_vs_compute_bound", hand_rates, hand_ratios)
    fed_rates, fed_ratios, *_ = results["feed.rxpipe_vs_compute_bound"]
    vs_other(
        "feed.rxpipe_vs_handwritten_thread",
        fed_rates,
        fed_ratios,
        hand_ratios,
        note="ratio = median (c)/(b) over median (e)/(b)",
    )
    vs_other(
        "feed.rxpipe_vs_tf_data",
        fed_rates,
        fed_ratios,
        tf_ratios,
        goal=at_least(1.0, "ratio"),
        note="ratio = median (c)/(b) over median (a)/(b)",
    )
    return report.summary()


if __name__ == "__main__":
    raise SystemExit(main())
