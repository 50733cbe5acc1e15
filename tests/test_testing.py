"""Tests for rxpipe.testing.check_contract: a stage must complete once its input has."""

from __future__ import annotations

import time
from typing import Any

import pytest
import reactivex
from reactivex import abc
from reactivex import operators as ops
from reactivex.subject import Subject

from rxpipe import Batch, Stage
from rxpipe.testing import check_contract

pytestmark = pytest.mark.usefixtures("no_thread_leak")


def swallow_completion(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    """A custom reactivex.create that forgets on_completed."""

    def subscribe(observer: abc.ObserverBase[Batch], scheduler: Any = None) -> abc.DisposableBase:
        return source.subscribe(observer.on_next, observer.on_error, scheduler=scheduler)

    return reactivex.create(subscribe)


def filter_into_subject(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    """ops.filter feeding a subject that is never completed."""

    def subscribe(observer: abc.ObserverBase[Batch], scheduler: Any = None) -> abc.DisposableBase:
        out: Subject[Batch] = Subject()
        mine = out.subscribe(observer)
        upstream = source.pipe(ops.filter(lambda b: b.size > 0)).subscribe(
            out.on_next, out.on_error
        )
        return reactivex.disposable.CompositeDisposable(mine, upstream)

    return reactivex.create(subscribe)


def ignore_input(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
    """Never subscribes its input, never emits, never ends."""
    return reactivex.never()


@pytest.mark.parametrize(
    ("stage", "name"),
    [(swallow_completion, "custom.swallow"), (filter_into_subject, "custom.filtered")],
    ids=["create", "filter_subject"],
)
def test_a_stage_that_swallows_on_completed_fails_naming_it(stage: Any, name: str) -> None:
    """The check fails about `timeout` s after the input completed, naming the stage, the
    rule, and what came out."""
    started = time.monotonic()
    with pytest.raises(AssertionError) as info:
        check_contract(lambda: Stage(name, stage), timeout=0.3)
    assert str(info.value) == (
        f"{name}: expected on_completed within 0.3 s after its input completed (a stage "
        "must call on_completed after its input completes). Received: 3 item(s) out and no "
        "on_completed 0.3 s after its input completed"
    )
    assert 0.3 <= time.monotonic() - started < 3.0


def test_a_stage_that_never_reads_its_input_fails_naming_it() -> None:
    """A stage whose input never completes is told apart from one that swallows it."""
    with pytest.raises(AssertionError) as info:
        check_contract(lambda: Stage("custom.deaf", ignore_input), timeout=0.2)
    assert str(info.value) == (
        "custom.deaf: expected to read its input to the end and complete. Received: neither "
        "on_completed nor on_error within 0.2 s, 0 item(s) out and its input not read to "
        "the end"
    )


def test_a_stage_completing_shortly_after_its_input_passes() -> None:
    """Completing on another thread a moment after the input (here 0.1 s) is within the rule."""
    check_contract(lambda: Stage("custom.late", ops.delay(0.1)), streaming=False, timeout=2.0)


def test_the_stages_own_error_is_raised_as_it_is() -> None:
    """A stage that fails on the check's data raises its own error, not a contract failure."""
    boom = ValueError("boom")

    def fails(source: reactivex.Observable[Batch]) -> reactivex.Observable[Batch]:
        return source.pipe(ops.flat_map(lambda _: reactivex.throw(boom)))

    with pytest.raises(ValueError, match="^boom$") as info:
        check_contract(lambda: Stage("custom.fails", fails), timeout=1.0)
    assert info.value is boom
