"""The one exception hierarchy of rxpipe.

Every error rxpipe raises is a :class:`RxpipeError`; where a builtin exception already
names the kind of failure, the rxpipe error subclasses it too, so ``except ValueError``
keeps working for callers that do not know rxpipe::

    RxpipeError
    ├── ConfigError (ValueError)         a pipeline file or plugin parameter is invalid
    │   └── UnknownPluginError (LookupError)
    ├── BatchError (ValueError)          a batch is inconsistent or not what a stage expects
    ├── StageError                       a stage failed while processing data
    │   ├── BufferOverflowError          a hot source outran a bounded buffer (policy "error")
    │   ├── SkipLimitError               a stage skipped more bad records than max_skipped
    │   ├── TrainingError                training cannot go on (NaN loss, no data, ...)
    │   └── QualityGateError             an evaluation metric missed its threshold
    ├── AccountingError                  samples read != delivered + dropped + failed
    ├── PipelineCancelled                the run was disposed or interrupted
    ├── BundleError (ValueError)         a model bundle is missing, incomplete or unreadable
    └── PredictionInputError (ValueError)  prediction input does not fit the model's inputs

Messages say what was expected, what was received and where (stage, sample ids, file,
config field), in the form ``"...: expected X. Received: Y"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "AccountingError",
    "BatchError",
    "BufferOverflowError",
    "BundleError",
    "ConfigError",
    "PipelineCancelled",
    "PredictionInputError",
    "QualityGateError",
    "RxpipeError",
    "SkipLimitError",
    "StageError",
    "TrainingError",
    "UnknownPluginError",
]

_MAX_IDS_SHOWN = 8


def plain_ids(ids: Sequence[object]) -> tuple[object, ...]:
    """``ids`` as plain Python values (NumPy's ``np.int64(5)`` as ``5``).

    Example:
        >>> import numpy as np
        >>> plain_ids(np.array([5, 7]))
        (5, 7)
    """
    return tuple(i.item() if hasattr(i, "item") else i for i in ids)


def describe_value(value: object) -> str:
    """A value for an error message: its repr in one line of at most 80 characters, and
    its type.

    Example:
        >>> describe_value("ten"), describe_value(list(range(100)))[-30:]
        ("'ten' (str)", ', 17, 18, 19, 20, 21... (list)')
    """
    text = " ".join(repr(value).split())
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({type(value).__name__})"


def format_names(names: Sequence[str], limit: int = 10, *, quoted: bool = True) -> str:
    """Names for an error message (columns, keys, files), the first ``limit`` of them.

    Example:
        >>> format_names(["a", "b", "c"], 2), format_names(["a", "b"], quoted=False)
        ("'a', 'b' and 1 more", 'a, b')
    """
    shown = ", ".join(map(repr, names[:limit]) if quoted else names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def format_ids(ids: Sequence[object]) -> str:
    """Render sample ids for an error message, eliding long lists.

    Example:
        >>> format_ids([1, 2, 3])
        '[1, 2, 3]'
    """
    shown = ", ".join(repr(i) for i in list(ids)[:_MAX_IDS_SHOWN])
    more = len(ids) - _MAX_IDS_SHOWN
    return f"[{shown}{f', ... ({more} more)' if more > 0 else ''}]"


class RxpipeError(Exception):
    """Base class of every error rxpipe raises.

    Attributes:
        run_dir: the run directory of the run that failed with this error, when it came
            out of :meth:`rxpipe.Pipeline.run` (``None`` otherwise): its run.json, events
            and checkpoints, e.g. to resume from.
    """

    run_dir: Path | None = None


class ConfigError(RxpipeError, ValueError):
    """A pipeline file or plugin parameter is invalid.

    Attributes:
        path: where the bad value is, e.g. ``plugins[3].epochs`` (empty if not known).
    """

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class UnknownPluginError(ConfigError, LookupError):
    """A plugin name is not in the registry.

    Attributes:
        name: the name asked for.
        suggestions: the closest registered names.
    """

    def __init__(self, name: str, suggestions: Sequence[str], path: str = "") -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(
            f"expected a registered plugin name (see `rxpipe plugins`). Received: "
            f"{name!r}, an unknown plugin.{hint}",
            path,
        )


class BatchError(RxpipeError, ValueError):
    """A batch is inconsistent, or not what a stage expects.

    Attributes:
        sample_ids: the samples at fault, when the stage knows them (a stage's error then
            names these, not every sample of the batch).
    """

    def __init__(self, message: str, sample_ids: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.sample_ids = plain_ids(sample_ids)


class StageError(RxpipeError):
    """A stage failed while processing data.

    Attributes:
        stage: the name of the failing stage (e.g. ``process.normalize``).
        sample_ids: ids of the samples being processed when it failed (may be empty).
        cause: the original exception (also chained as ``__cause__``).
    """

    def __init__(
        self,
        stage: str,
        message: str,
        sample_ids: Sequence[object] = (),
        cause: BaseException | None = None,
    ) -> None:
        self.stage = stage
        self.detail = message
        self.sample_ids = plain_ids(sample_ids)
        self.cause = cause
        where = f" (samples {format_ids(self.sample_ids)})" if self.sample_ids else ""
        super().__init__(f"stage {stage!r} failed{where}: {message}")
        if cause is not None:
            self.__cause__ = cause

    def relabel(self, stage: str) -> StageError:
        """The same error reported for ``stage`` (a pipeline's unique name for the stage)."""
        if stage == self.stage:
            return self
        error = type(self)(stage, self.detail, self.sample_ids, self.cause)
        error.__traceback__ = self.__traceback__
        return error

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the structured arguments when the error crosses a process boundary.
        return (type(self), (self.stage, self.detail, self.sample_ids))


class BufferOverflowError(StageError):
    """A hot source produced faster than a bounded buffer with policy ``"error"`` drains."""


class SkipLimitError(StageError):
    """A stage with ``on_error="skip"`` skipped more samples than its ``max_skipped``.

    ``sample_ids`` are the ids of every sample the stage skipped in that pass.
    """


class TrainingError(StageError):
    """Training cannot go on, e.g. the loss became NaN or infinite."""


class QualityGateError(StageError):
    """An evaluation metric missed the threshold the pipeline requires."""


class AccountingError(RxpipeError):
    """Samples read do not equal samples delivered + dropped + failed (a bug in a stage)."""


class PipelineCancelled(RxpipeError):
    """The run was disposed or interrupted (Ctrl-C) before it finished."""


class BundleError(RxpipeError, ValueError):
    """A model bundle (``deploy.export``'s output) is missing, incomplete or unreadable."""


class PredictionInputError(RxpipeError, ValueError):
    """Prediction input (JSON rows, arrays, files) does not fit the model's inputs.

    The server answers it with HTTP 400 and the message, which names the input, what
    was expected and what was received.
    """


def is_configuration_error(error: BaseException) -> bool:
    """Whether ``error`` is a :class:`ConfigError`, or a stage's error caused by one (an
    option only the running stage could check, e.g. a file's column names, or a resumed
    checkpoint of another model).

    Example:
        >>> is_configuration_error(StageError("s", "boom", cause=ConfigError("bad")))
        True
    """
    return isinstance(error, ConfigError) or (
        isinstance(error, StageError) and isinstance(error.cause, ConfigError)
    )
