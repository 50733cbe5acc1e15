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
    StageStalled,
    ThroughputSnapshot,
    TrainProgress,
)


def _format_logs(logs: Any) -> str:
    return "  ".join(f"{k}={v:.4f}" for k, v in logs.items())


class ProgressBar:
    """Show training progress with rich; started lazily, stopped by :meth:`close`.

    The display is two bars (all epochs, and the current epoch's steps, each with its
    count, the loss, the elapsed and the remaining time) and, once a
    :class:`~rxpipe.events.ThroughputSnapshot` arrives, one line summarising each stage's
    throughput below them. That line is cut with an ellipsis to the terminal's width, so
    it never squeezes the bars' columns. A :class:`~rxpipe.events.StageStalled` is printed
    as a ``warning:`` line above them. The bar is itself a rich renderable:
    ``console.print(bar)`` draws the current display.

    Args:
        console: the rich console to draw on (default: standard error).

    Example:
        >>> import io
        >>> from rich.console import Console
        >>> from rxpipe.events import TrainProgress
        >>> console = Console(file=io.StringIO(), width=80, color_system=None)
        >>> bar = ProgressBar(console)
        >>> bar(TrainProgress(run_id="r", seq=0, time=0.0, epoch=1, epochs=3, step=5,
        ...                   steps=10, samples=320, loss=0.5))
        >>> console.print(bar)
        >>> bar.close()
        >>> "epoch 1/3" in console.file.getvalue()
        True
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live
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
        )
        self._task: Any = None
        self._overall: Any = None
        self._epoch = -1
        self._summary = ""
        # The Live draws this object (see __rich__), not the Progress's own Live display.
        self._live = Live(
            console=self._console,
            transient=True,
            refresh_per_second=10,
            get_renderable=self.__rich__,
        )

    def __rich__(self) -> Any:
        """The current display: the bars, then the stage summary (if any) on one line."""
        from rich.console import Group
        from rich.text import Text

        if not self._summary:
            return self._progress
        summary = Text.assemble(("stages ", "bold"), self._summary)
        summary.no_wrap = True
        summary.overflow = "ellipsis"
        return Group(self._progress, summary)

    def _start(self, epochs: int | None = None, epoch: int = 1) -> None:
        self._live.start()  # no-op once started
        if epochs is not None and self._overall is None:
            # the epochs before ``epoch`` are done: a resumed run starts past the first
            self._overall = self._progress.add_task(
                "training", total=epochs, completed=epoch - 1, loss=""
            )

    def _print(self, text: str) -> None:
        """Print ``text`` as it is: a ``[`` in a path or a metric's name is no markup, and a
        long line is not cut into lines (a path stays whole for copying, a log one line)."""
        self._console.print(text, markup=False, soft_wrap=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, TrainProgress):
            self._start(event.epochs, event.epoch)
            if event.epoch != self._epoch:
                if self._task is not None:
                    self._progress.remove_task(self._task)
                self._epoch = event.epoch
                self._task = self._progress.add_task(
                    f"epoch {event.epoch}/{event.epochs}", total=event.steps, loss=""
                )
            self._progress.update(self._task, completed=event.step, loss=f"loss {event.loss:.4f}")
        elif isinstance(event, EpochEnded):
            self._start(event.epochs, event.epoch)
            if self._task is not None:
                self._progress.remove_task(self._task)
                self._task = None
            self._progress.update(
                self._overall, completed=event.epoch, loss=f"loss {event.logs.get('loss', 0):.4f}"
            )
            self._print(
                f"epoch {event.epoch}/{event.epochs}  {_format_logs(event.logs)}  "
                f"({event.samples_per_s:,.0f} samples/s)"
            )
        elif isinstance(event, ThroughputSnapshot):
            self.show_throughput(event)
        elif isinstance(event, EvaluationCompleted):
            shown = {k: v for k, v in event.metrics.items() if isinstance(v, float)}
            self._print(f"evaluation on {event.split}: {_format_logs(shown)}")
        elif isinstance(event, ArtifactSaved):
            self._print(f"saved {event.name}: {event.path}")
        elif isinstance(event, StageStalled):
            self._print(f"warning: {event.summary()}")
        elif isinstance(event, RunCompleted | RunFailed):
            self.close()

    def show_throughput(self, event: ThroughputSnapshot) -> None:
        """Show the snapshot as a one-line stage summary below the bars."""
        if not event.stages:
            return
        self._summary = event.summary()
        self._start()

    def close(self) -> None:
        """Stop the live display (and its refresh thread)."""
        self._live.stop()
