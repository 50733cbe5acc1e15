"""Tests for rxpipe.interrupts: Ctrl-C and SIGTERM stop a run, never inside Keras code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from rxpipe.interrupts import stopping_on_signals

pytestmark = pytest.mark.usefixtures("default_signal_handlers")


def test_sigint_raises_keyboard_interrupt_naming_ctrl_c() -> None:
    """Outside training the interrupt is raised at once; the handler is restored after."""
    with pytest.raises(KeyboardInterrupt, match="Ctrl-C"), stopping_on_signals() as received:
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        os.kill(os.getpid(), signal.SIGINT)
        signal.sigtimedwait([], 0)  # let the handler run
    assert received == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_raises_once_then_ends_the_process_on_the_second() -> None:
    """SIGTERM is an interrupt naming it; a second one meets the default (ending the process)."""
    with (
        pytest.raises(KeyboardInterrupt, match="SIGTERM"),
        stopping_on_signals(signal.SIGINT, signal.SIGTERM) as received,
    ):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)
    assert received == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_handler_of_the_programs_own_is_left_alone() -> None:
    """Nested blocks, or a program with its own handler: only the outer one handles it."""

    def own(signum: int, frame: object) -> None:
        raise RuntimeError("own handler")

    signal.signal(signal.SIGINT, own)
    with stopping_on_signals() as received:
        assert signal.getsignal(signal.SIGINT) is own
    assert received == []
    with stopping_on_signals():
        outer = signal.getsignal(signal.SIGINT)
        with stopping_on_signals():
            assert signal.getsignal(signal.SIGINT) is outer
        assert signal.getsignal(signal.SIGINT) is outer


def test_off_the_main_thread_nothing_changes() -> None:
    """Signals reach only the main thread: a block on another thread installs nothing."""
    seen: list[object] = []

    def work() -> None:
        with stopping_on_signals():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]


def test_only_sigint_and_sigterm() -> None:
    """Another signal is a usage error naming what is accepted."""
    with (
        pytest.raises(ValueError, match="expected SIGINT or SIGTERM"),
        stopping_on_signals(signal.SIGUSR1),
    ):
        pass


CTRL_C_IN_TRAINING = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
import keras
import rxpipe
from rxpipe.operators import access, collect, models, process, train


class Slow(keras.callbacks.Callback):
    # Keras code on the stack most of the time: where a raw KeyboardInterrupt is unsafe.
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.01)


def started(event):
    if isinstance(event, rxpipe.EpochEnded):
        print("epoch", flush=True)


pipeline = rxpipe.Pipeline(
    collect.digits(limit=300),
    access.split(train=0.8, validation=0.2, test=0.0),
    access.batch(16),
    process.normalize(),
    models.cnn(filters=(4,), dense=8),
    train.fit(epochs=100000, callbacks=[Slow()]),
    name="ctrl-c",
    runs_dir=sys.argv[1],
)
pipeline.events.subscribe(started)
try:
    pipeline.run(progress=False)
except rxpipe.PipelineCancelled as error:
    print(f"cancelled: {error}", flush=True)
    sys.exit(3)
"""


@pytest.mark.slow
def test_ctrl_c_during_training_from_python_cancels_the_run(tmp_path: Path) -> None:
    """Pipeline.run from a script: Ctrl-C mid-training ends it as cancelled, run.json failed."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(CTRL_C_IN_TRAINING))
    runs = tmp_path / "runs"
    with subprocess.Popen(
        [sys.executable, str(script), str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:  # wait until training is under way
                if line.startswith("epoch"):
                    break
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
        finally:
            process.kill()  # still running means the test failed: leave nothing behind
    assert process.returncode == 3, err[-3000:]
    expected = "the run was interrupted (Ctrl-C); every stage was stopped"
    assert out.splitlines()[-1] == f"cancelled: {expected}"
    [run_dir] = (runs / "ctrl-c").iterdir()
    state = json.loads((run_dir / "run.json").read_text())
    assert (state["status"], state["error"]) == ("failed", expected)
