"""``train`` plugins: turn a :class:`~rxpipe.ModelPlan` into a :class:`~rxpipe.TrainedModel`."""

from ._fit import fit

__all__ = ["fit"]
