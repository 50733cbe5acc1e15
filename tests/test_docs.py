"""The examples in docstrings run (rxpipe and rxpipe.operators)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rxpipe
import rxpipe.operators


def _modules() -> list[str]:
    names = []
    for package in (rxpipe, rxpipe.operators):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name != "rxpipe.__main__":  # running it would start the CLI
                names.append(info.name)
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    """The module's docstring examples give the output they show."""
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
