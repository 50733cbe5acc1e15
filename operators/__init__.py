"""The plugin library, imported as ``rxpipe.operators``: one sub-package per plugin kind.

Importing it registers every built-in plugin with :data:`rxpipe.registry`. None of the
modules imports TensorFlow at import time.

Example:
    >>> from rxpipe.operators import access, collect, process
    >>> stages = [collect.digits(), access.split(), access.batch(64), process.normalize()]
"""

from . import access, collect, deploy, evaluate, models, process, train

__all__ = ["access", "collect", "deploy", "evaluate", "models", "process", "train"]
