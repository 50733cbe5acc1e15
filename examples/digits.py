"""The digits pipeline of examples/digits.toml, composed in Python, with an event subscriber.

Run it with ``.venv/bin/python examples/digits.py [EPOCHS]``.
"""

from __future__ import annotations

import sys

import rxpipe
from rxpipe.operators import access, collect, deploy, evaluate, models, process, train


def build(
    epochs: int = 15, runs_dir: str = "runs", min_accuracy: float | None = 0.95
) -> rxpipe.Pipeline:
    """The digits pipeline: 8×8 images → small CNN → evaluation → exported model."""
    return rxpipe.Pipeline(
        collect.digits(),
        access.split(train=0.8, validation=0.1, test=0.1),
        access.shuffle(buffer_size=2048),
        access.batch(64),
        process.normalize(),
        models.cnn(filters=(32, 64), dense=128),
        train.fit(epochs=epochs, learning_rate=0.002),
        evaluate.classification(min_accuracy=min_accuracy),
        deploy.export(),
        name="digits",
        seed=0,
        runs_dir=runs_dir,
    )


def report(event: rxpipe.Event) -> None:
    """Print one line per finished epoch and the evaluation result."""
    if isinstance(event, rxpipe.EpochEnded):
        print(
            f"epoch {event.epoch}: loss={event.logs['loss']:.3f} "
            f"val_accuracy={event.logs['val_accuracy']:.3f}"
        )
    elif isinstance(event, rxpipe.EvaluationCompleted):
        print(f"{event.split} accuracy: {event.metrics['accuracy']:.4f}")


def main(epochs: int = 15) -> rxpipe.RunResult:
    """Run the pipeline, printing progress from its events."""
    pipeline = build(epochs)
    pipeline.events.subscribe(report)
    result = pipeline.run(progress=False)
    print(f"model saved to: {result.artifacts['model']}")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
