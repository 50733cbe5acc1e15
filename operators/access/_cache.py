"""access.cache: read and process the data once per run (memory) or once ever (a folder)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import reactivex
from reactivex import abc

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.context import atomic_write, current_run, not_replaceable
from rxpipe.errors import ConfigError, StageError
from rxpipe.events import CacheRebuilt
from rxpipe.flow import current_tally, generate
from rxpipe.lineage import current_lineage, difference
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._fitting import PerRun

MANIFEST = "cache.json"
FORMAT = "rxpipe.cache/1"


def _recorded(source: reactivex.Observable[Batch], finished: Any) -> reactivex.Observable[Batch]:
    """``source``, passing every batch through; ``finished(batches)`` once it completes."""

    def subscribe(
        observer: abc.ObserverBase[Batch], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        kept: list[Batch] = []

        def on_next(batch: Batch) -> None:
            kept.append(batch)
            observer.on_next(batch)

        def on_completed() -> None:
            try:
                finished(kept)
            except Exception as error:
                observer.on_error(error)
                return
            observer.on_completed()

        return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

    return reactivex.create(subscribe)


def write_folder(folder: Path, batches: list[Batch], lineage: dict[str, Any] | None) -> None:
    """Write ``batches`` to ``folder`` (atomically: the folder appears complete or not at all).

    ``lineage`` (what the cache's input was made of, ``None`` if unknown) goes into the
    manifest, so a later pass can tell whether the folder still matches its input.
    """
    metas: list[DatasetMetadata] = []
    with atomic_write(folder, marker=MANIFEST) as tmp:
        tmp.mkdir()
        for index, batch in enumerate(batches):
            position = next((i for i, m in enumerate(metas) if m is batch.metadata), None)
            if position is None:
                metas.append(batch.metadata)
                position = len(metas) - 1
            record = (batch.features, batch.labels, batch.ids, batch.split.value, position)
            with (tmp / f"batch-{index:06d}.pkl").open("wb") as handle:
                pickle.dump(record, handle, protocol=5)
        with (tmp / "metadata.pkl").open("wb") as handle:
            pickle.dump(metas, handle, protocol=5)
        manifest = {
            "format": FORMAT,
            "batches": len(batches),
            "samples": sum(b.size for b in batches),
            "lineage": lineage,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a complete cache folder; a clear error for any other folder."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}")
    except (OSError, ValueError) as error:
        raise StageError(
            "access.cache",
            f"{str(folder)!r}: expected a complete cache folder written by access.cache "
            f"({FORMAT}). Received: {error}; delete the folder to rebuild it",
        ) from error
    return manifest


def read_folder(folder: Path, manifest: dict[str, Any]) -> Iterator[Batch]:
    """Replay the batches of a cache folder, one file at a time."""
    try:
        with (folder / "metadata.pkl").open("rb") as handle:
            metas = pickle.load(handle)
    except (OSError, EOFError, pickle.UnpicklingError) as error:
        raise StageError(
            "access.cache",
            f"cannot read {str(folder / 'metadata.pkl')!r}: expected the cache's metadata. "
            f"Received: {error}; delete the cache folder to rebuild it",
        ) from error
    for index in range(int(manifest["batches"])):
        file = folder / f"batch-{index:06d}.pkl"
        try:
            with file.open("rb") as handle:
                features, labels, ids, split, position = pickle.load(handle)
        except (OSError, EOFError, pickle.UnpicklingError) as error:
            raise StageError(
                "access.cache",
                f"cannot read {str(file)!r}: expected a cached batch. Received: {error}; "
                "delete the cache folder to rebuild it",
            ) from error
        yield Batch(features, labels, ids, metas[position], split)


def _stale(folder: Path, manifest: dict[str, Any], lineage: dict[str, Any] | None) -> bool:
    """Whether the folder was made from other input; publishes :class:`CacheRebuilt` if so."""
    recorded = manifest.get("lineage")
    if recorded is None or lineage is None:  # unknown then or now: nothing to compare
        return False
    reason = difference(recorded, lineage)
    if reason is None:
        return False
    stage = current_tally("access.cache").stage
    current_run().publish(CacheRebuilt, stage=stage, path=str(folder), reason=reason)
    return True


@plugin("access.cache")
def cache(path: str | None = None) -> Operator[Batch, Batch]:
    """Keep the stream after its first complete pass; later passes replay it.

    In memory (``path`` unset), the first complete pass of a run is kept and every
    later pass of that run (every epoch, validation, evaluation) replays it without
    reading or processing again. With ``path``, the first complete pass is written to
    that folder (atomically: it appears when complete) and every later pass, in this
    run or any later one, replays it from disk a batch at a time. A pass cut short (an
    error, ``access.take`` downstream) is not kept.

    In a pipeline, the folder records the lineage of its data (:mod:`rxpipe.lineage`):
    the plugins and parameters before the cache, the run's seed, rxpipe's version, and
    the size and modification time of the files and folders those parameters name. When
    it no longer matches, the cache publishes :class:`~rxpipe.events.CacheRebuilt`
    naming what changed and is written anew. It cannot see changes in the code of a
    plugin, in an operator that is not a registered plugin, or in a Python ``source``:
    then delete the folder yourself.

    Put the cache after the expensive, deterministic stages (decoding, fitted
    processors) and before the ones that should differ per epoch (``access.shuffle``,
    ``process.augment``).

    Args:
        path: a folder for a disk cache (written with pickle: only replay folders you
            wrote yourself); ``None`` keeps the batches in memory. It must not exist
            yet, be empty, or be a cache folder: a folder of other files is an error,
            never deleted.

    Example:
        >>> import numpy as np
        >>> from rxpipe.testing import collect, from_arrays
        >>> cached = from_arrays(np.zeros((4, 1)), batch_size=2).pipe(cache())
        >>> [b.size for b in collect(cached)] == [b.size for b in collect(cached)] == [2, 2]
        True
    """
    folder = None if path is None else Path(path).expanduser()
    problem = None if folder is None else not_replaceable(folder, MANIFEST)
    if problem is not None:
        raise ConfigError(problem, "access.cache.path")
    kept: PerRun[list[Batch]] = PerRun()

    def operator(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
        def start(_: Any) -> reactivex.Observable[Batch]:
            if folder is not None:
                lineage = current_lineage()
                if (folder / MANIFEST).exists():
                    manifest = read_manifest(folder)
                    if not _stale(folder, manifest, lineage):
                        return generate(lambda: read_folder(folder, manifest))
                return _recorded(source, lambda batches: write_folder(folder, batches, lineage))
            batches = kept.get()
            if batches is not None:
                replay = batches
                return generate(lambda: iter(replay))
            return _recorded(source, kept.setdefault)

        return reactivex.defer(start)

    return operator
