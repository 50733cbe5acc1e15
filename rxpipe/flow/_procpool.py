"""Worker processes for :func:`~rxpipe.flow.parallel_map` (pure-Python work).

Each :class:`WorkerProcess` is one child process, driven by one parent thread over a
pipe, one item at a time: the parent sends an item, the child applies the function
(with the bad-record policy) and sends back the outcome or the error. No queue feeder
threads, no shared pool: closing a worker ends its child for sure (asked to stop, then
terminated, then killed), and a child whose parent dies sees the pipe close and exits.
Children ignore Ctrl-C; the parent stops them.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from typing import Any

from rxpipe.flow._skip import Outcome, apply

__all__ = ["WorkerProcess", "WorkerStopped", "check_picklable"]

_POLL_S = 0.05
_OK, _FAILED = 0, 1


class WorkerStopped(Exception):
    """The worker was stopped while waiting for its child's answer."""


def check_picklable(fn: Callable[..., Any]) -> str | None:
    """Why ``fn`` cannot be sent to a worker process, or ``None`` if it can."""
    try:
        pickle.dumps(fn)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def _portable(error: BaseException) -> BaseException:
    """``error`` with its traceback as a note, or a RuntimeError if it cannot be pickled."""
    note = f"raised in worker process {os.getpid()}:\n{''.join(traceback.format_exception(error))}"
    try:
        error.add_note(note)
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        plain = RuntimeError(f"{type(error).__name__}: {error}")
        plain.add_note(note)
        return plain


def _child_main(conn: multiprocessing.connection.Connection, fn: Any, skip: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        except Exception as error:  # an item that cannot be rebuilt here: say why
            conn.send((_FAILED, _portable(error)))
            continue
        if item is None:
            return
        try:
            reply: tuple[int, Any] = (_OK, apply(fn, item, skip))
        except Exception as error:
            reply = (_FAILED, _portable(error))
        try:
            conn.send(reply)
        except Exception as error:  # an output that cannot be pickled
            conn.send((_FAILED, _portable(error)))


class WorkerProcess:
    """One child process applying ``fn`` to the items its parent thread sends.

    Args:
        fn: a picklable function.
        skip: apply the ``on_error="skip"`` policy in the child.
        context: the multiprocessing context (``"spawn"``, ``"forkserver"``, ``"fork"``).
        name: the child's process name.
    """

    def __init__(self, fn: Callable[[Any], Any], skip: bool, context: str, name: str) -> None:
        ctx: Any = multiprocessing.get_context(context)
        self.conn, child_conn = ctx.Pipe()
        self.process: multiprocessing.process.BaseProcess = ctx.Process(
            target=_child_main, args=(child_conn, fn, skip), name=name, daemon=True
        )
        self.process.start()
        child_conn.close()

    def call(self, item: Any, stopped: Callable[[], bool]) -> Outcome:
        """Apply the function to ``item`` in the child; re-raise its error here.

        Raises:
            WorkerStopped: if ``stopped()`` became true while waiting.
            RuntimeError: if the child died.
        """
        try:
            self.conn.send(item)
            while not self.conn.poll(_POLL_S):
                if stopped():
                    raise WorkerStopped
            status, payload = self.conn.recv()
        except (EOFError, OSError):  # the child died: its end of the pipe closed
            self.process.join(1.0)
            raise RuntimeError(
                f"worker process {self.process.name} exited with code "
                f"{self.process.exitcode} while processing an item"
            ) from None
        if status == _FAILED:
            raise payload
        result: Outcome = payload
        return result

    def close(self, timeout: float) -> None:
        """Stop the child: ask, then terminate, then kill; always reap it."""
        process = self.process
        try:
            if process.is_alive():
                self.conn.send(None)
        except OSError:
            pass
        process.join(timeout)
        if process.is_alive():
            process.terminate()
            process.join(1.0)
        if process.is_alive():
            process.kill()
            process.join()
        self.conn.close()
        process.close()

    def kill(self) -> None:
        """End the child at once (it may be in the middle of an item); reap it."""
        if self.process.is_alive():
            self.process.terminate()
        self.close(0.0)
