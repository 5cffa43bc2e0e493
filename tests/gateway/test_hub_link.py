"""The gateway's side of the Gateway service against a real grpc.aio server on loopback
with a tiny servicer that records calls: the conversions at the edge and the errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from gateway.follow import Routes, follow
from gateway.hub import Activity, GrpcHub, HubRefused, HubUnavailable
from gpufleet.v1 import gateway_pb2, gateway_pb2_grpc, hub_pb2, types_pb2


class Servicer(gateway_pb2_grpc.GatewayServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.tables: asyncio.Queue[gateway_pb2.RouteTable] = asyncio.Queue()
        self.watchers: list[str] = []
        self.reports: list[gateway_pb2.ActivityReport] = []
        self.refuse: grpc.StatusCode | None = None
        self.ensure_started = asyncio.Event()
        self.ensure_gate = asyncio.Event()
        self.ensure_gate.set()

    async def WatchRoutes(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.watchers.append(request.gateway)
        while True:
            yield await self.tables.get()

    async def EnsureModel(self, request: Any, context: Any) -> Any:
        self.ensure_started.set()
        await self.ensure_gate.wait()
        if self.refuse is not None:
            await context.abort(self.refuse, f"model {request.name}: no node fits it")
        return gateway_pb2.EnsureModelResponse(state="starting", nodes=["gpu-a"])

    async def ReportActivity(self, request: Any, context: Any) -> Any:
        self.reports.append(request)
        return gateway_pb2.ActivityAck(interval_s=2.5)

    async def GpuStats(self, request: Any, context: Any) -> Any:
        gpu = types_pb2.Gpu(
            index=1, name="NVIDIA H200", memory_total_mb=143771, memory_used_mb=512,
            utilization_percent=0, power_draw_w=75.5,
        )  # fmt: skip
        return hub_pb2.ListGpusResponse(
            gpus=[hub_pb2.NodeGpu(node="gpu-a", node_status=types_pb2.NODE_STATUS_READY, gpu=gpu)]
        )


@asynccontextmanager
async def served() -> AsyncIterator[tuple[Servicer, GrpcHub]]:
    servicer = Servicer()
    server = grpc.aio.server()
    gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    hub = GrpcHub(lambda: grpc.aio.insecure_channel(f"127.0.0.1:{port}"), "gw1")
    try:
        yield servicer, hub
    finally:
        await hub.close()
        await server.stop(0)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_routes_are_followed_from_the_stream() -> None:
    async def scenario() -> None:
        async with served() as (servicer, hub):
            routes, stop = Routes(), asyncio.Event()
            task = asyncio.create_task(follow(routes, hub.watch_routes, stop))
            change = routes.next_change()
            table = gateway_pb2.RouteTable(generation=4)
            table.models.add(name="tiny", state="ready", load_timeout_s=300)
            table.replicas.add(model="tiny", node="gpu-a", endpoint="http://10.0.0.1:8001/",
                               healthy=True, state="ready")  # fmt: skip
            servicer.tables.put_nowait(table)
            await asyncio.wait_for(change.wait(), 5)
            assert routes.table is not None and routes.table.generation == 4
            assert [r.endpoint for r in routes.table.routable("tiny")] == ["http://10.0.0.1:8001"]
            assert servicer.watchers == ["gw1"]
            stop.set()
            task.cancel()

    run(scenario)


def test_calls_and_their_conversions() -> None:
    async def scenario() -> None:
        async with served() as (servicer, hub):
            ensured = await hub.ensure_model("tiny")
            assert (ensured.state, ensured.nodes) == ("starting", ("gpu-a",))
            interval = await hub.report_activity([
                Activity("tiny", 1, 3, None, {"http://a:1": 1, "http://b:1": 0}),
                Activity("big", 0, 1, 1700000000.25),
            ])  # fmt: skip
            assert interval == 2.5
            tiny, big = servicer.reports[0].models
            assert servicer.reports[0].gateway == "gw1"
            assert (tiny.in_flight, tiny.requests, tiny.HasField("last_finished")) == (1, 3, False)
            assert big.last_finished.ToNanoseconds() == 1700000000250000000
            assert dict(tiny.replicas) == {"http://a:1": 1, "http://b:1": 0}
            (row,) = await hub.gpu_stats()
            assert (row.node, row.node_status, row.name, row.memory_total_mib) == (
                "gpu-a", "ready", "NVIDIA H200", 143771,
            )  # fmt: skip
            assert (row.utilization_percent, row.temperature_c, row.power_w) == (0, None, 75.5)
            servicer.refuse = grpc.StatusCode.FAILED_PRECONDITION
            with pytest.raises(HubRefused, match="model tiny: no node fits it"):
                await hub.ensure_model("tiny")
            servicer.refuse = grpc.StatusCode.INTERNAL
            with pytest.raises(HubUnavailable, match="INTERNAL"):
                await hub.ensure_model("tiny")

    run(scenario)


def test_a_hub_that_is_not_there_is_unavailable() -> None:
    async def scenario() -> None:
        hub = GrpcHub(lambda: grpc.aio.insecure_channel("127.0.0.1:1"), "gw1")
        with pytest.raises(HubUnavailable):
            await hub.report_activity([])
        await hub.close()

    run(scenario)


def test_a_new_watch_does_not_cut_calls_in_flight() -> None:
    async def scenario() -> None:
        async with served() as (servicer, hub):
            servicer.ensure_gate.clear()
            call = asyncio.ensure_future(hub.ensure_model("tiny"))
            await asyncio.wait_for(servicer.ensure_started.wait(), 5)
            watch = hub.watch_routes()
            servicer.tables.put_nowait(gateway_pb2.RouteTable(generation=1))
            table = await asyncio.wait_for(anext(watch), 5)  # a (re)connected watch
            assert table.generation == 1
            servicer.ensure_gate.set()
            ensured = await asyncio.wait_for(call, 5)
            assert ensured.state == "starting"
            assert (await hub.ensure_model("tiny")).state == "starting"
            await watch.aclose()

    run(scenario)
