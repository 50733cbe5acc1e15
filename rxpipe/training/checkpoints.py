"""Per-epoch checkpoints: model, optimizer, epoch and history, for resuming a killed run."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rxpipe.context import atomic_write
from rxpipe.errors import ConfigError

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
    weights. ``state.json`` (epoch, seed, history, steps per epoch, and what the trainer
    adds: whether training stopped early, the global step, what the model and optimizer
    look like) is written last and atomically, so it only ever names a checkpoint that is
    complete; a run killed mid-save resumes from the previous one (hence ``keep`` >= 2:
    the older checkpoints are deleted).

    With early stopping's ``restore_best_weights``, the best epoch's weights are kept
    beside the checkpoints (``best-<epoch>.npz``; ``state.json`` names the epoch as
    ``best_epoch``), so a resumed run can still end with them.

    Args:
        directory: where checkpoints go (``<run dir>/checkpoints``).
        model: the Keras model.
        optimizer: its optimizer.
        keep: how many checkpoints to keep (the last ``keep`` epochs').

    Example:
        >>> import tempfile, keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> optimizer = keras.optimizers.SGD()
        >>> optimizer.build(model.trainable_variables)
        >>> checkpoints = EpochCheckpoints(Path(tempfile.mkdtemp()), model, optimizer)
        >>> _ = checkpoints.save(1, {"seed": 0, "history": [{"loss": 1.0}]})
        >>> checkpoints.restore(checkpoints.read_state())["epoch"]
        1
    """

    def __init__(self, directory: Path, model: Any, optimizer: Any, keep: int = 2) -> None:
        import tensorflow as tf

        self.directory = directory
        self._checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, seed_states=seed_states(model)
        )
        self._manager = tf.train.CheckpointManager(self._checkpoint, str(directory), keep)
        self._best: int | None = None  # the epoch whose weights are kept as the best

    @property
    def state_file(self) -> Path:
        """The file naming the last complete checkpoint."""
        return self.directory / "state.json"

    def save(
        self,
        epoch: int,
        state: Mapping[str, Any],
        best_weights: Sequence[np.ndarray[Any, Any]] | None = None,
    ) -> str:
        """Save the checkpoint of a completed ``epoch``; return its path prefix.

        Args:
            epoch: the epoch just completed (1 for the first).
            state: what ``state.json`` records besides the epoch and the checkpoint's
                name (JSON values: seed, history, ...).
            best_weights: the weights of this epoch, when it is early stopping's new best
                (``model.get_weights()``); the last ones given stay named until then.
        """
        path: str = self._manager.save(checkpoint_number=epoch)
        previous = self._best
        if best_weights is not None:
            self._best = epoch
            with atomic_write(self._best_file(epoch)) as tmp, tmp.open("wb") as file:
                np.savez(file, *best_weights)
        record = {"epoch": epoch, "checkpoint": Path(path).name, **state}
        if self._best is not None:
            record["best_epoch"] = self._best
        with atomic_write(self.state_file) as tmp:
            tmp.write_text(json.dumps(record, indent=2))
        if previous is not None and previous != self._best:  # state.json no longer names it
            self._best_file(previous).unlink(missing_ok=True)
        return path

    def _best_file(self, epoch: int) -> Path:
        return self.directory / f"best-{epoch}.npz"

    def read_state(self) -> dict[str, Any] | None:
        """The last complete checkpoint's ``state.json``, or ``None`` if there is none."""
        if not self.state_file.exists():
            return None
        state: dict[str, Any] = json.loads(self.state_file.read_text())
        return state

    def restore(self, state: dict[str, Any]) -> dict[str, Any]:
        """Restore the checkpoint ``state`` (from :meth:`read_state`) names; return ``state``.

        Every variable of the model, the optimizer and the random-number generators must
        get a value from the checkpoint (values the checkpoint has beyond them, e.g. the
        slots of another optimizer, are not checked here: compare ``state`` first).

        Raises:
            ConfigError: naming ``resume_from``, if the checkpoint does not fit the model
                or the optimizer (a variable missing or of another shape).
        """
        path = self.directory / state["checkpoint"]
        try:
            self._checkpoint.restore(str(path)).assert_existing_objects_matched()
        except (AssertionError, ValueError, TypeError) as error:
            raise ConfigError(
                f"expected a checkpoint of this run's model and optimizer. Received: "
                f"{str(path)!r}, which does not fit them: {str(error).splitlines()[0]}",
                "resume_from",
            ) from error
        self._best = state.get("best_epoch")
        return state

    def best_weights(self) -> tuple[int, list[np.ndarray[Any, Any]]] | None:
        """The best epoch the restored state names and its weights, or ``None``."""
        if self._best is None or not self._best_file(self._best).is_file():
            return None
        with np.load(self._best_file(self._best)) as saved:
            return self._best, [saved[f"arr_{i}"] for i in range(len(saved.files))]
