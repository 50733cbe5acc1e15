"""access.cache: read and process the data once per run (memory) or once ever (a folder)."""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import reactivex
from reactivex import abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.context import atomic_write, current_run, not_replaceable
from rxpipe.errors import ConfigError, StageError
from rxpipe.events import CacheRebuilt
from rxpipe.flow import PerRun, current_tally, generate
from rxpipe.lineage import current_lineage, difference
from rxpipe.registry import plugin
from rxpipe.stage import Operator

MANIFEST = "cache.json"
FORMAT = "rxpipe.cache/1"


def _recorded(
    source: reactivex.Observable[Batch], kept: PerRun[list[Batch]]
) -> reactivex.Observable[Batch]:
    """``source``, passing every batch through and keeping them in ``kept`` once it
    completes, unless another pass of the run kept its batches first (then this one stops
    recording at its next batch)."""

    def subscribe(
        observer: abc.ObserverBase[Batch], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        recording: list[Batch] | None = []

        def on_next(batch: Batch) -> None:
            nonlocal recording
            if recording is not None:
                if kept.get() is None:
                    recording.append(batch)
                else:
                    recording = None  # another pass was kept: let these batches go
            observer.on_next(batch)

        def on_completed() -> None:
            if recording is not None:
                kept.setdefault(recording)
            observer.on_completed()

        return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

    return reactivex.create(subscribe)


class _PassCutShort(Exception):
    """Thrown into :func:`~rxpipe.context.atomic_write` to discard a pass that did not complete."""


class FolderWriter:
    """Writes one pass to a cache folder as it flows, a file per batch.

    The batches go to a temporary folder beside ``folder`` (opened with
    :func:`~rxpipe.context.atomic_write`, which checks at once that ``folder`` may be
    replaced); :meth:`commit` adds the metadata and the manifest and renames it to
    ``folder``, :meth:`abort` deletes it. Only the metadata objects are kept in memory.
    ``lineage`` (what the cache's input was made of, ``None`` if unknown) goes into the
    manifest, so a later pass can tell whether the folder still matches its input.

    Raises:
        FileExistsError: ``folder`` is a folder rxpipe did not write (when opened, and
            again on :meth:`commit`).

    Example:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> from rxpipe.testing import from_arrays, collect
        >>> scratch = tempfile.TemporaryDirectory()
        >>> folder = pathlib.Path(scratch.name) / "cache"
        >>> writer = FolderWriter(folder, lineage=None)
        >>> for batch in collect(from_arrays(np.zeros((5, 1)), batch_size=2)):
        ...     writer.write(batch)
        >>> writer.commit()
        >>> read_manifest(folder)["samples"], sorted(p.name for p in folder.iterdir())[:2]
        (5, ['batch-000000.pkl', 'batch-000001.pkl'])
        >>> scratch.cleanup()
    """

    def __init__(self, folder: Path, lineage: dict[str, Any] | None) -> None:
        self._lineage = lineage
        self._metas: list[DatasetMetadata] = []
        self._positions: dict[int, int] = {}  # id(metadata) → index in _metas (kept alive)
        self._batches = 0
        self._samples = 0
        self._writing = atomic_write(folder, marker=MANIFEST)
        self._tmp = self._writing.__enter__()
        try:
            self._tmp.mkdir()
        except BaseException as error:
            self._writing.__exit__(type(error), error, error.__traceback__)
            raise

    def write(self, batch: Batch) -> None:
        """Append ``batch`` to the folder being written.

        Raises:
            StageError: the batch could not be pickled or written (naming file and ids).
        """
        position = self._positions.get(id(batch.metadata))
        if position is None:
            position = self._positions[id(batch.metadata)] = len(self._metas)
            self._metas.append(batch.metadata)
        record = (batch.features, batch.labels, batch.ids, batch.split.value, position)
        file = self._tmp / f"batch-{self._batches:06d}.pkl"
        try:
            with file.open("wb") as handle:
                pickle.dump(record, handle, protocol=5)
        except Exception as error:
            raise StageError(
                "access.cache",
                f"{str(file)!r}: expected to write the batch to the cache folder. "
                f"Received: {type(error).__name__}: {error}",
                batch.ids.tolist(),
                error,
            ) from error
        self._batches += 1
        self._samples += batch.size

    def commit(self) -> None:
        """Write the metadata and the manifest, then rename the folder into place.

        Raises:
            FileExistsError: a folder rxpipe did not write appeared at ``folder``
                meanwhile (it is left alone; the batches written are deleted).
        """
        try:
            with (self._tmp / "metadata.pkl").open("wb") as handle:
                pickle.dump(self._metas, handle, protocol=5)
            manifest = {
                "format": FORMAT,
                "batches": self._batches,
                "samples": self._samples,
                "lineage": self._lineage,
            }
            (self._tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        except BaseException as error:
            self._writing.__exit__(type(error), error, error.__traceback__)
            raise
        self._writing.__exit__(None, None, None)

    def abort(self) -> None:
        """Delete what was written; the folder at ``folder`` is left as it was."""
        cut = _PassCutShort("the pass ended before it completed")
        self._writing.__exit__(_PassCutShort, cut, None)


def _written(
    source: reactivex.Observable[Batch],
    folder: Path,
    lineage: dict[str, Any] | None,
    written: list[dict[str, Any] | None],
) -> reactivex.Observable[Batch]:
    """``source``, writing every batch to ``folder`` before passing it on.

    The folder appears when the pass completes; an error, a failed write or a
    disposal before that deletes what was written, and nothing appears. Passes of one
    run can overlap (validation while ``steps_per_epoch`` keeps the training pass open):
    the first to complete writes the folder and adds its ``lineage`` to ``written`` (the
    run's list); the others of that lineage then stop writing, deleting what they wrote,
    and pass their batches on.
    """

    def subscribe(
        observer: abc.ObserverBase[Batch], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        writer: FolderWriter | None = FolderWriter(folder, lineage)
        passing = False  # another pass of the run wrote the folder: only pass batches on
        lock = threading.Lock()  # a disposal on another thread waits for the write
        upstream = SingleAssignmentDisposable()

        def on_next(batch: Batch) -> None:
            nonlocal writer, passing
            failure: StageError | None = None
            with lock:
                if writer is not None and lineage in written:
                    writer.abort()
                    writer, passing = None, True
                if writer is None and not passing:  # disposed, or a write failed
                    return
                if writer is not None:
                    try:
                        writer.write(batch)
                    except StageError as error:
                        writer.abort()
                        writer, failure = None, error
            if failure is not None:
                upstream.dispose()
                observer.on_error(failure)
                return
            observer.on_next(batch)

        def on_error(error: Exception) -> None:
            nonlocal writer, passing
            with lock:
                if writer is None and not passing:
                    return
                if writer is not None:
                    writer.abort()
                writer, passing = None, False
            observer.on_error(error)

        def on_completed() -> None:
            nonlocal writer, passing
            failure: Exception | None = None
            with lock:
                if writer is None and not passing:
                    return
                done, writer, passing = writer, None, False
                if done is not None and lineage in written:  # another pass completed first
                    done.abort()
                elif done is not None:
                    try:
                        done.commit()
                    except Exception as error:
                        failure = error
                    else:
                        written.append(lineage)
            if failure is not None:
                observer.on_error(failure)
                return
            observer.on_completed()

        def dispose() -> None:
            nonlocal writer, passing
            upstream.dispose()
            with lock:
                if writer is not None:
                    writer.abort()
                writer, passing = None, False

        try:
            upstream.disposable = source.subscribe(
                on_next, on_error, on_completed, scheduler=scheduler
            )
        except BaseException:
            dispose()
            raise
        return Disposable(dispose)

    return reactivex.create(subscribe)


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
    reading or processing again: the whole data set stays in memory for the run. With
    ``path``, the first complete pass is written to that folder and every later pass,
    in this run or any later one, replays it from disk. The folder is written and read
    a batch at a time, so a disk cache keeps no batches in memory (only their metadata):
    each batch is written (one file per batch, in a temporary folder beside ``path``)
    before it is passed on, and the folder appears at ``path``, complete, only when the
    pass completes; a replay loads one batch file at a time. A pass cut short (an
    error, a failed write, ``access.take`` downstream) is not kept: what it wrote is
    deleted. (A process killed mid-pass may leave a ``.<name>.*.partial`` folder beside
    ``path``; it never passes for a cache, and can be deleted.) Passes of a run may
    overlap (validation while ``train.fit(steps_per_epoch=...)`` keeps the training pass
    open): the first to complete is kept, and the others stop keeping or writing theirs.

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
    written: PerRun[list[dict[str, Any] | None]] = PerRun()  # lineages the run wrote

    def operator(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
        def start(_: Any) -> reactivex.Observable[Batch]:
            if folder is not None:
                lineage = current_lineage()
                if (folder / MANIFEST).exists():
                    manifest = read_manifest(folder)
                    if not _stale(folder, manifest, lineage):
                        return generate(lambda: read_folder(folder, manifest))
                return _written(source, folder, lineage, written.setdefault([]))
            batches = kept.get()
            if batches is not None:
                replay = batches
                return generate(lambda: iter(replay))
            return _recorded(source, kept)

        return reactivex.defer(start)

    return operator
