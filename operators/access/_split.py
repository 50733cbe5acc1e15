"""access.split: assign every sample to train / validation / test, deterministically."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from rxpipe.batch import Batch, DatasetMetadata, Split
from rxpipe.config import check_seed
from rxpipe.context import current_run
from rxpipe.errors import BatchError, ConfigError
from rxpipe.flow import fitted, transform
from rxpipe.registry import plugin
from rxpipe.sharding import unit_hash
from rxpipe.stage import Operator

_ORDER = (Split.TRAIN, Split.VALIDATION, Split.TEST)
SPLIT_VALUES: Mapping[str, Split] = {
    "train": Split.TRAIN,
    "training": Split.TRAIN,
    "validation": Split.VALIDATION,
    "valid": Split.VALIDATION,
    "val": Split.VALIDATION,
    "dev": Split.VALIDATION,
    "test": Split.TEST,
    "testing": Split.TEST,
}


def _by_split(batch: Batch, which: np.ndarray[Any, Any]) -> list[Batch]:
    """``batch`` cut by ``which`` (0 train, 1 validation, 2 test), keeping sample order."""
    out = []
    for index, split in enumerate(_ORDER):
        mask = which == index
        if mask.all():
            return [batch.evolve(split=split)]
        if mask.any():
            out.append(batch.select(mask).evolve(split=split))
    return out


class _Splitter:
    def __init__(self, bounds: tuple[float, float], seed: int) -> None:
        self._bounds = bounds
        self._seed = seed

    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        if batch.split is not Split.UNSPLIT:
            return (batch,)
        u = unit_hash(batch.ids, self._seed)
        return _by_split(batch, np.searchsorted(np.asarray(self._bounds), u, side="right"))

    def on_end(self) -> Iterable[Batch]:
        return ()


class _ClassIds:
    """Fitter of the stratified split: every unsplit sample's id, by class."""

    def __init__(self, ratios: tuple[float, float, float], seed: int) -> None:
        self._ratios = ratios
        self._seed = seed
        self._ids: dict[Any, list[np.ndarray[Any, Any]]] = {}

    def update(self, batch: Batch) -> None:
        if batch.split is not Split.UNSPLIT:
            return
        labels = batch.labels
        if labels is None or labels.ndim != 1 or np.issubdtype(labels.dtype, np.floating):
            raise BatchError(
                "access.split: stratify expected one class label per sample (ints or "
                f"strings). Received: {'no labels' if labels is None else labels.dtype.name}"
                f"{'' if labels is None else f' labels of shape {labels.shape[1:]}'}"
            )
        for label in np.unique(labels):
            key = label.item() if isinstance(label, np.generic) else label
            self._ids.setdefault(key, []).append(batch.ids[labels == label])

    def result(self) -> dict[Any, int]:
        assignment: dict[Any, int] = {}
        cut = np.cumsum(self._ratios)[:2]
        for parts in self._ids.values():
            ids = np.concatenate(parts)
            order = ids[np.argsort(unit_hash(ids, self._seed), kind="stable")]
            train_end, validation_end = (round(float(c) * len(ids)) for c in cut)
            for position, sample_id in enumerate(order.tolist()):
                assignment[sample_id] = (
                    0 if position < train_end else 1 if position < validation_end else 2
                )
        return assignment


def _stratified_apply(assignment: dict[Any, int]) -> Callable[[Batch], list[Batch]]:
    def apply(batch: Batch) -> list[Batch]:
        if batch.split is not Split.UNSPLIT:
            return [batch]
        try:
            which = np.fromiter((assignment[i] for i in batch.ids.tolist()), np.int64, batch.size)
        except KeyError as error:
            raise BatchError(
                f"access.split: sample {error.args[0]!r} was not seen when the stratified split "
                "was made; expected the same samples on every pass"
            ) from None
        return _by_split(batch, which)

    return apply


