"""``process`` plugins: per-sample transforms (Pipcook's dataProcess).

Transforms that serving must repeat are recorded in the batch metadata as
:class:`~rxpipe.preprocessing.Preprocessor` steps; export builds them into the model.
"""

from ._normalize import normalize

__all__ = ["normalize"]
