"""``collect`` plugins: sources of raw batches (Pipcook's dataCollect).

A collect stage emits whatever its input emits, then its own batches, so several
sources can be chained in one pipeline.
"""

from ._digits import digits

__all__ = ["digits"]
