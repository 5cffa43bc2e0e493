"""Listings come in pages that stay under the message limit: a real hub with 620 nodes
(registered by hand-written agent streams: a hello, its welcome, gone), read through the
API page by page and through hubctl, which fetches every page."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from gpufleet.channel import PROTOCOL_VERSION
from gpufleet.v1 import agent_link_pb2 as link_pb
from gpufleet.v1 import hub_pb2, hub_pb2_grpc, types_pb2
from tests.support.procs import Cluster

NODES = 620  # more than one default page (500)
CONNECT = "/gpufleet.v1.AgentLink/Connect"


def name(i: int) -> str:
    return f"sim-{i:04d}"


def labels(i: int) -> dict[str, str]:
    """Every other node is even; one in 50 is also rare."""
    return {"parity": "odd" if i % 2 else "even", **({"rare": "yes"} if i % 50 == 7 else {})}


async def register(address: str, count: int) -> None:
    """Each node says hello with two GPUs, reads its welcome and leaves (it stays, down)."""
    gate = asyncio.Semaphore(16)
    async with grpc.aio.insecure_channel(address) as channel:
        connect = channel.stream_stream(
            CONNECT, link_pb.AgentMessage.SerializeToString, link_pb.HubMessage.FromString
        )

        async def one(i: int) -> None:
            gpus = [types_pb2.Gpu(index=k, uuid=f"GPU-{i}-{k}", memory_total_mb=24564)
                    for k in range(2)]  # fmt: skip
            hello = link_pb.Hello(
                node_name=name(i), agent_id=f"agent-{i}", labels=labels(i),
                versions=link_pb.Versions(protocol=PROTOCOL_VERSION, agent="0.1.0"),
                inventory=types_pb2.Inventory(probe="static", gpus=gpus),
            )  # fmt: skip
            async with gate:
                call = connect()  # type: ignore[call-arg]  # no iterator: written below
                await call.write(link_pb.AgentMessage(hello=hello))
                reply = await call.read()
                assert isinstance(reply, link_pb.HubMessage) and reply.HasField("welcome"), reply
                await call.done_writing()
                await call.code()

        await asyncio.gather(*(one(i) for i in reversed(range(count))))


@pytest.fixture
def fleet(tmp_path: Path) -> Cluster:
    cluster = Cluster(tmp_path, None, heartbeat=2.0, secure=False)
    cluster.start_hub()
    try:
        asyncio.run(register(cluster.address, NODES))
    except BaseException:
        cluster.close()
        raise
    return cluster


def test_listings_are_paged_and_hubctl_reads_every_page(fleet: Cluster) -> None:
    try:
        with fleet.hub.channel() as channel:
            hub = hub_pb2_grpc.HubStub(channel)
            names, token, pages = [], "", 0
            while True:
                reply = hub.ListNodes(
                    hub_pb2.ListNodesRequest(page_size=250, page_token=token), timeout=10
                )
                names += [node.name for node in reply.nodes]
                pages += 1
                token = reply.next_page_token
                if not token:
                    break
            assert pages == 3 and names == [name(i) for i in range(NODES)]
            first = hub.ListNodes(hub_pb2.ListNodesRequest(), timeout=10)
            assert len(first.nodes) == 500 and first.next_page_token

            gpus, token = [], ""
            while True:
                gpu_page = hub.ListGpus(
                    hub_pb2.ListGpusRequest(page_size=333, page_token=token), timeout=10
                )
                gpus += [(g.node, g.gpu.index) for g in gpu_page.gpus]
                token = gpu_page.next_page_token
                if not token:
                    break
            assert gpus == [(name(i), k) for i in range(NODES) for k in range(2)]

            status = hub.GetStatus(hub_pb2.GetStatusRequest(page_size=7), timeout=10)
            assert [s.node for s in status.nodes] == [name(i) for i in range(7)]
            following = hub.GetStatus(
                hub_pb2.GetStatusRequest(page_size=7, page_token=status.next_page_token),
                timeout=10,
            )
            assert [s.node for s in following.nodes] == [name(i) for i in range(7, 14)]

            for bad, fragment in (
                (hub_pb2.ListNodesRequest(page_size=5001), "page_size 5001 is out of range"),
                (hub_pb2.ListNodesRequest(page_token="garbage"), "invalid page_token"),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    hub.ListNodes(bad, timeout=10)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert fragment in str(refused.value.details())
            with pytest.raises(grpc.RpcError) as refused:
                hub.ListGpus(hub_pb2.ListGpusRequest(page_token=first.next_page_token))
            assert "invalid page_token" in str(refused.value.details())

            # Selected pages: pages of matching nodes, the token as opaque as ever.
            even, token, pages = [], "", 0
            while True:
                request = hub_pb2.ListNodesRequest(
                    page_size=100, page_token=token, selector=["parity=even"]
                )
                reply = hub.ListNodes(request, timeout=10)
                even += [node.name for node in reply.nodes]
                pages += 1
                token = reply.next_page_token
                if not token:
                    break
            assert even == [name(i) for i in range(0, NODES, 2)] and pages == 4
            rare = hub.ListGpus(hub_pb2.ListGpusRequest(page_size=5, selector=["rare"]))
            assert [(g.node, g.gpu.index) for g in rare.gpus] == [
                (name(7), 0), (name(7), 1), (name(57), 0), (name(57), 1), (name(107), 0)
            ]  # fmt: skip
            rest = hub.ListGpus(
                hub_pb2.ListGpusRequest(page_token=rare.next_page_token, selector=["rare"])
            )
            assert len(rare.gpus) + len(rest.gpus) == 2 * len(range(7, NODES, 50))
            odd = hub.GetStatus(hub_pb2.GetStatusRequest(page_size=3, selector=["parity!=even"]))
            assert [s.node for s in odd.nodes] == [name(1), name(3), name(5)]

        assert [n["name"] for n in fleet.json("nodes")] == [name(i) for i in range(NODES)]
        rare_nodes = [n["name"] for n in fleet.json("nodes", "-l", "rare,parity=odd")]
        assert rare_nodes == [name(i) for i in range(7, NODES, 50)]
        assert len(fleet.json("status", "-l", "parity=even")) == NODES // 2
        assert len(fleet.json("gpus")) == 2 * NODES
        assert [s["node"] for s in fleet.json("status")] == [name(i) for i in range(NODES)]

        # Filters run in the hub: names, link status (nobody stayed), switch and GPU state.
        picked = fleet.json("nodes", "-n", f"{name(3)},{name(600)},nope", "-l", "parity=odd")
        assert [n["name"] for n in picked] == [name(3)]
        assert fleet.json("nodes", "--status", "ready") == []
        down = fleet.json("status", "--status", "down", "--state", "stopped", "--limit", "510")
        assert [s["node"] for s in down] == [name(i) for i in range(510)]
        assert fleet.json("gpus", "--gpu-state", "lost") == []
        assert len(fleet.json("gpus", "--gpu-state", "ok", "-n", name(9))) == 2
        shown = fleet.hubctl("nodes", "--limit", "2").stdout.splitlines()
        assert [line.split()[0] for line in shown] == ["NAME", name(0), name(1)]
        with fleet.hub.channel() as channel:
            hub = hub_pb2_grpc.HubStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                hub.GetStatus(hub_pb2.GetStatusRequest(state=["running"]), timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert refused.value.details() == (
                "invalid state 'running': one of stopped, switching, loading, ready, failed, "
                "draining"
            )
            big = hub.ListGpus(hub_pb2.ListGpusRequest(page_size=5000), timeout=10)
            assert len(big.gpus) == 2 * NODES and not big.next_page_token
    finally:
        fleet.close()
