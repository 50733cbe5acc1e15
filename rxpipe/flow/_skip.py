"""Bad records: apply a function to a batch, skipping the samples it fails on.

With ``on_error="skip"``, a batch the function raises on is retried one sample at a
time; the samples that still fail are skipped (with their error as the reason), the
others go on as one batch. A failure therefore costs one call per sample of that batch,
and a healthy batch costs nothing extra. Items that are not batches, and functions that
do not return batches, are skipped whole.

This module runs in worker processes too, so it imports little.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from rxpipe.batch import Batch
from rxpipe.errors import ConfigError, SkipLimitError

if TYPE_CHECKING:
    from rxpipe.flow._tally import Tally

__all__ = ["NOTHING", "OnError", "Outcome", "SkipGuard", "apply", "check_policy", "describe"]

OnError: TypeAlias = Literal["raise", "skip"]
"""What a stage does when its function fails on a batch: fail the run, or skip the bad samples."""


class _Nothing:
    """The type of :data:`NOTHING`; a singleton, also across processes."""

    def __repr__(self) -> str:
        return "NOTHING"

    def __reduce__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()
"""The output of an item that was skipped whole."""

Outcome: TypeAlias = tuple[Any, tuple[tuple[tuple[Any, ...], str], ...], bool]
"""``(output or NOTHING, ((skipped ids, reason), ...), whole item skipped)``."""

_CLEAN: tuple[tuple[tuple[Any, ...], str], ...] = ()


def describe(error: BaseException) -> str:
    """An error as ``"TypeName: message"``.

    Example:
        >>> describe(ValueError("bad pixel"))
        'ValueError: bad pixel'
    """
    return f"{type(error).__name__}: {error}"


def check_policy(on_error: str, max_skipped: int | None) -> None:
    """Validate ``on_error`` and ``max_skipped``.

    Raises:
        ConfigError: naming the parameter, what was expected and what was received.
    """
    if on_error not in get_args(OnError):
        raise ConfigError(f"on_error: expected 'raise' or 'skip'. Received: {on_error!r}")
    if max_skipped is not None:
        if isinstance(max_skipped, bool) or not isinstance(max_skipped, int) or max_skipped < 0:
            raise ConfigError(
                f"max_skipped: expected an int >= 0 or None. Received: {max_skipped!r}"
            )
        if on_error != "skip":
            raise ConfigError(
                "max_skipped: expected only with on_error='skip'. "
                f"Received: max_skipped={max_skipped!r} with on_error={on_error!r}"
            )


def _ids(item: Any) -> tuple[Any, ...]:
    return tuple(item.ids.tolist()) if isinstance(item, Batch) else ()


def apply(fn: Callable[[Any], Any], item: Any, skip: bool) -> Outcome:
    """``fn(item)``; with ``skip``, retry a failing batch per sample and skip the bad ones.

    Raises:
        Exception: ``fn``'s error, when not ``skip``.

    Example:
        >>> import numpy as np
        >>> from rxpipe.batch import DatasetMetadata, FeatureSpec
        >>> meta = DatasetMetadata("toy", FeatureSpec((), "int64"))
        >>> batch = Batch(np.array([1, 0, 2]), None, np.array([10, 11, 12]), meta)
        >>> def invert(b):
        ...     if (b.features == 0).any(): raise ZeroDivisionError("zero")
        ...     return b.evolve(features=1 / b.features)
        >>> out, skipped, whole = apply(invert, batch, skip=True)
        >>> out.ids.tolist(), skipped, whole
        ([10, 12], (((11,), 'ZeroDivisionError: zero'),), False)
    """
    try:
        return fn(item), _CLEAN, False
    except Exception as error:
        if not skip:
            raise
        first = error
    if not isinstance(item, Batch) or item.size <= 1:
        return NOTHING, ((_ids(item), describe(first)),), True
    good: list[Any] = []
    bad: dict[str, list[Any]] = {}
    for index in range(item.size):
        sample = item.select(slice(index, index + 1))
        try:
            good.append(fn(sample))
        except Exception as error:
            bad.setdefault(describe(error), []).extend(sample.ids.tolist())
    if good and not all(isinstance(out, Batch) for out in good):
        return NOTHING, ((_ids(item), describe(first)),), True
    skipped = tuple((tuple(ids), reason) for reason, ids in bad.items())
    if not good:
        return NOTHING, skipped, True
    # No sample failed alone (the batch failed as a whole): deliver the samples, skip none.
    return Batch.concat(good), skipped, False


class SkipGuard:
    """Counts one pass's skipped samples into its tally and enforces ``max_skipped``.

    Args:
        stage: the stage's name, for the error.
        tally: the pass's tally.
        max_skipped: the most samples the pass may skip (``None``: no limit).
    """

    def __init__(self, stage: str, tally: Tally, max_skipped: int | None) -> None:
        self.stage = stage
        self.tally = tally
        self.max_skipped = max_skipped

    def record(self, outcome: Outcome) -> SkipLimitError | None:
        """Count ``outcome``'s skipped samples.

        Returns:
            The error to fail the stage with, once more than ``max_skipped`` were skipped.
        """
        _, skipped, whole = outcome
        total = 0
        for ids, reason in skipped:
            total = self.tally.skip(ids, reason, whole_batch=whole, max_skipped=self.max_skipped)
            whole = False  # a batch fails once, whatever its reasons
        if self.max_skipped is None or total <= self.max_skipped:
            return None
        return SkipLimitError(
            self.stage,
            f"expected at most {self.max_skipped} skipped samples (max_skipped). "
            f"Received: {total}; the last because {skipped[-1][1]}",
            [s.sample_id for s in self.tally.skipped],
        )
