"""collect.iris, .wine, .breast_cancer and .diabetes: scikit-learn's bundled tables.

The tables ship inside scikit-learn (nothing is downloaded). Each emits float32 feature
rows of shape (n_features,) in chunks, with int64 class labels (or float32 targets for
the ``diabetes`` regression set); sample ids are the row numbers. The metadata names
each value of a row as scikit-learn does (``FeatureSpec.columns``: ``alcohol``,
``malic_acid``... for wine), so an exported model's card names its input's columns and
``rxpipe predict`` reads a CSV of them, whose label column is :data:`LABEL_COLUMN`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from rxpipe.batch import Batch, DatasetMetadata, FeatureSpec
from rxpipe.flow import append, generate
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import optional_positive_int, positive_int

Table = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], DatasetMetadata]

SOURCES = ("collect.iris", "collect.wine", "collect.breast_cancer", "collect.diabetes")
"""The plugins of this module, as a pipeline file names them."""

LABEL_COLUMN = "target"
"""The label column's name in a CSV of a bundled table: scikit-learn's (the column of
``load_wine(as_frame=True).frame`` after the features)."""


def _table(name: str, loader: Callable[[], Any], regression: bool = False) -> Table:
    data = loader()
    features = np.asarray(data.data, dtype=np.float32)
    if regression:
        labels = np.asarray(data.target, dtype=np.float32)
        label_names = None
    else:
        labels = np.asarray(data.target, dtype=np.int64)
        label_names = tuple(str(n) for n in data.target_names)
    meta = DatasetMetadata(
        name=name,
        features=FeatureSpec(
            features.shape[1:], "float32", columns=[str(n) for n in data.feature_names]
        ),
        label_names=label_names,
        split_sizes={"unsplit": len(features)},
    )
    return features, labels, meta


@functools.cache
def load_table(name: str) -> Table:
    """The bundled table ``name`` as (features, labels, metadata), read once per process."""
    from sklearn import datasets

    if name == "diabetes":
        return _table(name, functools.partial(datasets.load_diabetes, scaled=False), True)
    loaders = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }
    return _table(name, loaders[name])


def chunked_source(
    plugin_name: str, load: Callable[[], Table], chunk_size: int, limit: int | None
) -> Operator[Batch, Batch]:
    """An operator emitting its input, then the in-memory table ``load()`` in chunks.

    Sample ids are the row numbers; ``limit`` keeps only the first rows.
    """
    positive_int(plugin_name, "chunk_size", chunk_size)
    optional_positive_int(plugin_name, "limit", limit)

    def batches() -> Iterator[Batch]:
        features, labels, meta = load()
        n = len(features) if limit is None else min(limit, len(features))
        ids = np.arange(n, dtype=np.int64)
        for start in range(0, n, chunk_size):
            part = slice(start, min(start + chunk_size, n))
            yield Batch(features[part], labels[part], ids[part], meta)

    return append(lambda: generate(batches))


def table_source(
    plugin_name: str, table: str, chunk_size: int, limit: int | None
) -> Operator[Batch, Batch]:
    """An operator emitting its input, then the bundled ``table`` in chunks."""
    return chunked_source(plugin_name, functools.partial(load_table, table), chunk_size, limit)


@plugin("collect.iris")
def iris(chunk_size: int = 256, limit: int | None = None) -> Operator[Batch, Batch]:
    """150 iris flowers: 4 measurements (cm), 3 species, from scikit-learn.

    The features' columns are named as scikit-learn names them (``sepal length (cm)``,
    ``sepal width (cm)``, ``petal length (cm)``, ``petal width (cm)``): the exported
    model's card lists them, and ``rxpipe predict`` reads a CSV whose header names them.

    Args:
        chunk_size: samples per emitted batch.
        limit: emit only the first ``limit`` rows (for quick runs).

    Example:
        >>> import reactivex
        >>> from rxpipe.testing import collect
        >>> [batch] = collect(reactivex.empty().pipe(iris()))
        >>> batch.features.shape, batch.metadata.label_names
        ((150, 4), ('setosa', 'versicolor', 'virginica'))
    """
    return table_source("collect.iris", "iris", chunk_size, limit)


@plugin("collect.wine")
def wine(chunk_size: int = 256, limit: int | None = None) -> Operator[Batch, Batch]:
    """178 wines: 13 chemical measurements, 3 cultivars, from scikit-learn.

    The features' columns are named as scikit-learn names them (``alcohol``,
    ``malic_acid``, ..., ``proline``; ``metadata.features.columns``): the exported
    model's card lists them (``inputs.features.columns``), and ``rxpipe predict`` reads
    a CSV whose header names them, in any order (a ``target`` column is the label).

    Args:
        chunk_size: samples per emitted batch.
        limit: emit only the first ``limit`` rows (for quick runs).

    Example:
        >>> import reactivex
        >>> from rxpipe.testing import collect
        >>> [batch] = collect(reactivex.empty().pipe(wine()))
        >>> batch.features.shape, batch.metadata.num_classes
        ((178, 13), 3)
        >>> batch.metadata.feature_spec.columns[:3]
        ('alcohol', 'malic_acid', 'ash')
    """
    return table_source("collect.wine", "wine", chunk_size, limit)


@plugin("collect.breast_cancer")
def breast_cancer(chunk_size: int = 256, limit: int | None = None) -> Operator[Batch, Batch]:
    """569 breast tumour biopsies: 30 cell-nucleus features, malignant or benign.

    The features' columns are named as scikit-learn names them (``mean radius``, ...,
    ``worst fractal dimension``): the exported model's card lists them, and ``rxpipe
    predict`` reads a CSV whose header names them.

    Args:
        chunk_size: samples per emitted batch.
        limit: emit only the first ``limit`` rows (for quick runs).

    Example:
        >>> import reactivex
        >>> from rxpipe.testing import collect
        >>> batches = collect(reactivex.empty().pipe(breast_cancer()))
        >>> sum(b.size for b in batches), batches[0].metadata.label_names
        (569, ('malignant', 'benign'))
    """
    return table_source("collect.breast_cancer", "breast_cancer", chunk_size, limit)


@plugin("collect.diabetes")
def diabetes(chunk_size: int = 256, limit: int | None = None) -> Operator[Batch, Batch]:
    """442 diabetes patients: 10 raw baseline measurements; target: disease progression.

    A regression set: labels are float32 (25 to 346), ``label_names`` is ``None``. The
    features' columns are named as scikit-learn names them (``age``, ``sex``, ``bmi``,
    ``bp``, ``s1`` to ``s6``): the exported model's card lists them, and ``rxpipe
    predict`` reads a CSV whose header names them.

    Args:
        chunk_size: samples per emitted batch.
        limit: emit only the first ``limit`` rows (for quick runs).

    Example:
        >>> import reactivex
        >>> from rxpipe.testing import collect
        >>> batches = collect(reactivex.empty().pipe(diabetes()))
        >>> batches[0].features.shape[1:], batches[0].labels.dtype.name
        ((10,), 'float32')
    """
    return table_source("collect.diabetes", "diabetes", chunk_size, limit)
