"""``deploy`` plugins: export a trained model for serving (Pipcook's modelDeploy)."""

from ._export import export

__all__ = ["export"]
