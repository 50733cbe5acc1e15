"""collect.image_folder and collect.text_folder: one subfolder per class, read lazily.

Both list the class folders when built (a missing or empty folder, a class folder
without a matching file, or a matching file directly in the root folder, where it has
no class, fails the pipeline before it runs) and again when read; files are read a
chunk at a time, classes interleaved (one file of each class in turn), so a small
shuffle buffer still sees every class. Sample ids are the files' paths relative
to the root (``"cat/001.png"``), so every error names the file.
"""

from __future__ import annotations

import codecs
import functools
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import reactivex

from rxpipe.batch import Batch, DatasetMetadata, FeatureSpec
from rxpipe.errors import ConfigError, StageError
from rxpipe.flow import append, generate
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._bad_records import BadRecords, check_on_error
from .._checks import existing_path, optional_positive_int, positive_int
from ._memo import MetadataMemo

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TEXT_EXTENSIONS = (".txt",)
_SHOWN = 3  # root files named in the error


def _extensions(plugin_name: str, value: Sequence[str]) -> tuple[str, ...]:
    items = tuple(value)
    if not items or any(not isinstance(e, str) or not e.startswith(".") for e in items):
        raise ConfigError(
            f"expected a non-empty list of file suffixes such as '.png'. Received: {list(items)}",
            f"{plugin_name}.extensions",
        )
    return tuple(e.lower() for e in items)


def _matches(path: Path, extensions: tuple[str, ...]) -> bool:
    return path.suffix.lower() in extensions and path.is_file() and not path.name.startswith(".")


@attrs.frozen
class ClassFolders:
    """What a root folder holds: class names (sorted subfolders), each class's files
    (sorted, recursive) and, if the layout ``root/<class>/<file>`` is broken, why."""

    classes: tuple[str, ...]
    files: list[list[Path]]
    problem: str | None


def class_files(root: Path, extensions: tuple[str, ...]) -> ClassFolders:
    """List ``root``'s classes and files, and check its layout.

    The layout is broken if ``root`` holds a matching file itself (it has no class, and
    leaving it out would lose it unnoticed), has no class subfolder holding a matching
    file, or a class subfolder holds none (its class could never be learned or
    predicted).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "cat").mkdir()
        >>> _ = (root / "cat" / "1.png").write_bytes(b"")
        >>> class_files(root, (".png",)).classes
        ('cat',)
        >>> _ = (root / "2.png").write_bytes(b"")
        >>> print(class_files(root, (".png",)).problem)
        expected one subfolder per class holding the .png files (.../<class>/<file>).
        Received: 1 such file directly in '...': '2.png' (move each into its class's
        subfolder, or out of '...')
    """
    loose = sorted(p.name for p in root.iterdir() if _matches(p, extensions))
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if loose:
        shown = ", ".join(repr(n) for n in loose[:_SHOWN])
        more = f", ... ({len(loose) - _SHOWN} more)" if len(loose) > _SHOWN else ""
        loose_problem = (
            f"expected one subfolder per class holding the {', '.join(extensions)} files "
            f"({root.as_posix()}/<class>/<file>). Received: {len(loose)} such "
            f"file{'s' if len(loose) > 1 else ''} directly in {str(root)!r}: {shown}{more} "
            f"(move each into its class's subfolder, or out of {str(root)!r})"
        )
        return ClassFolders(tuple(classes), [], loose_problem)
    files = [
        sorted(p for p in (root / name).rglob("*") if _matches(p, extensions)) for name in classes
    ]
    empty = [name for name, group in zip(classes, files, strict=True) if not group]
    problem: str | None = None
    if not any(files):
        problem = (
            f"expected one subfolder per class holding {', '.join(extensions)} files. "
            f"Received: {str(root)!r} with {len(classes)} subfolder(s) and no such file"
        )
    elif empty:
        problem = (
            f"expected {', '.join(extensions)} files in every class subfolder. "
            f"Received: no such file in {', '.join(repr(str(root / n)) for n in empty)} "
            "(add samples or remove the folder)"
        )
    return ClassFolders(tuple(classes), files, problem)


def _interleaved(files: list[list[Path]]) -> Iterator[tuple[Path, int]]:
    rounds = itertools.zip_longest(
        *[[(f, label) for f in group] for label, group in enumerate(files)]
    )
    for row in rounds:
        yield from (item for item in row if item is not None)


