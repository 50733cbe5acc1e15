"""``access`` plugins: split, shuffle and re-batch the stream (Pipcook's dataAccess)."""

from ._batch import batch
from ._shuffle import shuffle
from ._split import split

__all__ = ["batch", "shuffle", "split"]
