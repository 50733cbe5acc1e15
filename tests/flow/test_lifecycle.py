"""Lifecycle: disposal, errors and Ctrl-C stop every thread and process within 2 seconds."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import flow_workers
import pytest
import reactivex

from rxpipe import Pipeline, Stage, StageError
from rxpipe.flow import bounded_buffer, generate, map_batches, parallel_map, prefetch
from rxpipe.testing import collect, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")

STOP_S = 2.0
"""The promise: everything stops within this long."""


def endless(closed: threading.Event) -> reactivex.Observable[int]:
    """An endless cold source that sets ``closed`` when its generator is closed."""

    def numbers() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    return generate(numbers)


def engine_threads() -> list[threading.Thread]:
    """The flow engine's threads alive now."""
    return [t for t in threading.enumerate() if t.name.startswith("rxpipe-")]


def test_disposing_a_chain_stops_every_thread() -> None:
    """Disposing the subscription of buffer → parallel map → prefetch stops all their threads."""
    closed = threading.Event()
    got: list[int] = []
    chain = endless(closed).pipe(
        bounded_buffer(3), parallel_map("work", lambda x: x, 3), prefetch(2)
    )
    subscription = chain.subscribe(got.append)
    assert wait_for(lambda: len(got) > 100)
    assert len(engine_threads()) >= 6  # 2 for the buffer, 3 workers, 1 drain for prefetch
    subscription.dispose()
    assert closed.wait(STOP_S)
    assert wait_for(lambda: not engine_threads(), timeout=STOP_S)


def test_an_error_downstream_stops_the_producers_and_workers() -> None:
    """A failure after the parallel stage disposes everything before it."""
    closed = threading.Event()

    def fail_at_50(x: int) -> int:
        if x == 50:
            raise RuntimeError("downstream broke")
        return x

    chain = endless(closed).pipe(
        bounded_buffer(2), parallel_map("work", lambda x: x, 2), map_batches("check", fail_at_50)
    )
    with pytest.raises(StageError, match="downstream broke"):
        collect(chain)
    assert closed.wait(STOP_S)
    assert wait_for(lambda: not engine_threads(), timeout=STOP_S)


def test_an_error_upstream_stops_the_threads_after_it() -> None:
    """A source error passes through every boundary and leaves no thread behind."""

    def broken() -> Iterator[int]:
        yield from range(20)
        raise OSError("disk gone")

    chain = generate(broken).pipe(prefetch(2), parallel_map("work", lambda x: x, 2), prefetch(2))
    with pytest.raises(OSError, match="disk gone"):
        collect(chain)
    assert wait_for(lambda: not engine_threads(), timeout=STOP_S)


@pytest.mark.slow
def test_disposing_stops_worker_processes_in_the_middle_of_an_item() -> None:
    """Child processes busy with a 30 s item are terminated within 2 s of disposal."""
    stage = parallel_map("sleepy", flow_workers.sleep_long, 2, executor="process")
    subscription = reactivex.from_iterable(range(10)).pipe(stage).subscribe(lambda _: None)
    assert wait_for(lambda: len(multiprocessing.active_children()) == 2, timeout=10.0)
    subscription.dispose()
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_a_finished_run_leaves_no_process_behind(runs_dir: Path) -> None:
    """When run() returns, the worker processes of its stages are gone."""
    pipeline = Pipeline(
        Stage(
            "custom.square", parallel_map("custom.square", flow_workers.square, executor="process")
        ),
        source=reactivex.from_iterable(range(50)),
        name="procs",
        runs_dir=runs_dir,
    )
    result = pipeline.run(progress=False)
    assert result.outputs == [x * x for x in range(50)]
    assert multiprocessing.active_children() == []


CTRL_C_SCRIPT = """
import faulthandler, signal, sys
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for stacks on a hang
# Ctrl-C as in a terminal, even if the tests run as a background job (which starts
# every child with SIGINT ignored, and Python then installs no KeyboardInterrupt handler)
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests!r})
import flow_workers
import rxpipe
from rxpipe.flow import generate, parallel_map

if __name__ == "__main__":
    work = parallel_map("custom.work", flow_workers.record_pid_and_sleep, 2, executor="process")
    pipeline = rxpipe.Pipeline(
        rxpipe.Stage("custom.work", work),
        source=generate(lambda: iter(range(10**6))),
        name="ctrl-c",
        runs_dir=sys.argv[1],
    )
    try:
        pipeline.run(progress=False)
    except rxpipe.PipelineCancelled:
        print("cancelled", flush=True)
        sys.exit(3)
"""


@pytest.mark.slow
def test_ctrl_c_stops_the_run_and_its_worker_processes(tmp_path: Path) -> None:
    """SIGINT to a running pipeline cancels it, and its worker processes are gone."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(CTRL_C_SCRIPT.format(tests=str(Path(__file__).parent))))
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "RXPIPE_TEST_PID_DIR": str(pids)}
    with subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "runs")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert wait_for(lambda: len(list(pids.iterdir())) >= 2, timeout=30.0)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=10.0)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)  # every thread's stack, to stderr
            time.sleep(1.0)
            process.kill()
            pytest.fail(f"no exit 10 s after SIGINT; stacks:\n{process.communicate()[1][-8000:]}")
        finally:
            process.kill()
    assert process.returncode == 3, err
    assert out.strip() == "cancelled"
    workers = [int(p.name) for p in pids.iterdir()]
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
