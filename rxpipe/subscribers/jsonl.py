"""Write every event as one JSON line."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rxpipe.events import Event
from rxpipe.subscribers._plain import plain


class JsonlWriter:
    """Append each event to ``path`` as a JSON object on its own line, flushed at once.

    Every line is strict JSON: numpy numbers are written as numbers, tuples as lists,
    paths as text, and NaN and infinities (a metric's, say) as ``null``.

    Example:
        >>> import tempfile, pathlib
        >>> from rxpipe.events import RunStarted
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
        >>> writer = JsonlWriter(path)
        >>> writer(RunStarted(run_id="r", seq=0, time=0.0, pipeline="p", run_dir="d"))
        >>> writer.close()
        >>> json.loads(path.read_text())["event"]
        'run_started'
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = json.dumps(plain(event.to_dict()), allow_nan=False)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()
