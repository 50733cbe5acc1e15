"""Re-cut a stream of batches into batches of a fixed size, per split."""

from __future__ import annotations

from collections.abc import Iterable

from rxpipe.batch import Batch, Split
from rxpipe.flow._tally import current_tally

__all__ = ["Rebatcher"]


class Rebatcher:
    """Accumulate samples per split; emit batches of exactly ``size`` samples.

    Dropped remainders are counted in the current stage's tally (accounting).
    """

    def __init__(self, size: int, drop_remainder: bool) -> None:
        self._tally = current_tally("rebatch")
        self._size = size
        self._drop_remainder = drop_remainder
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
        merged = Batch.concat(held)
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
        return [Batch.concat(held) for held in self._held.values() if held]
