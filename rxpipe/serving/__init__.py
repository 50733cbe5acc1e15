"""Serving a trained model: the model bundle, ``rxpipe predict`` and ``rxpipe serve``.

- :mod:`rxpipe.serving.bundle`: the bundle ``deploy.export`` writes, and :class:`Bundle`,
  which loads it.
- :mod:`rxpipe.serving.inputs`: JSON rows and arrays checked against the model's inputs.
- :mod:`rxpipe.serving.images`: uploads checked to be images before they are batched.
- :mod:`rxpipe.serving.batching`: :func:`micro_batch`, the Rx operator that gathers
  concurrent requests into one model call; :mod:`rxpipe.serving.batcher` runs those
  calls on the model's thread and routes each answer back to its request.
- :mod:`rxpipe.serving.app`: the ASGI application (TensorFlow Serving's REST API, a
  Pipcook-style ``/predict``, ``/healthz``, ``/stats``), behind the body size and time limits of
  :mod:`rxpipe.serving.limits`; :mod:`rxpipe.serving.server` runs it on uvicorn.
- :mod:`rxpipe.serving.predict`: ``rxpipe predict`` for files and JSON rows.

Importing this package imports neither TensorFlow nor the web stack.
"""

from rxpipe.serving.batching import micro_batch
from rxpipe.serving.bundle import Bundle, find_bundle, top_k

__all__ = ["Bundle", "find_bundle", "micro_batch", "top_k"]
