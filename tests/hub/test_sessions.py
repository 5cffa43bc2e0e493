from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from gpufleet.v1 import agent_link_pb2 as pb
from hub.sessions import (
    SEEN_WRITE_S,
    TELEMETRY_WRITE_S,
    Close,
    NameInUse,
    NodeDisconnected,
    Outbox,
    SessionRegistry,
    Updates,
)
from hub.store import GpuTelemetryRecord

NOW = datetime(2026, 11, 24, tzinfo=UTC)
LATER = NOW + timedelta(seconds=1)
PACE = pb.HubMessage(pace=pb.Pace())


def test_another_agent_under_a_connected_name_is_refused() -> None:
    registry = SessionRegistry()
    first = registry.open("gpu-a", "agent-1", "ipv4:10.0.0.1:5000", 0.0, NOW)
    with pytest.raises(NameInUse, match=r"already connected from ipv4:10\.0\.0\.1:5000"):
        registry.open("gpu-a", "agent-2", "ipv4:10.0.0.2:5000", 1.0, NOW)
    assert registry.get("gpu-a") is first and first.closed is None


def test_same_agent_reconnecting_replaces_its_stale_stream() -> None:
    registry = SessionRegistry()
    stale = registry.open("gpu-a", "agent-1", "a", 0.0, NOW)
    fresh = registry.open("gpu-a", "agent-1", "b", 1.0, NOW)
    assert stale.closed is not None and registry.get("gpu-a") is fresh
    assert registry.release(stale) is False  # the stale stream ending must not mark it down
    assert registry.release(fresh) is True


def test_expiry_uses_the_last_heartbeat_and_the_interval_each_agent_was_told() -> None:
    registry = SessionRegistry()
    a = registry.open("a", "1", "", 0.0, NOW)
    registry.open("b", "2", "", 0.0, NOW)
    slow = registry.open("c", "3", "", 0.0, NOW)
    slow.interval = 10.0
    registry.heartbeat(a, 10.0, NOW)
    assert [s.name for s in registry.expired(16.0)] == ["b"]  # 3 x 5 s
    assert [s.name for s in registry.expired(31.0)] == ["a", "b", "c"]


def test_after_a_pace_change_the_longer_interval_counts_until_the_next_heartbeat() -> None:
    registry = SessionRegistry()
    session = registry.open("a", "1", "", 0.0, NOW)
    session.interval = 20.0
    session.pace(5.0, 60.0, PACE)
    assert session.outbox.get_nowait() is PACE and session.interval == 5.0
    assert registry.expired(59.0) == []  # still 3 x 20 s: its next beat may be 20 s away
    assert registry.expired(61.0) == [session]
    registry.heartbeat(session, 61.0, NOW)
    assert registry.expired(76.5) == [session]  # now 3 x 5 s
    session.pace(5.0, 60.0, PACE)  # the same pace again: nothing sent
    assert session.outbox.empty() and session.paced is None


def test_time_the_hub_was_stalled_is_no_agents_silence() -> None:
    registry = SessionRegistry()
    session = registry.open("a", "1", "", 0.0, NOW)
    registry.credit(30.0)  # the hub's loop was blocked for 30 s
    assert registry.expired(40.0) == []
    assert registry.silence(session, 40.0) == 10.0
    assert registry.expired(46.0) == [session]  # a silent agent is still cut off
    registry.heartbeat(session, 50.0, NOW)
    registry.credit(1.0)
    assert registry.silence(session, 60.0) == 9.0


def test_only_changed_telemetry_is_written_and_at_most_once_a_minute() -> None:
    registry = SessionRegistry(random.Random(7))
    session = registry.open("a", "1", "", 1000.0, NOW)
    sample = (GpuTelemetryRecord(0, memory_used_mb=10),)
    assert registry.take_updates(1000.0) == Updates({}, {}, {})  # its hello was just written
    assert session.report(sample, NOW) and not session.report(sample, NOW)
    assert session.unwritten_telemetry() == sample
    due = registry.take_updates(1000.0 + TELEMETRY_WRITE_S)
    assert due.telemetry == {"a": sample} and session.unwritten_telemetry() == ()
    session.report((GpuTelemetryRecord(0, memory_used_mb=20),), NOW)
    assert registry.take_updates(1001.0 + TELEMETRY_WRITE_S).telemetry == {}  # not yet
    assert "a" in registry.take_updates(1000.0 + 2 * TELEMETRY_WRITE_S).telemetry
    # A GPU process came or went: placement reads it from the database, written at once.
    started = (GpuTelemetryRecord(0, memory_used_mb=20, processes=((42, 10, 1),)),)
    session.report(started, NOW)
    assert registry.take_updates(1001.0 + 2 * TELEMETRY_WRITE_S).telemetry == {"a": started}


def test_last_seen_is_written_every_few_minutes_not_with_each_batch() -> None:
    registry = SessionRegistry(random.Random(7))
    session = registry.open("a", "1", "", 1000.0, NOW)
    registry.heartbeat(session, 1001.0, LATER)
    assert registry.take_updates(1000.0 + SEEN_WRITE_S).seen == {"a": LATER}
    assert registry.take_updates(1000.0 + SEEN_WRITE_S + 5).seen == {}


