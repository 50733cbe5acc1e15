"""access.buffer and access.prefetch: bounded thread boundaries between stages."""

from __future__ import annotations

from rxpipe.batch import Batch
from rxpipe.flow import Overflow, bounded_buffer
from rxpipe.flow import prefetch as prefetch_ahead
from rxpipe.registry import plugin
from rxpipe.stage import Operator


@plugin("access.buffer")
def buffer(
    capacity: int = 8, max_bytes: int | None = None, overflow: Overflow = "block"
) -> Operator[Batch, Batch]:
    """Hold at most ``capacity`` batches between the stages before and after it.

    The stages before run on their own thread. With ``overflow = "block"`` (for cold
    sources, which can wait) they wait while the buffer is full; a hot source that
    cannot wait picks ``"drop_oldest"``, ``"drop_newest"`` or ``"error"``, and every
    dropped batch is counted in the run's accounting and ``BatchesDropped`` events.

    Args:
        capacity: the most batches held.
        max_bytes: also hold at most this many bytes (``None``: no bound).
        overflow: what a full buffer does with a new batch.

    Example:
        >>> buffer(4, overflow="drop_oldest").params["overflow"]
        'drop_oldest'
    """
    return bounded_buffer(capacity, max_bytes=max_bytes, overflow=overflow, stage="access.buffer")


@plugin("access.prefetch")
def prefetch(count: int = 2, max_bytes: int | None = None) -> Operator[Batch, Batch]:
    """Run the stages before it ahead of the ones after, keeping ``count`` batches ready.

    Args:
        count: batches kept ready.
        max_bytes: also stop reading ahead at this many bytes (``None``: no bound).

    Example:
        >>> prefetch(3).params
        {'count': 3, 'max_bytes': None}
    """
    return prefetch_ahead(count, max_bytes=max_bytes, stage="access.prefetch")
