"""Tests for the bounded channel under every thread boundary of the flow engine."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rxpipe.flow._channel import CLOSED, END, ITEM, Channel, item_nbytes
from rxpipe.testing import collect, from_arrays, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")


def test_items_come_out_in_order_then_the_end() -> None:
    """Items are read first in, first out, and the end comes after them, repeatedly."""
    channel = Channel(3)
    for item in "abc":
        assert channel.put(item)
    channel.finish(None)
    assert [channel.get() for _ in range(5)] == [
        (ITEM, "a"),
        (ITEM, "b"),
        (ITEM, "c"),
        (END, None),
        (END, None),
    ]


def test_offer_refuses_when_full_and_push_out_evicts_the_oldest() -> None:
    """Non-blocking admission: offer says no when full; push_out makes room by evicting."""
    channel = Channel(2)
    assert channel.offer(1)
    assert channel.offer(2)
    assert not channel.offer(3)
    assert channel.push_out(4) == [1]
    assert [channel.get()[1] for _ in range(2)] == [2, 4]


def test_a_full_channel_blocks_the_writer_until_drained_to_half() -> None:
    """A blocked writer wakes once the reader has drained the channel to half its capacity."""
    channel = Channel(4)
    for i in range(4):
        channel.put(i)
    put_done = threading.Event()
    writer = threading.Thread(target=lambda: (channel.put(4), put_done.set()))
    writer.start()
    assert not put_done.wait(0.05)
    channel.get()
    assert not put_done.wait(0.05)  # 3 held: above half, the writer sleeps on
    channel.get()
    assert put_done.wait(2.0)  # 2 held: woken
    writer.join()
    assert len(channel) == 3


def test_bytes_are_bounded_but_one_large_item_passes_alone() -> None:
    """With max_bytes, items wait for room; an item larger than the bound passes when alone."""
    channel = Channel(10, max_bytes=100)
    assert channel.offer("a", size=60)
    assert not channel.offer("b", size=60)
    assert channel.get() == (ITEM, "a")
    assert channel.offer("huge", size=1000)
    assert channel.nbytes == 1000
    assert not channel.offer("c", size=1)


def test_close_wakes_blocked_threads_and_returns_what_was_held() -> None:
    """Closing releases a blocked writer and reader; later calls report closed."""
    full, empty = Channel(1), Channel(1)
    full.put("held")
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(full.put("more"))),
        threading.Thread(target=lambda: results.append(empty.get())),
    ]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: full._writers == 1 and empty._readers == 1)
    assert full.close() == ["held"]
    empty.close()
    for thread in threads:
        thread.join(2.0)
    assert sorted(map(str, results)) == sorted(map(str, [False, (CLOSED, None)]))
    assert full.get() == (CLOSED, None)
    assert not full.put("late")


def test_abort_discards_items_and_delivers_the_error_next() -> None:
    """abort() ends the stream with an error at once, returning the discarded items."""
    channel = Channel(3)
    channel.put(1)
    channel.put(2)
    error = RuntimeError("overflow")
    assert channel.abort(error) == [1, 2]
    assert channel.get() == (END, error)


def test_item_nbytes_counts_the_arrays_of_a_batch() -> None:
    """A batch's size in bytes is its features, labels and ids."""
    [batch] = collect(from_arrays(np.zeros((4, 3), "float32"), np.zeros(4, "int64"), batch_size=4))
    assert item_nbytes(batch) == 4 * 3 * 4 + 4 * 8 + batch.ids.nbytes
    assert item_nbytes("not an array") == 0
