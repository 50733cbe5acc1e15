"""Re-cut a stream of batches into batches of a fixed size, per split."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from rxpipe.batch import Batch, Split
from rxpipe.errors import BatchError, format_ids
from rxpipe.flow._tally import current_tally

__all__ = ["Rebatcher"]


class Rebatcher:
    """Accumulate samples per split; emit batches of exactly ``size`` samples.

    Dropped remainders are counted in the current stage's tally (accounting). Batches
    whose samples cannot be joined (another per-sample shape than the batches before
    them) fail with a :class:`~rxpipe.errors.BatchError` naming both shapes and samples.

    Args:
        size: samples per output batch.
        drop_remainder: drop each split's last, partial batch.
        stage: the stage name used in errors.
    """

    def __init__(self, size: int, drop_remainder: bool, stage: str) -> None:
        self._tally = current_tally("rebatch")
        self._size = size
        self._drop_remainder = drop_remainder
        self._stage = stage
        self._held: dict[Split, list[Batch]] = {}
        self._count: dict[Split, int] = {}

    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        held = self._held.setdefault(batch.split, [])
        if not held and batch.size == self._size:
            return (batch,)  # already the right size: pass it on without copying
        held.append(batch)
        count = self._count.get(batch.split, 0) + batch.size
        if count < self._size:
            self._count[batch.split] = count
            return ()
        merged = self._concat(held)
        full = count - count % self._size
        out = [merged.select(slice(i, i + self._size)) for i in range(0, full, self._size)]
        rest = count - full
        self._held[batch.split] = [merged.select(slice(full, count))] if rest else []
        self._count[batch.split] = rest
        return out

    def on_end(self) -> Iterable[Batch]:
        if self._drop_remainder:
            for held in self._held.values():
                if held:
                    self._tally.drop(sum(b.size for b in held), "drop_remainder")
            return ()
        return [self._concat(held) for held in self._held.values() if held]

    def _concat(self, batches: list[Batch]) -> Batch:
        """:meth:`Batch.concat`, with an error naming the per-sample shapes that differ."""
        try:
            return Batch.concat(batches)
        except BatchError:
            raise
        except (ValueError, TypeError, KeyError) as error:
            raise _mismatch(self._stage, batches, error) from None


def _layout(batch: Batch) -> dict[str, str]:
    """Each array of ``batch`` by name, as its per-sample shape and dtype."""
    arrays: dict[str, Any] = {}
    if isinstance(batch.features, np.ndarray):
        arrays["features"] = batch.features
    else:
        arrays.update({f"features[{k!r}]": v for k, v in batch.features.items()})
    arrays["labels"] = batch.labels
    arrays["ids"] = batch.ids
    return {
        name: "none"
        if array is None
        else f"{np.asarray(array).dtype.name} {tuple(np.shape(array)[1:])}"
        for name, array in arrays.items()
    }


def _mismatch(stage: str, batches: list[Batch], error: Exception) -> BatchError:
    """The error for batches that do not join: the first batch unlike the first one."""
    first = _layout(batches[0])
    for batch in batches[1:]:
        layout = _layout(batch)
        names = [n for n in {**first, **layout} if first.get(n) != layout.get(n)]
        if not names:
            continue
        expected = "; ".join(f"{n} {first.get(n, 'missing')}" for n in names)
        received = "; ".join(f"{n} {layout.get(n, 'missing')}" for n in names)
        ids = batch.ids.tolist()
        return BatchError(
            f"{stage}: expected samples of one shape to join into a batch, {expected} per "
            f"sample as in samples {format_ids(batches[0].ids.tolist())}. Received: "
            f"{received} in samples {format_ids(ids)}",
            ids,
        )
    return BatchError(  # not a shape mismatch between batches: say what numpy said
        f"{stage}: expected batches that join into one. Received: {type(error).__name__}: "
        f"{error} for samples {format_ids([i for b in batches for i in b.ids.tolist()])}"
    )