def folder_source(
    plugin_name: str,
    path: str,
    extensions: Sequence[str],
    chunk_size: int,
    limit: int | None,
    on_error: str,
    max_skipped: int | None,
    read: Any,
) -> Operator[Batch, Batch]:
    """An operator emitting its input, then the files under ``path`` read with ``read``."""
    root = existing_path(plugin_name, "path", path, kind="dir")
    suffixes = _extensions(plugin_name, extensions)
    positive_int(plugin_name, "chunk_size", chunk_size)
    optional_positive_int(plugin_name, "limit", limit)
    check_on_error(plugin_name, on_error, max_skipped)
    problem = class_files(root, suffixes).problem  # fail now, not when the run reaches it
    if problem is not None:
        raise ConfigError(problem, f"{plugin_name}.path")
    memo = MetadataMemo()

    def batches(bad: BadRecords) -> Iterator[Batch]:
        found = class_files(root, suffixes)  # the folder may have changed since
        if found.problem is not None:
            raise StageError(plugin_name, found.problem)
        classes, files = found.classes, found.files
        total = sum(len(group) for group in files)
        meta = memo(
            DatasetMetadata(
                name=root.name,
                features=FeatureSpec((), "object"),
                label_names=classes,
                split_sizes={"unsplit": total if limit is None else min(total, limit)},
            )
        )
        chosen = itertools.islice(_interleaved(files), limit)
        while chunk := list(itertools.islice(chosen, chunk_size)):
            values: list[Any] = []
            labels: list[int] = []
            ids: list[str] = []
            for file, label in chunk:
                sample_id = file.relative_to(root).as_posix()
                try:
                    values.append(read(file))
                except (OSError, ValueError) as error:
                    if isinstance(error, UnicodeDecodeError):
                        expected = (
                            f"{error.encoding.removesuffix('-sig')} text (the encoding parameter)"
                        )
                        received = (
                            f"the byte 0x{error.object[error.start]:02x} at offset {error.start}"
                        )
                    else:
                        expected = "a readable file"
                        received = f"{type(error).__name__}: {error}"
                    if not bad.skipping:
                        raise StageError(
                            plugin_name,
                            f"cannot read {str(file)!r}: expected {expected}. Received: {received}",
                            [sample_id],
                            error,
                        ) from error
                    bad.skip([sample_id], received)
                    continue
                labels.append(label)
                ids.append(sample_id)
            if ids:
                features = np.empty(len(values), dtype=object)
                features[:] = values
                yield Batch(
                    features,
                    np.asarray(labels, dtype=np.int64),
                    np.asarray(ids, dtype=object),
                    meta,
                )

    def own() -> reactivex.Observable[Batch]:
        # Subscribed now: the pass's accounting is current.
        return generate(functools.partial(batches, BadRecords(plugin_name, on_error, max_skipped)))

    return append(own)


def _read_bytes(file: Path) -> bytes:
    return file.read_bytes()


@plugin("collect.image_folder")
def image_folder(
    path: str,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    chunk_size: int = 64,
    limit: int | None = None,
    on_error: str = "raise",
    max_skipped: int | None = None,
) -> Operator[Batch, Batch]:
    """Images in one subfolder per class (PNG, JPEG, BMP, GIF), as encoded bytes.

    Emits the files' bytes undecoded (an object array), labels from the subfolders
    (sorted names, index = label), ids = paths relative to ``path``. Decode them with
    ``process.decode_image``, which the exported model repeats on raw image bytes.

    Args:
        path: the root folder (``path/<class>/<file>``; nested folders are read too);
            every class folder must hold at least one file, and no image may lie
            directly in ``path`` (it would have no class).
        extensions: file suffixes to read (case-insensitive).
        chunk_size: files per emitted batch.
        limit: read only the first ``limit`` files (for quick runs).
        on_error: ``"raise"``: an unreadable file fails the run naming it; ``"skip"``:
            it is skipped and reported.
        max_skipped: with ``"skip"``, fail after this many unreadable files.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("cat", "dog"):
        ...     (root / name).mkdir()
        ...     _ = (root / name / "a.png").write_bytes(b"not decoded here")
        >>> from rxpipe.testing import collect
        >>> [batch] = collect(reactivex.empty().pipe(image_folder(str(root))))
        >>> batch.ids.tolist(), batch.labels.tolist(), batch.metadata.label_names
        (['cat/a.png', 'dog/a.png'], [0, 1], ('cat', 'dog'))
    """
    return folder_source(
        "collect.image_folder",
        path,
        extensions,
        chunk_size,
        limit,
        on_error,
        max_skipped,
        _read_bytes,
    )


@plugin("collect.text_folder")
def text_folder(
    path: str,
    extensions: Sequence[str] = TEXT_EXTENSIONS,
    encoding: str = "utf-8",
    chunk_size: int = 256,
    limit: int | None = None,
    on_error: str = "raise",
    max_skipped: int | None = None,
) -> Operator[Batch, Batch]:
    """Text documents in one subfolder per class, one file per sample.

    Emits each file's text (an object array of str), labels from the subfolders (sorted
    names), ids = paths relative to ``path``. Vectorize with ``process.vectorize``.

    Args:
        path: the root folder (``path/<class>/<file>.txt``); every class folder must
            hold at least one file, and no such file may lie directly in ``path``.
        extensions: file suffixes to read (case-insensitive).
        encoding: the files' text encoding (with UTF-8, a byte order mark is dropped).
        chunk_size: files per emitted batch.
        limit: read only the first ``limit`` files.
        on_error: ``"raise"``: an unreadable or undecodable file fails the run naming
            it; ``"skip"``: it is skipped and reported.
        max_skipped: with ``"skip"``, fail after this many bad files.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "spam").mkdir()
        >>> _ = (root / "spam" / "1.txt").write_text("win money now")
        >>> from rxpipe.testing import collect
        >>> [batch] = collect(reactivex.empty().pipe(text_folder(str(root))))
        >>> batch.features.tolist(), batch.ids.tolist()
        (['win money now'], ['spam/1.txt'])
    """
    try:
        "".encode(encoding)
    except LookupError:
        raise ConfigError(
            f"expected a Python text encoding such as 'utf-8'. Received: {encoding!r}",
            "collect.text_folder.encoding",
        ) from None

    # A UTF-8 byte order mark is not part of the text.
    decode = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding

    def read_text(file: Path) -> str:
        return file.read_text(encoding=decode)

    return folder_source(
        "collect.text_folder", path, extensions, chunk_size, limit, on_error, max_skipped, read_text
    )
