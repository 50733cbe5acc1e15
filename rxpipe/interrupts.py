"""Signals during a run: Ctrl-C (and, on the command line, SIGTERM) stop it cleanly.

Python's own Ctrl-C handling raises ``KeyboardInterrupt`` wherever the main thread is.
Raised inside Keras or TensorFlow code, it can be swallowed (Keras converts its logs under
a bare ``except:``) or crash the process while a tensor is being unwound. While a block of
:func:`stopping_on_signals` runs, an interrupt that arrives during training waits for the
next train step instead (:func:`rxpipe.training.trainer.waits_for_next_step`); anywhere
else it is raised at once, as usual. :meth:`rxpipe.Pipeline.run` handles Ctrl-C this way;
the command line adds SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["stopping_on_signals"]

_DEFAULT_HANDLERS: dict[int, object] = {
    signal.SIGINT: signal.default_int_handler,
    signal.SIGTERM: signal.SIG_DFL,
}


@contextmanager
def stopping_on_signals(*signums: int) -> Iterator[list[int]]:
    """In the block, each of ``signums`` (default: SIGINT) raises ``KeyboardInterrupt``.

    The interrupt names its signal (``KeyboardInterrupt("SIGTERM")``; ``"Ctrl-C"`` for
    SIGINT), so a cancelled run can say why. During training it is raised at the next
    step, not inside Keras or TensorFlow code. A second signal raises at once; a second
    SIGTERM ends the process at once. Off the main thread, or for a signal that already
    has a handler of the program's own (or is ignored), nothing changes: nesting two
    blocks is safe, the outer one handles the signal.

    Args:
        signums: SIGINT and/or SIGTERM.

    Yields:
        The numbers of the signals received, in order.

    Example:
        >>> import signal
        >>> with stopping_on_signals(signal.SIGINT) as received:
        ...     pass
        >>> received
        []
    """
    received: list[int] = []
    wanted = signums or (signal.SIGINT,)
    unknown = [s for s in wanted if s not in _DEFAULT_HANDLERS]
    if unknown:
        raise ValueError(f"stopping_on_signals: expected SIGINT or SIGTERM. Received: {unknown}")
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    from rxpipe.training.trainer import clear_stop_requests, request_stop, waits_for_next_step

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        reason = "Ctrl-C"
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends the process
            reason = "SIGTERM"
        request_stop(reason)
        if len(received) > 1 or not waits_for_next_step(frame):
            raise KeyboardInterrupt(reason)

    previous = {}
    for signum in wanted:
        if signal.getsignal(signum) is _DEFAULT_HANDLERS[signum]:
            previous[signum] = signal.signal(signum, on_signal)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if previous:
            clear_stop_requests()