def _split_text(value: Any) -> str:
    """A split column's cell as text: bytes (e.g. from collect.tfrecord) decoded as UTF-8."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


@attrs.frozen
class _ColumnSplit:
    """Split by a feature column holding split names; the column is removed."""

    column: str
    evolved: dict[int, tuple[DatasetMetadata, DatasetMetadata]]

    def metadata(self, meta: DatasetMetadata) -> DatasetMetadata:
        """``meta`` without the column (one object per input metadata, for every pass)."""
        known = self.evolved.get(id(meta))
        if known is None or known[0] is not meta:
            features = meta.features
            result = meta
            if isinstance(features, Mapping) and self.column in features:
                rest = {k: v for k, v in features.items() if k != self.column}
                result = meta.evolve(features=next(iter(rest.values())) if len(rest) == 1 else rest)
            known = self.evolved[id(meta)] = (meta, result)
        return known[1]

    def on_batch(self, batch: Batch) -> Iterable[Batch]:
        features = batch.features
        if not isinstance(features, Mapping) or self.column not in features:
            got = sorted(features) if isinstance(features, Mapping) else "one unnamed array"
            raise BatchError(
                f"access.split: expected a feature column {self.column!r} of split names. "
                f"Received: features {got}"
            )
        values = features[self.column]
        codes = np.empty(batch.size, dtype=np.int64)
        for index, value in enumerate(values.tolist()):
            split = SPLIT_VALUES.get(_split_text(value).strip().lower())
            if split is None:
                raise BatchError(
                    f"access.split: column {self.column!r} of sample {batch.ids[index].item()!r}: "
                    f"expected one of {sorted(SPLIT_VALUES)}. Received: {value!r}"
                )
            codes[index] = _ORDER.index(split)
        rest = {k: v for k, v in features.items() if k != self.column}
        kept = batch.evolve(
            features=next(iter(rest.values())) if len(rest) == 1 else rest,
            metadata=self.metadata(batch.metadata),
        )
        return _by_split(kept, codes)

    def on_end(self) -> Iterable[Batch]:
        return ()


@plugin("access.split")
def split(
    train: float = 0.8,
    validation: float = 0.1,
    test: float = 0.1,
    seed: int | None = None,
    stratify: bool = False,
    column: str | None = None,
) -> Operator[Batch, Batch]:
    """Split unsplit samples into train, validation and test by a seeded hash of their id.

    Streaming and deterministic: a sample's split depends only on its id and the seed,
    never on arrival order, so every pass (every epoch) and every worker agrees, and
    no sample moves between splits. Split sizes follow the ratios up to sampling noise
    (±1–2 % on a thousand samples). Batches that already have a split pass unchanged.

    ``stratify=True`` makes every class follow the ratios exactly (to one sample): the
    first pass of a run reads every sample's id and label (not the features), then each
    class's ids, ordered by their seeded hash, are cut by the ratios. ``column`` instead
    takes each sample's split from a feature column (``"train"``, ``"validation"`` or
    ``"valid"``/``"val"``/``"dev"``, ``"test"``, as text or UTF-8 bytes, in any case),
    which is then removed from the features.

    Args:
        train: share of samples for training.
        validation: share for validation (may be 0).
        test: share for the final evaluation (may be 0).
        seed: hash seed; defaults to the run's seed.
        stratify: keep each class's share in every split exactly.
        column: a feature column naming each sample's split (the ratios are unused).

    Raises:
        ConfigError: if a ratio is negative, they do not sum to 1, or ``stratify`` and
            ``column`` are both given.

    Example:
        >>> from rxpipe.testing import collect, from_arrays
        >>> source = from_arrays(np.zeros((1000, 1)), np.zeros(1000, "int64"), batch_size=100)
        >>> sizes = {}
        >>> for b in collect(source.pipe(split(0.5, 0.25, 0.25, seed=1))):
        ...     sizes[b.split.value] = sizes.get(b.split.value, 0) + b.size
        >>> sorted(sizes), sum(sizes.values())
        (['test', 'train', 'validation'], 1000)
    """
    if seed is not None:
        seed = check_seed(seed, "access.split.seed")
    ratios = {"train": train, "validation": validation, "test": test}
    for name, ratio in ratios.items():
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(
                f"expected a ratio between 0 and 1. Received: {ratio!r}", f"access.split.{name}"
            )
    if abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise ConfigError(
            f"train + validation + test: expected a sum of 1. Received: {sum(ratios.values())!r} "
            f"({train} + {validation} + {test})"
        )
    if stratify and column is not None:
        raise ConfigError(
            "expected either stratify or a split column. Received: both", "access.split"
        )
    if column is not None:
        if not column:
            raise ConfigError("expected a column name. Received: ''", "access.split.column")
        evolved: dict[int, tuple[DatasetMetadata, DatasetMetadata]] = {}
        return transform("access.split", lambda: _ColumnSplit(column, evolved))
    bounds = (train, train + validation)
    if stratify:
        split_ratios = (train, validation, test)

        def make_fitter() -> _ClassIds:
            return _ClassIds(split_ratios, current_run().seed if seed is None else seed)

        return fitted("access.split", make_fitter, _stratified_apply)

    def make() -> _Splitter:
        return _Splitter(bounds, current_run().seed if seed is None else seed)

    return transform("access.split", make)
