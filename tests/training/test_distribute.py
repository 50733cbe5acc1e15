"""tf.distribute: MirroredStrategy on 2 logical CPUs, and 2 real worker processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

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
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    workers = []
    for index in range(2):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    str(tmp_path / f"runs{index}"),
                    "multi_worker",
                    str(tmp_path / f"w{index}.npz"),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
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
