"""Pacing, telemetry and liveness of agent streams against a real in-process hub on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import grpc

from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc, types_pb2
from hub.server import HubConfig, HubServer
from hub.store import Database, Store
from tests.hub.test_link import beat, hello, run


def seconds(value: object) -> float:
    assert hasattr(value, "ToTimedelta")
    return float(value.ToTimedelta().total_seconds())


def with_gpu(name: str) -> pb.AgentMessage:
    message = hello(name)
    message.hello.inventory.gpus.add(index=0, uuid="GPU-1", name="A400", memory_total_mb=4096)
    return message


def telemetry_beat(seq: int, used_mb: int | None) -> pb.AgentMessage:
    message = beat(seq)
    if used_mb is None:
        message.heartbeat.telemetry_unchanged = True
    else:
        message.heartbeat.gpus.append(types_pb2.GpuTelemetry(index=0, memory_used_mb=used_mb))
    return message


async def welcomed(
    channel: grpc.aio.Channel, names: tuple[str, ...]
) -> list[grpc.aio.StreamStreamCall[pb.AgentMessage, pb.HubMessage]]:
    """One agent stream per name, each with one GPU, welcomed."""
    calls = [agent_link_pb2_grpc.AgentLinkStub(channel).Connect() for _ in names]
    for call, name in zip(calls, names, strict=True):
        await call.write(with_gpu(name))
        assert (await asyncio.wait_for(call.read(), 5)).HasField("welcome")
    return calls


async def keep_beating(call: grpc.aio.StreamStreamCall[pb.AgentMessage, pb.HubMessage]) -> None:
    for seq in range(1000):
        await call.write(beat(seq))
        await asyncio.sleep(0.4)


def test_the_welcome_carries_both_intervals_and_a_grown_cluster_is_repaced(
    tmp_path: Path,
) -> None:
    """One heartbeat a second for the whole hub: two agents get 2 s, told in a Pace; each
    session is then held to the interval it was told."""

    async def main() -> None:
        config = HubConfig("127.0.0.1:0", tmp_path, heartbeat_interval=0.5, insecure=True,
                           heartbeat_rate=1.0)  # fmt: skip
        server = HubServer(config)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                calls = [agent_link_pb2_grpc.AgentLinkStub(channel).Connect() for _ in range(2)]
                for call, name in zip(calls, ("a", "b"), strict=True):
                    await call.write(hello(name))
                    welcome = (await asyncio.wait_for(call.read(), 5)).welcome
                    assert seconds(welcome.heartbeat_interval) == 0.5
                    assert seconds(welcome.telemetry_interval) == 60.0
                beating = [asyncio.create_task(keep_beating(call)) for call in calls]
                pace = (await asyncio.wait_for(calls[0].read(), 5)).pace
                for task in beating:
                    task.cancel()
                assert (seconds(pace.heartbeat_interval), seconds(pace.telemetry_interval)) == (
                    2.0, 60.0)  # fmt: skip
                session = server.registry.get("a")
                assert session is not None and session.interval == 2.0
                # Silent for longer than 3 x 0.5 s, but within 3 x 2 s: still up.
                await asyncio.sleep(2.5)
                assert session.closed is None
                for call in calls:
                    call.cancel()
        finally:
            await server.stop(grace=1)

    asyncio.run(main())


def test_unchanged_telemetry_is_kept_and_the_last_change_is_written_when_the_node_goes(
    tmp_path: Path,
) -> None:
    async def scenario(server: HubServer) -> None:
        store = Store(server.db.engine)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = agent_link_pb2_grpc.AgentLinkStub(channel).Connect()
            await call.write(with_gpu("gpu-a"))
            assert (await asyncio.wait_for(call.read(), 5)).HasField("welcome")
            session = server.registry.get("gpu-a")
            assert session is not None and not session.telemetry_dirty  # as in its hello
            await call.write(telemetry_beat(1, 100))
            await call.write(telemetry_beat(2, None))
            await asyncio.sleep(0.5)
            assert [t.memory_used_mb for t in session.telemetry] == [100]
            assert session.telemetry_dirty  # not written yet: at most once a minute
            found = await server.db.call(store.get_node, "gpu-a")
            assert found is not None and found[1][0].memory_used_mb == 0
            await call.done_writing()
        for _ in range(50):
            found = await server.db.call(store.get_node, "gpu-a")
            assert found is not None
            if found[0].status == "down":
                break
            await asyncio.sleep(0.1)
        assert found[0].status == "down" and found[1][0].memory_used_mb == 100

    run(tmp_path, scenario)


def steady_agent(port: int, name: str, stop: threading.Event, ended: list[object]) -> None:
    """An agent in its own thread, heartbeating every 0.5 s whatever the hub's loop does."""

    def messages() -> Iterator[pb.AgentMessage]:
        yield hello(name)
        seq = 0
        while not stop.wait(0.5):
            seq += 1
            yield beat(seq, time.time())

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            for _ in agent_link_pb2_grpc.AgentLinkStub(channel).Connect(messages()):
                pass
            ended.append(name)
        except grpc.RpcError as exc:
            ended.append(exc)


