"""The AgentLink stream against a real in-process hub server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from agent.compose import Podman
from agent.link import AgentLink, Identity
from agent.main import task_kinds
from agent.probes import GpuInfo, ProbeResult
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.runner import TaskRunner
from gpufleet.channel import PROTOCOL_VERSION
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc, types_pb2
from hub.server import HubConfig, HubServer
from hub.store import Store


class CountingProbe:
    name = "static"

    def __init__(self) -> None:
        self.calls = 0

    def inventory(self) -> ProbeResult:
        self.calls += 1
        return ProbeResult(self.name, (GpuInfo(0, "GPU-1", "NVIDIA RTX A400", "nvidia", 4094, 10),))


@asynccontextmanager
async def running_hub(tmp: Path) -> AsyncIterator[HubServer]:
    server = HubServer(HubConfig("127.0.0.1:0", tmp, heartbeat_interval=0.5, insecure=True))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=1)


@asynccontextmanager
async def running_agent(
    server: HubServer, name: str, probe: CountingProbe
) -> AsyncIterator[AgentLink]:
    context = TaskContext.create(ProjectStore(Path("/nonexistent")), Podman(name), probe, {})
    link = AgentLink(f"127.0.0.1:{server.port}", Identity(name, f"id-{name}"), probe,
                     tasks=TaskRunner(task_kinds(), context))  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    await asyncio.wait_for(link.connected.wait(), 10)
    try:
        yield link
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def run(tmp: Path, scenario: Callable[[HubServer], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running_hub(tmp) as server:
            await scenario(server)

    asyncio.run(main())


def test_task_round_trip_and_a_resent_task_id_runs_once(tmp_path: Path) -> None:
    async def scenario(server: HubServer) -> None:
        probe = CountingProbe()
        async with running_agent(server, "gpu-a", probe):
            session = server.registry.get("gpu-a")
            assert session is not None
            hello_probes = probe.calls
            request = pb.TaskRequest(task_id="t-1", gather_facts=pb.GatherFacts())
            first = await asyncio.wait_for(session.run_task(request), 5)
            again = await asyncio.wait_for(session.run_task(request), 5)
            assert first.status == types_pb2.TASK_STATUS_OK
            assert [g.name for g in first.facts.gpus] == ["NVIDIA RTX A400"]
            assert again == first
            assert probe.calls == hello_probes + 1  # the re-sent id was answered from record

            unknown = await asyncio.wait_for(session.run_task(pb.TaskRequest(task_id="t-2")), 5)
            assert unknown.status == types_pb2.TASK_STATUS_FAILED
            assert "does not support task kind" in unknown.message

    run(tmp_path, scenario)


def hello(name: str, protocol: int = PROTOCOL_VERSION) -> pb.AgentMessage:
    return pb.AgentMessage(
        hello=pb.Hello(
            node_name=name, agent_id=f"id-{name}", versions=pb.Versions(protocol=protocol)
        )
    )


def beat(seq: int, sent: float | None = None) -> pb.AgentMessage:
    message = pb.Heartbeat(seq=seq)
    if sent is not None:
        message.sent_at.FromNanoseconds(int(sent * 1e9))
    return pb.AgentMessage(heartbeat=message)


BAD_STREAMS = {
    "heartbeat before hello": (
        [pb.AgentMessage(heartbeat=pb.Heartbeat(seq=1))],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "second hello": ([hello("x"), hello("x")], grpc.StatusCode.INVALID_ARGUMENT),
    "result for a task never sent": (
        [hello("x"), pb.AgentMessage(task_result=pb.TaskResult(task_id="never"))],
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "unknown protocol": ([hello("x", protocol=99)], grpc.StatusCode.FAILED_PRECONDITION),
    "hello without a name": ([hello("")], grpc.StatusCode.INVALID_ARGUMENT),
    # A burst of 10 is allowed; the 11th at once is a flood.
    "heartbeat flood": (
        [hello("x")] + [pb.AgentMessage(heartbeat=pb.Heartbeat(seq=i)) for i in range(11)],
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
    # Send times count, but never ahead of the hub's clock: one beat per hour of a lying clock,
    # all sent at once, is still a flood; so is a flood that says when it was sent.
    "heartbeat flood with a lying clock": (
        [hello("x")] + [beat(i, 1_700_000_000 + 3600 * i) for i in range(11)],
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
    "heartbeat flood with send times": (
        [hello("x")] + [beat(i, 1_700_000_000 + 0.001 * i) for i in range(11)],
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STREAMS))
def test_malformed_streams_are_closed_and_the_hub_keeps_serving(tmp_path: Path, case: str) -> None:
    messages, code = BAD_STREAMS[case]

    async def scenario(server: HubServer) -> None:
        probe = CountingProbe()
        async with running_agent(server, "good", probe):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                call = agent_link_pb2_grpc.AgentLinkStub(channel).Connect()
                for message in messages:
                    try:
                        await call.write(message)
                    except Exception:  # the hub already closed the stream: stop writing
                        break
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    while isinstance(await asyncio.wait_for(call.read(), 5), pb.HubMessage):
                        pass
                assert raised.value.code() == code, raised.value.details()
            good = server.registry.get("good")
            assert good is not None and good.closed is None

    run(tmp_path, scenario)


def test_a_stream_closed_or_unreadable_before_its_hello_is_refused_at_once(tmp_path: Path) -> None:
    async def scenario(server: HubServer) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            closed = agent_link_pb2_grpc.AgentLinkStub(channel).Connect()
            await closed.done_writing()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await asyncio.wait_for(closed.read(), 5)
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "no hello" in (raised.value.details() or "")
            raw = raw_stream(channel)
            await raw.write(b"\xff\xff\xff")
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await asyncio.wait_for(raw.read(), 5)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "malformed" in (raised.value.details() or "")

    run(tmp_path, scenario)


def raw_stream(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall[bytes, pb.HubMessage]:
    """An AgentLink stream that sends bytes as they are (for what no agent would send)."""
    connect = channel.stream_stream(
        "/gpufleet.v1.AgentLink/Connect",
        request_serializer=lambda data: data,
        response_deserializer=pb.HubMessage.FromString,
    )
    return connect()  # type: ignore[call-arg]


@pytest.mark.parametrize("ending", ["closed", "unreadable"])
def test_an_agent_that_closes_its_stream_or_sends_garbage_is_down(
    tmp_path: Path, ending: str
) -> None:
    async def scenario(server: HubServer) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = raw_stream(channel)
            await call.write(hello("x").SerializeToString())
            welcome = await asyncio.wait_for(call.read(), 5)
            assert isinstance(welcome, pb.HubMessage) and welcome.HasField("welcome")
            assert server.registry.live("x") is not None
            if ending == "closed":
                await call.done_writing()
            else:
                await call.write(b"\xff\xff\xff")
            try:
                while isinstance(await asyncio.wait_for(call.read(), 5), pb.HubMessage):
                    pass  # a pace message may come first
            except grpc.aio.AioRpcError:
                pass
            expected = (
                grpc.StatusCode.OK if ending == "closed" else grpc.StatusCode.INVALID_ARGUMENT
            )
            assert await call.code() == expected
            assert server.registry.get("x") is None

    run(tmp_path, scenario)


def test_silent_agent_is_cut_off_after_three_heartbeats(tmp_path: Path) -> None:
    async def scenario(server: HubServer) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = agent_link_pb2_grpc.AgentLinkStub(channel).Connect()
            await call.write(hello("quiet"))
            welcome = await call.read()
            assert welcome.welcome.heartbeat_interval.ToTimedelta().total_seconds() == 0.5
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await asyncio.wait_for(call.read(), 5)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "no heartbeat" in (raised.value.details() or "")
        for _ in range(50):
            if server.registry.get("quiet") is None:
                break
            await asyncio.sleep(0.05)
        assert server.registry.get("quiet") is None, "the silent session was not released"

    run(tmp_path, scenario)


def test_concurrent_operations_on_one_node_admit_exactly_one(tmp_path: Path) -> None:
    import json
    from collections.abc import Mapping

    from agent.compose import Completed, compose_name
    from gpufleet.policy import Policy
    from gpufleet.v1 import hub_pb2, hub_pb2_grpc
    from hub.configs import load_configuration
    from tests.support.procs import REPO

    configs = REPO / "tests" / "fixtures" / "switch-configs"
    alpha = load_configuration(configs / "alpha.yaml")
    allowed = Policy(allow_bind_roots=(str(tmp_path),))  # alpha binds METRICS_DIR
    store = ProjectStore(tmp_path / "agent", "none", allowed, {"METRICS_DIR": str(tmp_path)})
    store.write("alpha", alpha.text, alpha.digest)

    async def slow_podman(argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
        """The node's podman (the edge): alpha runs; compose down takes a second."""
        if "ps" in argv:
            running = [{"Id": "c1", "State": "running",
                        "Labels": {"com.docker.compose.service": "web"}}]  # fmt: skip
            return Completed(0, json.dumps(running if compose_name("gpu-a", "alpha") in
                                           argv[-1] else []), "")  # fmt: skip
        await asyncio.sleep(1.0)
        return Completed(0, "", "")

    async def scenario() -> None:
        server = HubServer(HubConfig("127.0.0.1:0", tmp_path / "hub", heartbeat_interval=0.5,
                                     configs_dir=configs, insecure=True))  # fmt: skip
        await server.start()
        context = TaskContext.create(store, Podman("gpu-a", run=slow_podman), CountingProbe(), {})
        link = AgentLink(f"127.0.0.1:{server.port}", Identity("gpu-a", "id-a"), CountingProbe(),
                         tasks=TaskRunner(task_kinds(), context))  # fmt: skip
        stop = asyncio.Event()
        agent = asyncio.create_task(link.run(stop))
        try:
            await asyncio.wait_for(link.connected.wait(), 10)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = hub_pb2_grpc.HubStub(channel)
                request = hub_pb2.StopRequest(targets=hub_pb2.Targets(nodes=["gpu-a"]))
                replies = await asyncio.gather(
                    *(stub.Stop(request) for _ in range(3)), return_exceptions=True
                )
            admitted = [r for r in replies if isinstance(r, hub_pb2.OperationRef)]
            refused = [r for r in replies if isinstance(r, grpc.aio.AioRpcError)]
            assert len(admitted) == 1 and len(refused) == 2, replies
            assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION for r in refused)
            assert all(admitted[0].id in (r.details() or "") for r in refused)
        finally:
            stop.set()
            await asyncio.wait_for(agent, 10)
            await server.stop(grace=1)

    asyncio.run(scenario())


