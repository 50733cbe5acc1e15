"""A rich progress bar on the terminal: epochs, steps, loss, and a line per epoch."""

from __future__ import annotations

from typing import Any

from rxpipe.events import (
    ArtifactSaved,
    EpochEnded,
    EvaluationCompleted,
    Event,
    RunCompleted,
    RunFailed,
    ThroughputSnapshot,
    TrainProgress,
)


def _format_logs(logs: Any) -> str:
    return "  ".join(f"{k}={v:.4f}" for k, v in logs.items())


class ProgressBar:
    """Show training progress with rich; started lazily, stopped by :meth:`close`.

    Args:
        console: the rich console to draw on (default: standard error).
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._console = console if console is not None else Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        )
        self._task: Any = None
        self._overall: Any = None
        self._stages: Any = None
        self._epoch = -1

    def _start(self, epochs: int) -> None:
        if self._overall is None:
            self._progress.start()
            self._overall = self._progress.add_task("training", total=epochs, loss="")

    def __call__(self, event: Event) -> None:
        if isinstance(event, TrainProgress):
            self._start(event.epochs)
            if event.epoch != self._epoch:
                if self._task is not None:
                    self._progress.remove_task(self._task)
                self._epoch = event.epoch
                self._task = self._progress.add_task(
                    f"epoch {event.epoch}/{event.epochs}", total=event.steps, loss=""
                )
            self._progress.update(self._task, completed=event.step, loss=f"loss {event.loss:.4f}")
        elif isinstance(event, EpochEnded):
            self._start(event.epochs)
            if self._task is not None:
                self._progress.remove_task(self._task)
                self._task = None
            self._progress.update(
                self._overall, completed=event.epoch, loss=f"loss {event.logs.get('loss', 0):.4f}"
            )
            self._console.print(
                f"epoch {event.epoch}/{event.epochs}  {_format_logs(event.logs)}  "
                f"({event.samples_per_s:,.0f} samples/s)"
            )
        elif isinstance(event, ThroughputSnapshot):
            self.show_throughput(event)
        elif isinstance(event, EvaluationCompleted):
            shown = {k: v for k, v in event.metrics.items() if isinstance(v, float)}
            self._console.print(f"evaluation on {event.split}: {_format_logs(shown)}")
        elif isinstance(event, ArtifactSaved):
            self._console.print(f"saved {event.name}: {event.path}")
        elif isinstance(event, RunCompleted | RunFailed):
            self.close()

    def show_throughput(self, event: ThroughputSnapshot) -> None:
        """Show the snapshot as a one-line stage summary below the bars."""
        if not event.stages:
            return
        if self._stages is None:
            self._progress.start()
            self._stages = self._progress.add_task("stages", total=None, loss="")
        self._progress.update(self._stages, loss=event.summary())

    def close(self) -> None:
        """Stop the live display (and its refresh thread)."""
        self._progress.stop()
