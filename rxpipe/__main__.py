"""``python -m rxpipe``: the command line."""

from rxpipe.cli import main

raise SystemExit(main())