def test_a_changed_inventory_reaches_the_database_with_the_batch(tmp_path: Path) -> None:
    async def scenario(server: HubServer) -> None:
        probe = CountingProbe()
        async with running_agent(server, "gpu-a", probe):
            a400 = probe.inventory().gpus[0]
            probe.inventory = lambda: ProbeResult(  # type: ignore[method-assign]
                "static", (a400, GpuInfo(1, "GPU-2", "NVIDIA RTX A5500", "nvidia", 24564, 0))
            )
            store = Store(server.db.engine)
            for _ in range(60):
                found = await server.db.call(store.get_node, "gpu-a")
                if found is not None and len(found[1]) == 2:
                    break
                await asyncio.sleep(0.1)
            assert found is not None
            assert [g.name for g in found[1]] == ["NVIDIA RTX A400", "NVIDIA RTX A5500"]

    run(tmp_path, scenario)


def test_heartbeats_queued_while_the_hub_stalled_are_no_flood(tmp_path: Path) -> None:
    """The hub's event loop is blocked for 6 s (12 heartbeat intervals) while an agent keeps
    sending at the agreed rate: the queued heartbeats then arrive at once, more than the burst
    allowance, and the stream must stay up (they were sent in time)."""
    import threading
    import time
    from collections.abc import Iterator

    async def scenario(server: HubServer) -> None:
        stop = threading.Event()
        ended: list[grpc.RpcError | None] = []

        def messages() -> Iterator[pb.AgentMessage]:
            yield hello("steady")
            seq = 0
            while not stop.wait(0.5):  # the agreed interval
                seq += 1
                yield beat(seq, time.time())

        def agent() -> None:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                replies = agent_link_pb2_grpc.AgentLinkStub(channel).Connect(messages())
                try:
                    for _ in replies:
                        pass
                    ended.append(None)
                except grpc.RpcError as exc:
                    ended.append(exc)

        thread = threading.Thread(target=agent)
        thread.start()
        try:
            for _ in range(100):
                if server.registry.get("steady") is not None:
                    break
                await asyncio.sleep(0.05)
            session = server.registry.get("steady")
            assert session is not None
            await asyncio.sleep(1.0)
            time.sleep(6.0)  # noqa: ASYNC251 - the stall: nothing runs on the hub's loop
            await asyncio.sleep(2.0)  # the queued heartbeats arrive, then a few more
            assert session.closed is None, session.closed
            assert server.registry.get("steady") is session
            assert not ended, ended
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, 10)

    run(tmp_path, scenario)


