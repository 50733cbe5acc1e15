"""The result of a pipeline run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from rxpipe.context import SkippedSample, StageCounts
from rxpipe.model import TrainedModel

if TYPE_CHECKING:
    import keras

__all__ = ["RunResult"]


@attrs.frozen
class RunResult:
    """What a completed run produced.

    Attributes:
        run_id: the run's id.
        run_dir: the run directory (``None`` if the run wrote no files).
        metrics: evaluation results by split, e.g. ``result.metrics["test"]["accuracy"]``.
        artifacts: complete artifacts, name → path.
        counts: per-stage accounting, by stage name.
        history: Keras-style logs of each epoch.
        outputs: the items the last stage emitted.
        duration_s: wall time of the run.
    """

    run_id: str
    run_dir: Path | None
    metrics: Mapping[str, Any]
    artifacts: Mapping[str, str]
    counts: Mapping[str, StageCounts]
    history: Sequence[Mapping[str, float]]
    outputs: Sequence[Any] = attrs.field(repr=False)
    duration_s: float

    @property
    def skipped(self) -> list[SkippedSample]:
        """The samples stages skipped as bad records (``on_error="skip"``), with reasons."""
        return [s for counts in self.counts.values() for s in counts.skipped]

    @property
    def dropped(self) -> dict[str, int]:
        """Samples dropped, by stage (buffer overflow, dropped remainders); stages with drops."""
        return {n: c.samples_dropped for n, c in self.counts.items() if c.samples_dropped}

    @property
    def trained(self) -> TrainedModel | None:
        """The last trained model the pipeline emitted, if any."""
        found = [o for o in self.outputs if isinstance(o, TrainedModel)]
        return found[-1] if found else None

    @property
    def model(self) -> keras.Model | None:
        """The last trained Keras model the pipeline emitted, if any."""
        trained = self.trained
        return None if trained is None else trained.model
