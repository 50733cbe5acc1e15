"""The splits an evaluator can measure a model on, checked when the plugin is built."""

from __future__ import annotations

from rxpipe.batch import Split

from .._checks import fail

EVALUATED_SPLITS = (Split.TRAIN, Split.VALIDATION, Split.TEST)
"""Labelled splits a trained model can be measured on (``unsplit`` batches are never
trained on, and ``predict`` batches have no labels)."""


def evaluated_split(plugin: str, value: str) -> Split:
    """The :class:`~rxpipe.Split` named ``value``, if an evaluator can measure on it.

    Example:
        >>> evaluated_split("evaluate.regression", "unsplit")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: evaluate.regression.split: expected one of 'train', ...
    """
    for split in EVALUATED_SPLITS:
        if value == split.value:
            return split
    shown = ", ".join(repr(s.value) for s in EVALUATED_SPLITS)
    raise fail(plugin, "split", f"one of {shown}", value)
