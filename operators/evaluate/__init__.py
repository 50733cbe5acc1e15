"""``evaluate`` plugins: measure a trained model on a held-out split (Pipcook's modelEvaluate)."""

from ._classification import classification
from ._regression import regression

__all__ = ["classification", "regression"]
