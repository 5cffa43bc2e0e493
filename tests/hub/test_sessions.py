from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import pytest

from gpufleet.v1 import agent_link_pb2 as pb
from hub.sessions import Close, NameInUse, NodeDisconnected, SessionRegistry, Updates

NOW = datetime(2026, 11, 24, tzinfo=UTC)


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


def test_expiry_uses_the_last_heartbeat() -> None:
    registry = SessionRegistry()
    a = registry.open("a", "1", "", 0.0, NOW)
    registry.open("b", "2", "", 0.0, NOW)
    registry.heartbeat(a, 10.0, NOW)
    assert [s.name for s in registry.expired(16.0, ttl=15.0)] == ["b"]
    assert registry.take_updates() == Updates({"a": NOW}, {"a": ()}, {})
    assert registry.take_updates() == Updates({}, {}, {})


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
