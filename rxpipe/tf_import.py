"""Import TensorFlow without its start-up chatter on standard error.

TensorFlow's C++ runtime writes lines such as ``Could not find cuda drivers on your
machine`` and ``E0000 ... failed call to cuInit`` to standard error when it is imported
and when it first looks for devices. They come before its logging is set up, so
``TF_CPP_MIN_LOG_LEVEL`` does not silence them, and on a machine without a GPU the
``E0000`` line reads like a failure. :func:`import_tensorflow` catches what file
descriptor 2 receives during those two steps and writes back every line except the
known start-up notices, so real errors and warnings still show.

The command line uses it; a program can too. ``TF_CPP_MIN_LOG_LEVEL=0`` keeps every line.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import cast

__all__ = ["STARTUP_NOTICES", "import_tensorflow", "without_startup_notices"]

STARTUP_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|^To enable the following instructions: .*rebuild TensorFlow"
)
"""The start-up lines :func:`import_tensorflow` leaves out."""


@contextmanager
def without_startup_notices() -> Iterator[None]:
    """Hold what file descriptor 2 receives in the block; write it back less the notices.

    Example:
        >>> with without_startup_notices():
        ...     _ = os.write(2, b"Could not find cuda drivers on your machine\\n")
    """
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [ln for ln in text.splitlines(keepends=True) if not STARTUP_NOTICES.search(ln)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow() -> ModuleType:
    """Import TensorFlow and look up its devices, leaving out its start-up notices.

    Returns:
        The ``tensorflow`` module.

    Example:
        >>> tf = import_tensorflow()
        >>> tf.config.list_logical_devices("CPU")[0].device_type
        'CPU'
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import tensorflow

        return cast(ModuleType, tensorflow)
    with without_startup_notices():
        import tensorflow

        tensorflow.config.list_physical_devices()  # the first device look-up
    return cast(ModuleType, tensorflow)
