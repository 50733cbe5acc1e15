"""Seeds of the access plugins are checked at construction, naming the field."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from rxpipe import ConfigError
from rxpipe.operators import access
from rxpipe.testing import collect, from_arrays

PLUGINS: dict[str, Callable[[int], object]] = {
    "access.split": lambda seed: access.split(seed=seed),
    "access.split (stratified)": lambda seed: access.split(seed=seed, stratify=True),
    "access.shuffle": lambda seed: access.shuffle(seed=seed),
    "access.shard": lambda seed: access.shard(0, 2, seed=seed),
}


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_seeds_out_of_range_fail_at_construction(plugin: str, seed: int) -> None:
    """A negative or too large seed is a ConfigError naming <plugin>.seed, not a failed run."""
    field = plugin.split()[0] + ".seed"
    with pytest.raises(ConfigError) as info:
        PLUGINS[plugin](seed)
    assert str(info.value) == (
        f"{field}: expected an integer from 0 to 2**32 - 1. Received: {seed!r}"
    )


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_numpy_integer_seeds_in_range_run(plugin: str) -> None:
    """The largest seed, given as a NumPy integer, is accepted and runs."""
    stage = PLUGINS[plugin](np.uint32(2**32 - 1))  # type: ignore[arg-type]
    source = from_arrays(np.zeros((10, 1)), np.arange(10) % 2, batch_size=5)
    out = collect(source.pipe(stage))  # type: ignore[arg-type]
    assert sum(b.size for b in out) <= 10
