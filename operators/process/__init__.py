"""``process`` plugins: per-sample transforms and processors fitted on the training split.

Pipcook's dataProcess (per sample: decode, resize, normalize, augment) and
datasetProcess (fitted on the whole training split: vocabularies, standardizers,
category lists, label maps; see :func:`rxpipe.flow.fitted`). Transforms that
serving must repeat are recorded in the batch metadata as
:class:`~rxpipe.preprocessing.Preprocessor` steps; export builds them into the model.
"""

from ._augment import augment
from ._concat_columns import concat_columns
from ._fill_missing import fill_missing
from ._image import decode_image, grayscale, resize
from ._label_encode import label_encode
from ._normalize import normalize
from ._one_hot import one_hot
from ._standardize import standardize
from ._vectorize import vectorize

__all__ = [
    "augment",
    "concat_columns",
    "decode_image",
    "fill_missing",
    "grayscale",
    "label_encode",
    "normalize",
    "one_hot",
    "resize",
    "standardize",
    "vectorize",
]
