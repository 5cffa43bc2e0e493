"""The agent's advertised address (Hello.advertise_address): checked at the hello, kept in its
session while it is connected, and the host of its model servers' endpoints."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from gpufleet.channel import PROTOCOL_VERSION
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc
from hub.convert import InvalidHello, advertised_from_proto
from hub.models.running import endpoint, running
from hub.server import HubConfig, HubServer
from hub.store import Node
from hub.store.deployments import Deployed

T0 = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


def hello(name: str, advertise: str = "") -> pb.Hello:
    return pb.Hello(node_name=name, agent_id=f"id-{name}", hostname=f"{name}.local",
                    advertise_address=advertise,
                    versions=pb.Versions(protocol=PROTOCOL_VERSION))  # fmt: skip


@pytest.mark.parametrize(("given", "kept"), [
    ("", ""), ("10.0.0.7", "10.0.0.7"), ("gpu-a.lan", "gpu-a.lan"), ("fd00::7", "[fd00::7]"),
    ("[fd00::7]", "[fd00::7]"),
])  # fmt: skip
def test_an_address_or_host_name_is_kept(given: str, kept: str) -> None:
    assert advertised_from_proto(hello("a", given)) == kept


@pytest.mark.parametrize("given", ["http://a", "a:8000", "a b", "a/b", "-a", "x" * 300])
def test_anything_else_is_refused_in_one_line(given: str) -> None:
    with pytest.raises(InvalidHello, match="no host name or IP address") as raised:
        advertised_from_proto(hello("a", given))
    assert "\n" not in str(raised.value)


def node(name: str, hostname: str = "") -> Node:
    return Node(
        name=name,
        hostname=hostname,
        configuration="model-chat",
        state="ready",
        first_seen=T0,
        status_since=T0,
    )


def test_the_endpoint_is_the_advertised_address_else_the_host_name() -> None:
    assert endpoint(node("a", "a.local"), 8000, "10.0.0.7") == "http://10.0.0.7:8000"
    assert endpoint(node("a", "a.local"), 8000) == "http://a.local:8000"
    assert endpoint(node("a"), 8000) == "http://a:8000"
    stored = {n: Deployed(n, "chat", "llama-cpp", "model-chat", (), 8001, "", T0) for n in "ab"}
    found = running([node("a", "a.local"), node("b", "b.local")], stored,
                    lambda n: n.configuration,
                    advertised=lambda n: "10.0.0.7" if n.name == "a" else "")  # fmt: skip
    assert [r.endpoint for r in found] == ["http://10.0.0.7:8001", "http://b.local:8001"]


def test_the_hub_keeps_it_in_the_session_and_refuses_a_bad_one(tmp_path: Path) -> None:
    async def main() -> None:
        server = HubServer(HubConfig("127.0.0.1:0", tmp_path, heartbeat_interval=0.5,
                                     insecure=True))  # fmt: skip
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = agent_link_pb2_grpc.AgentLinkStub(channel)
                good = stub.Connect()
                await good.write(pb.AgentMessage(hello=hello("a", "10.0.0.7")))
                welcome = await asyncio.wait_for(good.read(), 5)
                assert welcome.WhichOneof("body") == "welcome"
                session = server.registry.get("a")
                assert session is not None and session.advertised == "10.0.0.7"
                bad = stub.Connect()
                await bad.write(pb.AgentMessage(hello=hello("b", "http://b:8000")))
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await asyncio.wait_for(bad.read(), 5)
                assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "advertise_address" in str(raised.value.details())
                assert server.registry.get("b") is None
                good.cancel()
        finally:
            await server.stop(grace=1)

    asyncio.run(main())
