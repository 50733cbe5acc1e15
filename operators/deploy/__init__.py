"""``deploy`` plugins: the self-contained model bundle for serving (Pipcook's modelDeploy)."""

from ._export import export, write_bundle

__all__ = ["export", "write_bundle"]
