"""Tests of rxpipe.tf_import: TensorFlow's start-up notices left out, real lines kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rxpipe.tf_import import STARTUP_NOTICES, without_startup_notices

NOTICES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1795704801.311775    8315 cudart_stub.cc:31] Could not find cuda drivers "
    b"on your machine, GPU will not be used.\n"
    b"E0000 00:00:1795704806.031419    8315 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)


def test_notices_are_left_out_and_other_lines_kept(capfd: pytest.CaptureFixture[str]) -> None:
    """Lines written to fd 2 in the block come back in order, less the start-up notices."""
    with without_startup_notices():
        os.write(2, b"first real line\n" + NOTICES + b"W0000 a real warning\n")
    assert capfd.readouterr().err == "first real line\nW0000 a real warning\n"


def test_lines_are_written_back_when_the_block_raises(capfd: pytest.CaptureFixture[str]) -> None:
    """An import that fails still shows what it wrote, and the error propagates."""
    with pytest.raises(ImportError), without_startup_notices():
        os.write(2, NOTICES + b"cannot load libfoo.so\n")
        raise ImportError("libfoo")
    assert capfd.readouterr().err == "cannot load libfoo.so\n"


@pytest.mark.slow
def test_importing_tensorflow_prints_no_start_up_notices() -> None:
    """A fresh process importing TensorFlow through import_tensorflow shows none of them."""
    script = (
        "from rxpipe.tf_import import import_tensorflow\n"
        "tf = import_tensorflow()\n"
        "print(tf.reduce_sum(tf.ones(3)).numpy())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.0"
    assert not [line for line in done.stderr.splitlines() if STARTUP_NOTICES.search(line)]
