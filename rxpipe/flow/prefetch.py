"""prefetch: keep the next N batches ready ahead of the consumer."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import reactivex

from rxpipe.errors import ConfigError
from rxpipe.flow.buffer import bounded_buffer

__all__ = ["prefetch"]

T = TypeVar("T")


def prefetch(
    count: int = 2, *, max_bytes: int | None = None, stage: str = "flow.prefetch"
) -> Callable[[reactivex.Observable[T]], reactivex.Observable[T]]:
    """Run the upstream chain ahead of the consumer, keeping up to ``count`` items ready.

    The upstream (a cold source and the stages after it) runs on its own thread while
    the consumer works on the current item, and waits once ``count`` items are ready:
    the consumer rarely waits, and memory stays bounded. It is a
    :func:`~rxpipe.flow.bounded_buffer` with ``overflow="block"``.

    ::

        upstream:   a-b-c------d-e--|     (waits while 2 are ready)
        downstream: a---b---c---d---e-|

    Args:
        count: items kept ready (at least 1).
        max_bytes: also stop reading ahead at this many bytes (``None``: no bound).
        stage: the name used in errors and thread names.

    Returns:
        The operator.

    Raises:
        ConfigError: for an invalid parameter.

    Example:
        >>> from rxpipe.testing import collect
        >>> collect(reactivex.from_iterable(range(5)).pipe(prefetch(2)))
        [0, 1, 2, 3, 4]
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"count: expected an int >= 1. Received: {count!r}")
    return bounded_buffer(count, max_bytes=max_bytes, overflow="block", stage=stage)
