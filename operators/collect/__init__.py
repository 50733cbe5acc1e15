"""``collect`` plugins: sources of raw batches (Pipcook's dataCollect).

A collect stage emits whatever its input emits, then its own batches, so several
sources can be chained in one pipeline. Every source reads lazily, a chunk at a time,
and again on every subscription (sources are cold).
"""

from ._bundled import breast_cancer, diabetes, iris, wine
from ._csv import csv_file as csv
from ._csv import text_csv
from ._digits import digits
from ._folders import image_folder, text_folder
from ._numpy import numpy_arrays as numpy
from ._tfrecord import tfrecord

__all__ = [
    "breast_cancer",
    "csv",
    "diabetes",
    "digits",
    "image_folder",
    "iris",
    "numpy",
    "text_csv",
    "text_folder",
    "tfrecord",
    "wine",
]
