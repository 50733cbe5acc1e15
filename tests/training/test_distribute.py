"""tf.distribute: MirroredStrategy on 2 logical CPUs, and 2 real worker processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

PIPELINE = """
import json, sys
import numpy as np
import rxpipe
from rxpipe.operators import access, collect, models, process, train

pipeline = rxpipe.Pipeline(
    collect.digits(limit=600), access.split(0.8, 0.2, 0.0), access.batch(32), process.normalize(),
    models.cnn(filters=(8,), dense=16, dropout=0.0),
    train.fit(epochs=3, learning_rate=0.01, strategy=sys.argv[2]),
    name="dist", runs_dir=sys.argv[1],
)
result = pipeline.run(progress=False)
np.savez(sys.argv[3], *result.model.get_weights())
print(json.dumps({"history": result.history, "stats": result.trained.stats}))
"""

LOGICAL_CPUS = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
assert len(tf.config.list_logical_devices("CPU")) == 2
"""


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "train_script.py"
    path.write_text(textwrap.dedent(body))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_mirrored_strategy_over_two_logical_cpus(tmp_path: Path) -> None:
    """Training under MirroredStrategy with 2 replicas learns."""
    script = _script(tmp_path, LOGICAL_CPUS + PIPELINE)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs"), "mirrored", str(tmp_path / "w.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    history = json.loads(out.stdout.strip().splitlines()[-1])["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["val_accuracy"] > 0.3  # chance is 0.1


def test_two_worker_processes_end_with_identical_weights(tmp_path: Path) -> None:
    """Two MultiWorkerMirroredStrategy processes on 127.0.0.1 train one model together."""
    script = _script(tmp_path, PIPELINE)
    args = [
        [str(tmp_path / f"runs{i}"), "multi_worker", str(tmp_path / f"w{i}.npz")] for i in (0, 1)
    ]
    results = _run_workers(script, args)
    first, second = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    history = results[0]["history"]
    assert history == results[1]["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["val_accuracy"] > 0.3  # chance is 0.1


DEVICE_FEED = """
import numpy as np
import tensorflow as tf
from rxpipe.batch import Split
from rxpipe.testing import from_arrays
from rxpipe.training.trainer import device_feed

data = from_arrays(np.ones((6, 3), "float32"), np.arange(6) % 2, batch_size=4, split="train")
for device, expected in (("/CPU:1", "CPU:1"), ("/CPU:0", "CPU:0"), (None, "CPU:0")):
    tensors = [x for x, _, _ in device_feed(data, 2, device, "feed")]
    assert [t.shape[0] for t in tensors] == [4, 2]
    assert all(t.device.endswith(expected) for t in tensors), (device, [t.device for t in tensors])
print("ok")
"""


def test_feed_copies_batches_to_a_device_other_than_the_host_cpu(tmp_path: Path) -> None:
    """Batches are placed on the training device (here a second logical CPU standing in
    for a GPU) on the producer thread; on the host CPU they stay where they are."""
    script = _script(tmp_path, LOGICAL_CPUS + DEVICE_FEED)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


BN_PARTIAL_BATCH = """
import json, sys
import keras
import numpy as np
import rxpipe
from rxpipe.operators import models, train
from rxpipe.testing import from_arrays, make_metadata

x = np.random.default_rng(0).random((9, 4)).astype("float32")
y = (np.arange(9) % 3).astype("int64")

def bn_model(meta):
    return keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(5), keras.layers.BatchNormalization(),
        keras.layers.Dense(3, activation="softmax"),
    ])

source = from_arrays(x, y, batch_size=4, split="train", metadata=make_metadata(x, y))
pipeline = rxpipe.Pipeline(
    models.keras(bn_model),
    train.fit(epochs=2, optimizer="sgd", learning_rate=0.1, validate=False, strategy="mirrored"),
    source=source, name="bn", runs_dir=sys.argv[1],
)
result = pipeline.run(progress=False)
stats = [v for v in result.model.non_trainable_variables]
replicas = [[np.asarray(r).tolist() for r in v.value.values] for v in stats]
print(json.dumps({
    "history": result.history,
    "finite": bool(all(np.isfinite(w).all() for w in result.model.get_weights())),
    "replicas_agree": all(r == v[0] for v in replicas for r in v),
    "replicas": len(replicas[0]),
}))
"""


def test_a_replica_without_rows_adds_nothing_even_with_batch_normalization(
    tmp_path: Path,
) -> None:
    """9 samples in batches of 4 over 2 replicas: the last batch leaves one replica empty.
    Its NaN batch statistics stay out of the weights; the moving statistics agree."""
    script = _script(tmp_path, LOGICAL_CPUS + BN_PARTIAL_BATCH)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["finite"]
    assert all(np.isfinite(list(h.values())).all() for h in result["history"])
    assert result["replicas_agree"]


TINY_BATCHES = """
import json, sys
import keras
import numpy as np
import rxpipe
from rxpipe.operators import deploy, models, train
from rxpipe.testing import from_arrays, make_metadata

runs_dir, strategy, weights, export = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
x = np.random.default_rng(0).random((12, 4)).astype("float32")
y = (np.arange(12) % 3).astype("int64")

def small(meta):
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])

source = from_arrays(x, y, batch_size=12, split="train", metadata=make_metadata(x, y))
pipeline = rxpipe.Pipeline(
    models.keras(small),
    train.fit(
        epochs=2, batch_size=3, optimizer="sgd", learning_rate=0.5, validate=False,
        strategy=None if strategy == "none" else strategy,
    ),
    deploy.export(path=export),
    source=source, name="tiny", seed=int(sys.argv[5]), runs_dir=runs_dir,
)
resume = sys.argv[6] if len(sys.argv) > 6 else None
try:
    result = pipeline.run(progress=False, resume_from=resume)
except rxpipe.RxpipeError as error:
    print(json.dumps({"error": str(error)}))
    sys.exit(3)
np.savez(weights, *result.model.get_weights())
print(json.dumps({
    "history": result.history, "exported": "model" in result.artifacts,
    "run_dir": str(result.run_dir),
}))
"""


def _run_workers(script: Path, args: list[list[str]]) -> list[Any]:
    """Run one process per argument list as the workers of one cluster; their outputs."""
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in args]}
    workers = []
    for index, argv in enumerate(args):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        workers.append(
            subprocess.Popen(
                [sys.executable, str(script), *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=300)
            assert worker.returncode in (0, 3), err[-3000:]
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    return outputs


def _seed_with_an_empty_share() -> int:
    """The first seed whose shards of 12 ids in batches of 3 leave a worker a batch empty."""
    from rxpipe.sharding import shard_mask

    batches = [np.arange(start, start + 3) for start in range(0, 12, 3)]
    return next(
        seed
        for seed in range(100)
        if any(not shard_mask(ids, 0, 2, seed).any() for ids in batches)
        or any(shard_mask(ids, 0, 2, seed).all() for ids in batches)
    )


def test_tiny_batches_over_two_workers_train_as_one_device(tmp_path: Path) -> None:
    """Global batches of 3 over 2 workers (some worker's share of a batch empty) give the
    weights one device gives; only worker 0 writes the shared bundle; a resume whose
    workers stand at different epochs is refused on both."""
    seed = str(_seed_with_an_empty_share())
    script = _script(tmp_path, TINY_BATCHES)
    shared = str(tmp_path / "bundle")
    alone = subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "one"),
            "none",
            str(tmp_path / "one.npz"),
            str(tmp_path / "one-bundle"),
            seed,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    args = [
        [str(tmp_path / f"runs{i}"), "multi_worker", str(tmp_path / f"w{i}.npz"), shared, seed]
        for i in range(2)
    ]
    outputs = _run_workers(script, args)
    expected = np.load(tmp_path / "one.npz")
    for i in range(2):
        weights = np.load(tmp_path / f"w{i}.npz")
        for key in expected:
            np.testing.assert_allclose(weights[key], expected[key], atol=1e-6)
    assert [o["exported"] for o in outputs] == [True, False]
    assert (tmp_path / "bundle" / "model_card.json").is_file()

    # worker 1 as if killed before its epoch-2 checkpoint: its state.json says epoch 1
    state_file = Path(outputs[1]["run_dir"]) / "checkpoints-worker1" / "state.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "epoch": 1}))
    resumed = _run_workers(
        script, [[*argv, out["run_dir"]] for argv, out in zip(args, outputs, strict=True)]
    )
    for out in resumed:
        assert (
            "resume_from: expected every worker to resume from the same checkpointed "
            in (out["error"])
        )