def test_connecting_at_once_spreads_the_first_writes() -> None:
    registry = SessionRegistry(random.Random(7))
    for i in range(100):
        registry.open(f"n{i}", str(i), "", 0.0, NOW).report((GpuTelemetryRecord(0),), NOW)
    first = registry.take_updates(TELEMETRY_WRITE_S / 4)
    assert 10 < len(first.telemetry) < 40


def test_heartbeat_rate_is_bounded() -> None:
    session = SessionRegistry().open("a", "1", "", 0.0, NOW)
    burst = [session.allow_heartbeat(0.0, interval=5.0) for _ in range(12)]
    assert burst == [True] * 10 + [False] * 2
    # The agreed rate (one per interval) is always fine, with room to spare (4x).
    steady = [session.allow_heartbeat(100.0 + 5 * i, interval=5.0) for i in range(50)]
    assert all(steady)


def test_closing_fails_pending_tasks_and_ends_the_stream() -> None:
    async def scenario() -> None:
        registry = SessionRegistry()
        session = registry.open("a", "1", "", 0.0, NOW)
        waiter = asyncio.create_task(session.run_task(pb.TaskRequest(task_id="t1")))
        await asyncio.sleep(0)
        sent = session.outbox.get_nowait()
        assert isinstance(sent, pb.HubMessage) and sent.task.task_id == "t1"
        session.close("gone", grpc.StatusCode.UNAVAILABLE)
        with pytest.raises(NodeDisconnected, match="gone"):
            await waiter
        assert session.outbox.get_nowait() == Close("gone", grpc.StatusCode.UNAVAILABLE)
        assert session.resolve(pb.TaskResult(task_id="t1")) is False

    asyncio.run(scenario())


def test_progress_is_routed_to_its_task_and_a_flood_is_dropped() -> None:
    from hub.sessions import PROGRESS_BURST, TaskProgress

    async def scenario() -> tuple[list[str], list[bool], bool]:
        session = SessionRegistry().open("gpu-a", "agent-1", "a", 0.0, NOW)
        seen: list[str] = []
        session.start_task(pb.TaskRequest(task_id="t1"), lambda p: seen.append(p.message))
        flood = [session.progress("t1", TaskProgress("x", str(i)), 1.0) for i in range(100)]
        later = session.progress("t1", TaskProgress("x", "after a pause"), 3.0)
        return seen, flood, later

    seen, flood, later = asyncio.run(scenario())
    assert flood.count(True) == int(PROGRESS_BURST) and not flood[-1]
    assert seen[: int(PROGRESS_BURST)] == [str(i) for i in range(int(PROGRESS_BURST))]
    assert later and seen[-1] == "after a pause"


def test_a_session_waiting_for_its_registration_is_neither_ready_nor_expired() -> None:
    """A restart's burst of hellos waits for the database: those nodes are not listed ready
    yet, and the wait is no silence of theirs."""
    registry = SessionRegistry()
    waiting = registry.open("gpu-a", "agent-1", "", 0.0, NOW)
    waiting.registering = True
    assert registry.live("gpu-a") is None
    assert registry.get("gpu-a") is waiting
    assert registry.expired(1000.0) == []
    waiting.registering = False
    registry.heartbeat(waiting, 1000.0, NOW)
    assert registry.live("gpu-a") is waiting
    assert [s.name for s in registry.expired(1000.0 + 3 * waiting.interval + 1)] == ["gpu-a"]


def test_the_outbox_hands_messages_in_order_to_its_waiting_reader() -> None:
    async def scenario() -> None:
        outbox = Outbox()
        reader = asyncio.create_task(outbox.get())
        await asyncio.sleep(0)
        assert not reader.done()
        first, second = pb.HubMessage(pace=pb.Pace()), Close("done")
        outbox.put_nowait(first)
        outbox.put_nowait(second)
        assert await asyncio.wait_for(reader, 1) is first
        assert await outbox.get() == second and outbox.empty()
        with pytest.raises(asyncio.QueueEmpty):
            outbox.get_nowait()
        cancelled = asyncio.create_task(outbox.get())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        outbox.put_nowait(first)  # a cancelled reader's waiter is not woken twice
        assert await asyncio.wait_for(outbox.get(), 1) is first

    asyncio.run(scenario())


def test_a_late_result_of_an_abandoned_task_is_dropped_once() -> None:
    async def scenario() -> None:
        session = SessionRegistry().open("a", "1", "", 0.0, NOW)
        assert session.resolve(pb.TaskResult(task_id="t1")) is False
        session.start_task(pb.TaskRequest(task_id="t1"))
        session.abandon("t1")
        assert session.resolve(pb.TaskResult(task_id="t1")) is True
        assert session.resolve(pb.TaskResult(task_id="t1")) is False

    asyncio.run(scenario())
