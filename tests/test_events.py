"""Tests for rxpipe.events."""

from __future__ import annotations

import threading

from rxpipe.events import EpochEnded, EventBus, RunStarted, StageStarted


def test_events_carry_run_id_sequence_and_time() -> None:
    """Published events are stamped with the run id and increasing sequence numbers."""
    bus = EventBus("r1")
    seen: list[object] = []
    bus.events.subscribe(seen.append)
    first = bus.publish(RunStarted, pipeline="p", run_dir="d")
    second = bus.publish(
        EpochEnded, epoch=1, epochs=2, logs={"loss": 1.0}, duration_s=1.0, samples_per_s=2.0
    )
    assert seen == [first, second]
    assert (first.run_id, first.seq, second.seq) == ("r1", 0, 1)
    assert second.time >= first.time


def test_to_dict_names_the_event_kind() -> None:
    """to_dict is JSON-ready and names the event type in snake case."""
    event = EventBus("r").publish(StageStarted, stage="s", kind_of_stage="access", pass_index=0)
    assert event.to_dict()["event"] == "stage_started"
    assert event.kind == "stage_started"


def test_concurrent_publishers_get_unique_ordered_sequence_numbers() -> None:
    """Publishing from several threads yields each sequence number once, in order."""
    bus = EventBus("r")
    seen: list[int] = []
    bus.events.subscribe(lambda e: seen.append(e.seq))

    def publish_many() -> None:
        for _ in range(200):
            bus.publish(RunStarted, pipeline="p", run_dir="d")

    threads = [threading.Thread(target=publish_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == list(range(800))


def test_a_failing_subscriber_cuts_off_nothing() -> None:
    """A subscriber that raises is recorded by name; the others (and it) get every event."""
    bus = EventBus("r")
    calls: list[int] = []
    seen: list[int] = []

    def broken(event: RunStarted) -> None:
        calls.append(event.seq)
        raise RuntimeError("subscriber bug")

    bus.events.subscribe(broken)
    bus.events.subscribe(lambda event: seen.append(event.seq))
    for _ in range(2):
        bus.publish(RunStarted, pipeline="p", run_dir="d")
    assert calls == seen == [0, 1]
    assert str(bus.subscriber_errors[0]) == (
        "test_a_failing_subscriber_cuts_off_nothing.<locals>.broken on run_started: "
        "RuntimeError: subscriber bug"
    )
    assert len(bus.subscriber_errors) == 2


def test_a_bus_can_continue_a_sequence() -> None:
    """first_seq numbers the first event (a resumed run goes on from its last seq)."""
    bus = EventBus("r", first_seq=41)
    first = bus.publish(RunStarted, pipeline="p", run_dir="d")
    second = bus.publish(RunStarted, pipeline="p", run_dir="d")
    assert (first.seq, second.seq) == (41, 42)


def test_the_runs_end_is_its_last_event() -> None:
    """After RunFailed (or RunCompleted), late events of threads winding down are dropped."""
    from rxpipe.events import RunFailed

    bus = EventBus("r")
    seen: list[object] = []
    bus.events.subscribe(seen.append)
    bus.publish(RunStarted, pipeline="p", run_dir="d")
    bus.publish(RunFailed, error_type="PipelineCancelled", message="m", stage=None, sample_ids=())
    bus.publish(StageStarted, stage="access.batch", kind_of_stage="access", pass_index=3)
    assert [type(e).__name__ for e in seen] == ["RunStarted", "RunFailed"]
