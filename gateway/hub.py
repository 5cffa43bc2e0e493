"""The hub as the gateway sees it: a small interface, and its gRPC implementation.

Protobuf stops here: callers get the table's dataclasses and the ones below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from agent.credentials import NotEnrolled
from gateway.table import Table, from_proto
from gpufleet.v1 import gateway_pb2, gateway_pb2_grpc, types_pb2

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 30.0


class HubRefused(Exception):
    """The hub will not start the model (FAILED_PRECONDITION, NOT_FOUND): its line."""


class HubUnavailable(Exception):
    """The hub could not be asked (down, unreachable, another error)."""


@dataclass(frozen=True)
class Ensured:
    state: str
    nodes: tuple[str, ...] = ()
    message: str = ""


@dataclass(frozen=True)
class Activity:
    model: str
    in_flight: int
    requests: int
    last_finished: float | None  # seconds since the epoch
    replicas: Mapping[str, int] = field(default_factory=dict)  # endpoint: in flight there


@dataclass(frozen=True)
class GpuRow:
    node: str
    node_status: str
    index: int
    name: str
    memory_used_mib: int
    memory_total_mib: int
    utilization_percent: int | None
    temperature_c: float | None
    power_w: float | None


class Hub(Protocol):
    def watch_routes(self) -> AsyncIterator[Table]: ...

    async def ensure_model(self, name: str) -> Ensured: ...

    async def report_activity(self, models: Sequence[Activity]) -> float: ...

    async def gpu_stats(self) -> list[GpuRow]: ...

    async def close(self) -> None: ...


ChannelFactory = Callable[[], grpc.aio.Channel]


def _text(exc: grpc.RpcError) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)


class GrpcHub:
    """The Gateway service: the watch on a channel of its own, the calls on a shared one.

    Each new watch opens fresh channels (a renewed certificate is read then); the calls' old
    channel is closed only once the calls on it finished (a grace of CALL_TIMEOUT_S)."""

    def __init__(self, open_channel: ChannelFactory, gateway: str) -> None:
        self.open_channel = open_channel
        self.gateway = gateway
        self._channel: grpc.aio.Channel | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def _open(self) -> grpc.aio.Channel:
        try:
            return self.open_channel()
        except NotEnrolled as exc:
            raise HubUnavailable(str(exc)) from None

    def _stub(self) -> gateway_pb2_grpc.GatewayStub:
        if self._channel is None:
            self._channel = self._open()
        return gateway_pb2_grpc.GatewayStub(self._channel)  # type: ignore[no-untyped-call]

    def _renew(self) -> None:
        """New calls go on a fresh channel; the old one closes after its calls ended."""
        old, self._channel = self._channel, None
        if old is not None:
            task = asyncio.ensure_future(old.close(CALL_TIMEOUT_S))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        old, self._channel = self._channel, None
        if old is not None:
            await old.close(None)
        for task in list(self._closing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def watch_routes(self) -> AsyncGenerator[Table, None]:
        self._renew()
        channel = self._open()
        stub = gateway_pb2_grpc.GatewayStub(channel)  # type: ignore[no-untyped-call]
        call = stub.WatchRoutes(gateway_pb2.WatchRoutesRequest(gateway=self.gateway))
        try:
            async for message in call:
                yield from_proto(message)
        finally:
            call.cancel()
            await channel.close(None)

    async def ensure_model(self, name: str) -> Ensured:
        request = gateway_pb2.EnsureModelRequest(name=name, gateway=self.gateway)
        try:
            reply = await self._stub().EnsureModel(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                raise HubRefused(exc.details() or exc.code().name) from None
            raise HubUnavailable(_text(exc)) from None
        return Ensured(reply.state, tuple(reply.nodes), reply.message)

    async def report_activity(self, models: Sequence[Activity]) -> float:
        report = gateway_pb2.ActivityReport(gateway=self.gateway)
        for item in models:
            entry = report.models.add(
                model=item.model, in_flight=item.in_flight, requests=item.requests
            )
            entry.replicas.update(item.replicas)
            if item.last_finished is not None:
                seconds = math.floor(item.last_finished)
                nanos = round((item.last_finished - seconds) * 1e9)
                entry.last_finished.CopyFrom(
                    Timestamp(seconds=seconds, nanos=min(nanos, 999999999))
                )
        try:
            ack = await self._stub().ReportActivity(report, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise HubUnavailable(_text(exc)) from None
        return float(ack.interval_s)

    async def gpu_stats(self) -> list[GpuRow]:
        try:
            reply = await self._stub().GpuStats(gateway_pb2.GpuStatsRequest(), timeout=10.0)
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            text = _text(exc) if isinstance(exc, grpc.RpcError) else "timed out"
            raise HubUnavailable(text) from None
        rows = []
        for item in reply.gpus:
            gpu = item.gpu
            status = types_pb2.NodeStatus.Name(item.node_status).removeprefix("NODE_STATUS_")
            rows.append(
                GpuRow(
                    node=item.node,
                    node_status=status.lower(),
                    index=gpu.index,
                    name=gpu.name,
                    memory_used_mib=gpu.memory_used_mb,
                    memory_total_mib=gpu.memory_total_mb,
                    utilization_percent=(
                        gpu.utilization_percent if gpu.HasField("utilization_percent") else None
                    ),
                    temperature_c=gpu.temperature_c if gpu.HasField("temperature_c") else None,
                    power_w=gpu.power_draw_w if gpu.HasField("power_draw_w") else None,
                )
            )
        return rows
