"""Tests of process.normalize: parameters checked at construction."""

from __future__ import annotations

import numpy as np
import pytest

from rxpipe import ConfigError
from rxpipe.operators import process
from rxpipe.testing import collect, from_arrays


@pytest.mark.parametrize("offset", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_offset_is_a_config_error(offset: float) -> None:
    """offset=NaN or ±inf would make every feature NaN or inf: refused, naming the field."""
    with pytest.raises(ConfigError) as info:
        process.normalize(scale=0.5, offset=offset)
    assert str(info.value) == (
        f"process.normalize.offset: expected a finite number. Received: {offset!r}"
    )


def test_a_bad_scale_names_its_field() -> None:
    """scale=0 or NaN is refused with the field's full name."""
    for scale in (0.0, float("nan")):
        with pytest.raises(ConfigError, match=r"^process\.normalize\.scale: expected a finite"):
            process.normalize(scale=scale)


def test_scale_and_offset_apply() -> None:
    """x * scale + offset, in float32."""
    [batch] = collect(
        from_arrays(np.arange(4, dtype="uint8")[:, None]).pipe(
            process.normalize(scale=0.5, offset=-1.0)
        )
    )
    assert batch.features.ravel().tolist() == [-1.0, -0.5, 0.0, 0.5]
    assert batch.features.dtype == np.float32
