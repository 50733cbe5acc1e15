"""An example rxpipe plugin package: ``process.clip``, found through an entry point.

Importing this module registers the plugin (the ``@plugin`` decorator); rxpipe imports
it because the package declares it in the ``rxpipe.operators`` entry-point group.
"""

from rxpipe_example_plugins.clip import Clip, clip

__all__ = ["Clip", "clip"]
