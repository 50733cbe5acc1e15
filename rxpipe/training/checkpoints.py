"""Per-epoch checkpoints: model, optimizer, epoch and history, for resuming a killed run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rxpipe.context import atomic_write

__all__ = ["EpochCheckpoints", "seed_states"]


def seed_states(model: Any) -> list[Any]:
    """The state variables of ``model``'s random-number generators, in layer order.

    Keras 3 layers draw dropout masks (and random augmentations) from a
    ``keras.random.SeedGenerator`` whose state advances at every call; ``model.variables``
    holds these states besides ``model.weights``, but a ``tf.train.Checkpoint`` of the
    model does not track them.

    Example:
        >>> import keras
        >>> inputs = keras.Input((4,))
        >>> model = keras.Model(inputs, keras.layers.Dropout(0.5)(keras.layers.Dense(2)(inputs)))
        >>> [v.name for v in seed_states(model)]
        ['seed_generator_state']
    """
    seen = {id(w) for w in model.weights}
    states = []
    for variable in model.variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            states.append(variable)
    return states


class EpochCheckpoints:
    """Saves a checkpoint after every completed epoch under ``directory``.

    A checkpoint holds the model's and the optimizer's variables, the state of the
    model's random-number generators (the ``keras.random.SeedGenerator`` of each dropout
    or augmentation layer), the epoch, and the seed; the data order needs nothing more,
    since seeded stages draw it from (seed, epoch). So a resumed run draws the same
    dropout masks as an uninterrupted one and, with deterministic ops, ends with the same
    weights. ``state.json`` (epoch, seed, history, steps per epoch) is written last and
    atomically, so it only ever names a checkpoint that is complete; a run killed mid-save
    resumes from the previous one (hence ``keep`` >= 2: the older checkpoints are deleted).

    Args:
        directory: where checkpoints go (``<run dir>/checkpoints``).
        model: the Keras model.
        optimizer: its optimizer.
        keep: how many checkpoints to keep (the last ``keep`` epochs').
    """

    def __init__(self, directory: Path, model: Any, optimizer: Any, keep: int = 2) -> None:
        import tensorflow as tf

        self.directory = directory
        self._checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, seed_states=seed_states(model)
        )
        self._manager = tf.train.CheckpointManager(self._checkpoint, str(directory), keep)

    @property
    def state_file(self) -> Path:
        """The file naming the last complete checkpoint."""
        return self.directory / "state.json"

    def save(
        self,
        epoch: int,
        seed: int,
        history: list[dict[str, float]],
        steps_per_epoch: int | None = None,
    ) -> str:
        """Save the checkpoint of a completed ``epoch``; return its path prefix."""
        path: str = self._manager.save(checkpoint_number=epoch)
        state = {
            "epoch": epoch,
            "seed": seed,
            "checkpoint": Path(path).name,
            "history": history,
            "steps_per_epoch": steps_per_epoch,
        }
        with atomic_write(self.state_file) as tmp:
            tmp.write_text(json.dumps(state, indent=2))
        return path

    def restore(self) -> dict[str, Any] | None:
        """Restore the last complete checkpoint; return its state, or ``None`` if there is none."""
        if not self.state_file.exists():
            return None
        state: dict[str, Any] = json.loads(self.state_file.read_text())
        self._checkpoint.restore(str(self.directory / state["checkpoint"])).expect_partial()
        return state
