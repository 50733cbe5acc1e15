"""Bad records and dropped samples, reported to the flow engine's per-pass accounting.

Plugins that read files or decode samples take ``on_error="raise"`` (fail the run with
an error naming the file or sample) or ``"skip"`` (drop the bad sample, count it and
report it as a :class:`~rxpipe.events.SamplesSkipped` event and in the run result),
and ``max_skipped`` (fail once more samples than that were skipped in one pass).
Operators that leave samples out on purpose (``access.shard``, ``access.skip``, the
fitting pass of a fitted processor) report them as dropped, so every sample a stage
takes in is accounted for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rxpipe.errors import ConfigError, SkipLimitError
from rxpipe.flow import Tally, current_tally

__all__ = ["BadRecords", "check_on_error"]


def check_on_error(plugin: str, on_error: str, max_skipped: int | None) -> None:
    """Validate a plugin's ``on_error`` and ``max_skipped`` parameters.

    Raises:
        ConfigError: labelled ``plugin.on_error`` or ``plugin.max_skipped``.

    Example:
        >>> check_on_error("collect.csv", "ignore", None)
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: collect.csv.on_error: expected 'raise' or 'skip'. Received: ...
    """
    if on_error not in ("raise", "skip"):
        raise ConfigError(
            f"expected 'raise' or 'skip'. Received: {on_error!r}", f"{plugin}.on_error"
        )
    if max_skipped is not None and (
        isinstance(max_skipped, bool) or not isinstance(max_skipped, int) or max_skipped < 0
    ):
        raise ConfigError(
            f"expected None or an int >= 0. Received: {max_skipped!r}", f"{plugin}.max_skipped"
        )


class BadRecords:
    """One pass's policy for bad records; create it when the operator is subscribed.

    Args:
        stage: the stage's name.
        on_error: ``"raise"`` or ``"skip"``.
        max_skipped: the most samples one pass may skip (``None``: no limit).
    """

    def __init__(self, stage: str, on_error: str, max_skipped: int | None = None) -> None:
        self.stage = stage
        self.skipping = on_error == "skip"
        self.max_skipped = max_skipped
        self.tally: Tally = current_tally(stage)
        self.count = 0

    def skip(self, ids: Sequence[Any], reason: str, *, whole_batch: bool = False) -> None:
        """Count ``ids`` as skipped for ``reason``.

        Raises:
            SkipLimitError: once more than ``max_skipped`` samples were skipped.
        """
        if not ids:
            return
        self.count = self.tally.skip(
            list(ids), reason, whole_batch=whole_batch, max_skipped=self.max_skipped
        )
        if self.max_skipped is not None and self.count > self.max_skipped:
            every = [s.sample_id for s in self.tally.skipped]
            raise SkipLimitError(
                self.stage,
                f"expected at most {self.max_skipped} skipped samples (max_skipped). "
                f"Received: {self.count}; the last because {reason}",
                every,
            )
