"""micro_batch, in virtual time: lists close when full, when the oldest waited, or on flush."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from rxpipe.serving import micro_batch
from rxpipe.testing import collect

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)


def run(messages: list[Any], **options: Any) -> list[Any]:
    """Feed a hot source of ``messages`` through micro_batch; the recorded output."""
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(*messages)
    options.setdefault("max_size", 3)
    options.setdefault("max_wait", 5.0)
    result = scheduler.start(lambda: source.pipe(micro_batch(scheduler=scheduler, **options)))
    return list(result.messages)


def test_a_full_list_is_emitted_at_once() -> None:
    """The third item fills the list: it goes out at that tick."""
    out = run([on_next(210, "a"), on_next(211, "b"), on_next(212, "c"), on_completed(300)])
    assert out == [on_next(212, ["a", "b", "c"]), on_completed(300)]


def test_a_list_goes_when_its_oldest_item_has_waited_max_wait() -> None:
    """Two items, never full: emitted 5 ticks after the first arrived."""
    out = run([on_next(210, "a"), on_next(213, "b"), on_completed(300)])
    assert out == [on_next(215, ["a", "b"]), on_completed(300)]


def test_items_after_an_emission_start_a_new_wait() -> None:
    """The next list's wait starts at its own first item."""
    out = run([on_next(210, 1), on_next(220, 2), on_next(222, 3), on_completed(300)])
    assert out == [on_next(215, [1]), on_next(225, [2, 3]), on_completed(300)]


def test_what_is_left_after_a_full_list_keeps_its_deadline() -> None:
    """Four items at once with max_size 3: the fourth still goes at its first-arrival deadline."""
    out = run([on_next(210, i) for i in range(4)] + [on_completed(300)])
    assert out == [on_next(210, [0, 1, 2]), on_next(215, [3]), on_completed(300)]


def test_sizes_count_rows_and_never_split_an_item() -> None:
    """size_of weighs items; a list never exceeds max_size unless one item alone does."""
    messages = [on_next(210, 2), on_next(211, 2), on_next(212, 9), on_next(213, 1)]
    out = run([*messages, on_completed(300)], max_size=4, size_of=lambda n: n)
    assert out == [on_next(211, [2, 2]), on_next(212, [9]), on_next(218, [1]), on_completed(300)]


def test_zero_wait_emits_when_the_scheduler_is_free() -> None:
    """max_wait 0: each item goes at once, with whatever arrived at the same tick."""
    out = run([on_next(210, 1), on_next(220, 2), on_completed(300)], max_wait=0.0)
    assert out == [on_next(210, [1]), on_next(220, [2]), on_completed(300)]


def test_items_arriving_while_the_subscriber_is_busy_join_the_next_list() -> None:
    """While on_next runs (a model call), new items gather and go out together afterwards."""
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, "a"),
        on_next(212, "b"),
        on_next(213, "c"),
        on_next(214, "d"),
        on_completed(400),
    )
    seen: list[tuple[float, list[str]]] = []

    def model_call(batch: list[str]) -> None:
        seen.append((scheduler.clock, batch))
        scheduler.sleep(20)  # the call takes 20 ticks of virtual time

    source.pipe(micro_batch(10, 1.0, scheduler=scheduler)).subscribe(model_call)
    scheduler.start()
    assert seen == [(211.0, ["a"]), (232.0, ["b", "c", "d"])]


def test_flush_emits_what_is_held_now() -> None:
    """A flush notification sends the open list without waiting for its deadline."""
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, 1), on_next(211, 2), on_completed(900))
    flush = scheduler.create_hot_observable(on_next(220, None))
    result = scheduler.start(
        lambda: source.pipe(micro_batch(10, 500.0, flush=flush, scheduler=scheduler))
    )
    assert result.messages == [on_next(220, [1, 2]), on_completed(900)]


def test_completion_emits_what_is_held_then_completes() -> None:
    """On completion the open list goes out (in max_size pieces) before on_completed."""
    messages = [on_next(210, i) for i in range(5)]
    out = run([*messages, on_completed(211)], max_size=10)
    assert out == [on_next(211, [0, 1, 2, 3, 4]), on_completed(211)]


def test_an_error_drops_what_is_held_and_is_forwarded() -> None:
    """An upstream error reaches the subscriber; held items are not emitted."""
    error = ValueError("boom")
    out = run([on_next(210, 1), on_error(212, error)])
    assert out == [on_error(212, error)]


def test_disposing_stops_pending_emissions() -> None:
    """After disposal nothing is emitted, even when a deadline passes."""
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, 1), on_completed(900))
    result = scheduler.start(
        lambda: source.pipe(micro_batch(10, 50.0, scheduler=scheduler)), disposed=220
    )
    assert result.messages == []


def test_with_real_threads_on_the_default_scheduler() -> None:
    """On the default (timeout) scheduler, lists come out in order and complete."""
    assert collect(reactivex.of(*range(7)).pipe(micro_batch(3, 0.01))) == [
        [0, 1, 2],
        [3, 4, 5],
        [6],
    ]


@pytest.mark.parametrize(
    ("max_size", "max_wait", "message"),
    [(0, 1.0, "max_size: expected an int >= 1"), (1, -1.0, "max_wait: expected seconds >= 0")],
)
def test_invalid_settings_are_refused(max_size: int, max_wait: float, message: str) -> None:
    """A size under 1 or a negative wait raises ValueError naming the parameter."""
    with pytest.raises(ValueError, match=message):
        micro_batch(max_size, max_wait)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(1, 5)), max_size=30),
    st.integers(1, 8),
    st.integers(0, 10),
)
def test_every_item_comes_out_once_in_order_within_max_size(
    arrivals: list[tuple[int, int]], max_size: int, wait: int
) -> None:
    """Whatever the timing, lists keep order, lose nothing and respect max_size."""
    scheduler = TestScheduler()
    subject: Subject[tuple[int, int]] = Subject()
    out: list[list[tuple[int, int]]] = []
    subject.pipe(
        micro_batch(max_size, float(wait), size_of=lambda item: item[1], scheduler=scheduler)
    ).subscribe(out.append)
    clock = 0
    for index, (gap, size) in enumerate(arrivals):
        clock += gap
        scheduler.schedule_absolute(
            float(clock), lambda *_, item=(index, size): subject.on_next(item)
        )
    scheduler.schedule_absolute(float(clock + 1), lambda *_: subject.on_completed())
    scheduler.start()
    assert [item for batch in out for item in batch] == [
        (i, s) for i, (_, s) in enumerate(arrivals)
    ]
    for batch in out:
        assert len(batch) == 1 or sum(size for _, size in batch) <= max_size
