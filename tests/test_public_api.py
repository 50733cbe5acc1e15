"""The public namespace stays honest, and importing rxpipe stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import rxpipe


def test_all_is_sorted_and_matches_public_names() -> None:
    """rxpipe.__all__ is sorted and lists exactly the public names of the package."""
    assert rxpipe.__all__ == sorted(rxpipe.__all__)
    public = {
        name
        for name, value in vars(rxpipe).items()
        if not name.startswith("_") and not isinstance(value, type(sys))
    }
    assert public | {"__version__"} == set(rxpipe.__all__)


def test_every_exported_name_has_a_docstring() -> None:
    """Every exported class and function is documented."""
    for name in rxpipe.__all__:
        value = getattr(rxpipe, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, name


def test_import_and_help_do_not_import_tensorflow() -> None:
    """`import rxpipe`, its plugins and `rxpipe --help` leave TensorFlow unimported."""
    code = (
        "import sys, contextlib, io\n"
        "import rxpipe, rxpipe.operators\n"
        "from rxpipe.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
