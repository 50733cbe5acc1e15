"""rxpipe.flow's public namespace stays honest and documented."""

from __future__ import annotations

import inspect
import sys

import rxpipe.flow


def test_all_is_sorted_and_matches_public_names() -> None:
    """rxpipe.flow.__all__ is sorted and lists exactly its public, non-module names."""
    assert rxpipe.flow.__all__ == sorted(rxpipe.flow.__all__)
    public = {
        name
        for name, value in vars(rxpipe.flow).items()
        if not name.startswith("_") and not isinstance(value, type(sys))
    }
    assert public == set(rxpipe.flow.__all__)


def test_every_exported_function_and_class_has_an_example() -> None:
    """Every exported operator and class documents itself with an example."""
    for name in rxpipe.flow.__all__:
        value = getattr(rxpipe.flow, name)
        if inspect.isfunction(value) and name not in {"instrument", "iterate"}:
            assert ">>>" in (value.__doc__ or ""), name
        elif inspect.isclass(value):
            assert value.__doc__, name