def test_a_stalled_hub_closes_no_session_and_still_cuts_off_a_silent_agent(
    tmp_path: Path,
) -> None:
    """The hub's loop blocks for 4 s (the TTL is 1.5 s) while agents keep sending: no stream
    is closed; an agent that really went quiet is cut off within its TTL after the stall."""

    async def scenario(server: HubServer) -> None:
        stop = threading.Event()
        ended: list[object] = []
        threads = [threading.Thread(target=steady_agent, args=(server.port, f"s{i}", stop, ended))
                   for i in range(3)]  # fmt: skip
        for thread in threads:
            thread.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                quiet = agent_link_pb2_grpc.AgentLinkStub(channel).Connect()
                await quiet.write(hello("quiet"))
                for _ in range(100):
                    if all(server.registry.get(f"s{i}") for i in range(3)):
                        break
                    await asyncio.sleep(0.05)
                sessions = [server.registry.get(f"s{i}") for i in range(3)]
                await asyncio.sleep(1.0)
                beating = asyncio.create_task(keep_beating(quiet))
                await asyncio.sleep(0.5)
                time.sleep(4.0)  # noqa: ASYNC251 - the stall: nothing runs on the hub's loop
                await asyncio.sleep(0.05)  # the watcher's late tick comes first
                assert all(s is not None and s.closed is None for s in sessions), sessions
                silent = server.registry.get("quiet")
                assert silent is not None and silent.closed is None
                beating.cancel()  # this agent goes silent; the others keep beating
                await asyncio.sleep(2.5)
                assert silent.closed is not None and "no heartbeat" in silent.closed.reason
                assert all(s is not None and s.closed is None for s in sessions), sessions
                assert not ended, ended
                quiet.cancel()
        finally:
            stop.set()
            for thread in threads:
                await asyncio.to_thread(thread.join, 10)

    run(tmp_path, scenario)


def test_a_stopping_hub_writes_its_streams_down_together_with_their_last_heartbeat(
    tmp_path: Path,
) -> None:
    """10,000 streams ending at a stop were 10,000 transactions while the port was held: they
    are noted and written together, with each node's last heartbeat and unwritten telemetry."""

    async def main() -> None:
        config = HubConfig("127.0.0.1:0", tmp_path, insecure=True)
        server = HubServer(config)
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            calls = await welcomed(channel, ("a", "b", "c"))
            await calls[0].write(telemetry_beat(1, 321))
            await asyncio.sleep(0.3)
            session = server.registry.get("a")
            assert session is not None and session.telemetry_dirty
            beat_at = session.last_seen
            await server.stop(grace=1)
        db = Database(config.database_url)  # the database as the stop left it
        store = Store(db.engine)
        try:
            rows = [await db.call(store.get_node, name) for name in ("a", "b", "c")]
        finally:
            db.close()
        assert [row[0].status for row in rows if row is not None] == ["down"] * 3
        node, gpus = rows[0] or (None, [])
        assert node is not None and node.last_seen is not None
        assert node.last_seen.replace(tzinfo=UTC) == beat_at  # not rounded to the 5 min write
        assert [g.memory_used_mb for g in gpus] == [321]  # written although under a minute old

    asyncio.run(main())
