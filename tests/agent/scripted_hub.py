"""A hub at the process edge for tests of the agent's link: a real grpc.aio AgentLink server on
loopback that welcomes each agent with the test's intervals, lets the test send it Pace,
Goodbye or an aborted stream, and records every hello and heartbeat with the loop's time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import grpc
from google.protobuf.duration_pb2 import Duration

from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc

Context = grpc.aio.ServicerContext[pb.AgentMessage, pb.HubMessage]


def duration(seconds: float) -> Duration:
    found = Duration()
    found.FromTimedelta(timedelta(seconds=seconds))
    return found


def pace(heartbeat_s: float, telemetry_s: float = 0.0) -> pb.HubMessage:
    return pb.HubMessage(pace=pb.Pace(heartbeat_interval=duration(heartbeat_s),
                                      telemetry_interval=duration(telemetry_s)))  # fmt: skip


@dataclass
class Beat:
    at: float  # when the hub read it (the loop's clock)
    message: pb.Heartbeat


@dataclass
class Stream:
    """One agent's stream: what the hub read on it, and a way to speak on it."""

    node: str
    welcomed_at: float
    beats: list[Beat] = field(default_factory=list)
    outbox: asyncio.Queue[pb.HubMessage | grpc.StatusCode] = field(default_factory=asyncio.Queue)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, message: pb.HubMessage) -> None:
        self.outbox.put_nowait(message)

    def abort(self) -> None:
        """Break the stream the way a failing hub does (UNAVAILABLE)."""
        self.outbox.put_nowait(grpc.StatusCode.UNAVAILABLE)

    async def beat(self, count: int, within: float = 10.0) -> list[Beat]:
        """Wait until `count` heartbeats came on this stream; all of them so far."""
        async with asyncio.timeout(within):
            while len(self.beats) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.beats


class ScriptedHub:
    """Registered with add_AgentLinkServicer_to_server (which needs only Connect)."""

    def __init__(self, heartbeat_s: float, telemetry_s: float = 0.0) -> None:
        self.heartbeat_s = heartbeat_s
        self.telemetry_s = telemetry_s
        self.streams: list[Stream] = []  # every stream, in the order their hellos came
        self.joined = asyncio.Event()

    async def Connect(
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: Context
    ) -> AsyncIterator[pb.HubMessage]:
        loop = asyncio.get_running_loop()
        messages = aiter(request_iterator)
        hello = (await anext(messages)).hello
        stream = Stream(hello.node_name, loop.time())
        self.streams.append(stream)
        self.joined.set()
        reader = asyncio.create_task(self._read(messages, stream))
        try:
            yield pb.HubMessage(welcome=pb.Welcome(
                node_name=hello.node_name,
                heartbeat_interval=duration(self.heartbeat_s),
                telemetry_interval=duration(self.telemetry_s),
            ))  # fmt: skip
            while True:
                message = await stream.outbox.get()
                if isinstance(message, grpc.StatusCode):
                    await context.abort(message, "scripted failure")
                yield message
                if message.HasField("goodbye"):
                    return
        finally:
            reader.cancel()
            stream.ended.set()

    @staticmethod
    async def _read(messages: AsyncIterator[pb.AgentMessage], stream: Stream) -> None:
        loop = asyncio.get_running_loop()
        async for message in messages:
            if message.HasField("heartbeat"):
                stream.beats.append(Beat(loop.time(), message.heartbeat))
                stream.arrived.set()


@asynccontextmanager
async def serving(hub: ScriptedHub) -> AsyncIterator[str]:
    """The hub on a free loopback port; its address."""
    server = grpc.aio.server()
    agent_link_pb2_grpc.add_AgentLinkServicer_to_server(hub, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)