def failed_envs(count: int, first: int = 0) -> list[pb.EnvInfo]:
    return [pb.EnvInfo(name=f"cpu-0.3.{n}", backend="cpu", version=f"0.3.{n}", state="failed")
            for n in range(first, first + count)]  # fmt: skip


def test_too_many_or_unreadable_envs_reports_keep_the_link(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent that kept 65 failed builds is not locked out: the first 64 are kept. A report
    the hub cannot read (a built_at out of any calendar) is ignored, never the node."""

    def warnings(node: str) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelname == "WARNING" and f"node {node}:" in r.getMessage()]  # fmt: skip

    def envs_beat(seq: int, infos: list[pb.EnvInfo]) -> pb.AgentMessage:
        return pb.AgentMessage(heartbeat=pb.Heartbeat(seq=seq, envs=pb.EnvsReport(envs=infos)))

    async def scenario(server: HubServer) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            many = agent_link_pb2_grpc.AgentLinkStub(channel).Connect()
            message = hello("many")
            message.hello.envs.extend(failed_envs(65))
            await many.write(message)
            assert (await asyncio.wait_for(many.read(), 5)).HasField("welcome")
            kept = [e.name for e in server.envs.of("many")]
            assert kept == [f"cpu-0.3.{n}" for n in range(64)]
            assert len(warnings("many")) == 1 and "keeping the first 64" in warnings("many")[0]

            await many.write(envs_beat(1, failed_envs(66, first=100)))
            await asyncio.sleep(0.5)
            kept = [e.name for e in server.envs.of("many")]
            assert kept == [f"cpu-0.3.{n}" for n in range(100, 164)]
            assert len(warnings("many")) == 2

            bad = failed_envs(1, first=500)
            bad[0].built_at.seconds = 2**62
            await many.write(envs_beat(2, bad))
            await asyncio.sleep(0.5)
            session = server.registry.get("many")
            assert session is not None and session.closed is None

            odd = agent_link_pb2_grpc.AgentLinkStub(channel).Connect()
            message = hello("odd")
            message.hello.envs.extend(bad)
            await odd.write(message)
            assert (await asyncio.wait_for(odd.read(), 5)).HasField("welcome")
            assert server.registry.get("odd") is not None
            many.cancel()
            odd.cancel()

    with caplog.at_level("WARNING", logger="hub.link"):
        run(tmp_path, scenario)
