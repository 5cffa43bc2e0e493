"""The AgentLink service: one bidirectional stream per connected agent."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError

from gpufleet.channel import PROTOCOL_VERSION
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc, types_pb2
from hub import convert
from hub.envs.view import MAX_ENVS, EnvView, NodeEnvs, TooManyEnvs, envs_from_proto
from hub.pace import Pace, Pacer
from hub.registrar import Registrar
from hub.registry.caches import CachedView, NodeCaches
from hub.registry.convert_caches import MAX_CACHES, TooManyCaches, caches_from_proto
from hub.sessions import AgentSession, NameInUse, SessionRegistry
from hub.store import Database, GpuTelemetryRecord, NodeHello, Store
from hub.telemetry import TelemetryRecorder
from hub.trust import callers

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[pb.AgentMessage, pb.HubMessage]

# A restart's reconnect storm can keep the loop from reading a hello for over 10 s: at 10 s,
# 15 of 10,000 agents were cut before their Welcome. The peer is authenticated already.
HELLO_TIMEOUT_S = 60.0
MAX_PROJECTS = 16  # what one heartbeat may say a node runs
MAX_SERVICES = 256
MALFORMED = "malformed message: not a gpufleet.v1.AgentMessage"


class WrongIdentity(Exception):
    """The hello names another node than the certificate."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def duration(seconds: float) -> Duration:
    value = Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def telemetry_of(hello: NodeHello) -> tuple[GpuTelemetryRecord, ...]:
    """The telemetry part of the hello's GPUs (register writes it with them)."""
    names = [f.name for f in dataclasses.fields(GpuTelemetryRecord)]
    return tuple(
        GpuTelemetryRecord(**{name: getattr(gpu, name) for name in names}) for gpu in hello.gpus
    )


def pace_message(pace: Pace) -> pb.HubMessage:
    return pb.HubMessage(
        pace=pb.Pace(
            heartbeat_interval=duration(pace.heartbeat_s),
            telemetry_interval=duration(pace.telemetry_s),
        )
    )


def envs_reported(node: str, infos: Sequence[pb.EnvInfo]) -> tuple[EnvView, ...] | None:
    """A node's environments report: past MAX_ENVS the first MAX_ENVS (an agent may well have
    kept that many failed builds); None for a report the hub cannot read. Either is logged and
    never costs the node its link."""
    try:
        try:
            return envs_from_proto(infos)
        except TooManyEnvs as exc:
            log.warning("node %s: %s; keeping the first %d", node, exc, MAX_ENVS)
            return envs_from_proto(infos[:MAX_ENVS])
    except ValueError as exc:  # e.g. a built_at out of range
        log.warning("node %s: environments report ignored: %s", node, exc)
        return None


def caches_reported(node: str, entries: Sequence[pb.CachedEntry]) -> tuple[CachedView, ...] | None:
    """A node's model cache report: past MAX_CACHES the first MAX_CACHES; None for a report
    the hub cannot read. Either is logged and never costs the node its link."""
    try:
        try:
            return caches_from_proto(entries)
        except TooManyCaches as exc:
            log.warning("node %s: %s; keeping the first %d", node, exc, MAX_CACHES)
            return caches_from_proto(entries[:MAX_CACHES])
    except ValueError as exc:
        log.warning("node %s: model cache report ignored: %s", node, exc)
        return None


class AgentLinkService(agent_link_pb2_grpc.AgentLinkServicer):  # type: ignore[misc]
    def __init__(
        self,
        registry: SessionRegistry,
        db: Database,
        store: Store,
        pacer: Pacer,
        hub_version: str,
        monotonic: Callable[[], float],
        on_connect: Callable[[AgentSession, list[pb.RunningProject] | None], None],
        envs: NodeEnvs | None = None,
        caches: NodeCaches | None = None,
        recorder: TelemetryRecorder | None = None,
    ) -> None:
        self.recorder = recorder
        # Hellos are written in batches: a restart's 10,000 take seconds, not minutes.
        self.registrar = Registrar(db)
        # Set by the hub's stop(): streams ending then only note what to write, in `ended`.
        self.stopping = False
        self.ended: list[tuple[str, datetime | None, tuple[GpuTelemetryRecord, ...]]] = []
        self.on_connect = on_connect
        self.envs = envs if envs is not None else NodeEnvs()
        # Each node's model cache; a node that goes down keeps what it said last.
        self.caches = caches if caches is not None else NodeCaches()
        self.registry = registry
        self.db = db
        self.store = store
        self.pacer = pacer
        self.hub_version = hub_version
        self.monotonic = monotonic

    async def Connect(
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: Context
    ) -> AsyncIterator[pb.HubMessage]:
        # The stream's lifetime holds only the session and its reader: the hello (its
        # protobuf arena) and its record live in _open, not in this frame. Messages are read
        # with context.read(), not request_iterator: gRPC's iterator holds the last message
        # while it waits for the next (one message and its arena per connected agent).
        session, reader = await self._open(context)
        try:
            yield pb.HubMessage(welcome=self._welcome(session))
            while True:
                item = await session.outbox.get()
                if isinstance(item, pb.HubMessage):
                    yield item
                    continue
                if item.code is not None:
                    log.warning("closing stream of node %s: %s", session.name, item.reason)
                    await context.abort(item.code, item.reason)
                log.info("stream of node %s ended: %s", session.name, item.reason)
                return
        finally:
            self._end(session, reader)

    def _end(self, session: AgentSession, reader: asyncio.Task[None]) -> None:
        reader.cancel()
        session.close("stream ended")
        if not self.registry.release(session):
            return
        if self.stopping:  # written together by the hub's stop(), not one transaction each
            self.ended.append((session.name, session.last_seen, session.unwritten_telemetry()))
            return
        self.db.submit(self.store.mark_down, session.name, utcnow(), session.last_seen,
                       session.unwritten_telemetry())  # fmt: skip
        log.info("node %s is down", session.name)

    async def _open(self, context: Context) -> tuple[AgentSession, asyncio.Task[None]]:
        """The hello read and checked, the node's session opened, its reader started, its
        hello registered."""
        peer = context.peer()
        hello = await self._hello(context)
        try:
            record = self._authenticated(convert.hello_from_proto(hello, peer))
            advertised = convert.advertised_from_proto(hello)
            session = self.registry.open(
                record.name, record.agent_id, peer, self.monotonic(), utcnow()
            )
            session.advertised = advertised
            session.registering = True
            session.interval = self.pacer.current.heartbeat_s
            session.telemetry_interval = self.pacer.current.telemetry_s
        except convert.InvalidHello as exc:
            log.warning("refused agent stream from %s: %s", peer, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # unreachable: abort raises
        except WrongIdentity as exc:
            log.warning("refused agent stream from %s: %s", peer, exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            raise
        except NameInUse as exc:
            log.warning("refused agent %s from %s: %s", hello.node_name, peer, exc)
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
            raise
        envs = envs_reported(record.name, hello.envs)
        self.envs.report(record.name, envs if envs is not None else self.envs.of(record.name),
                         given=list(hello.llama_env_backends))  # fmt: skip
        cached = caches_reported(record.name, hello.caches)
        if cached is not None:
            self.caches.replace(record.name, cached)
        session.telemetry = telemetry_of(record)
        session.gpu_states = {gpu.index: gpu.state for gpu in record.gpus}
        session.gpu_uuids = {gpu.index: gpu.uuid for gpu in record.gpus}
        reader = asyncio.create_task(self._read(session, context))
        try:
            await self.registrar.register(record, utcnow())
            # Liveness counts from the welcome: a slow database must not expire the session.
            self.registry.heartbeat(session, self.monotonic(), utcnow())
            session.registering = False
            self.on_connect(session, None if hello.projects_unknown else list(hello.projects))
        except BaseException:
            self._end(session, reader)
            raise
        log.info("node %s connected from %s (agent %s, %d GPUs)",
                 record.name, peer, record.agent_version, len(record.gpus))  # fmt: skip
        return session, reader

    def _authenticated(self, record: NodeHello) -> NodeHello:
        """The node's name comes from its certificate; labels from its join token win."""
        caller = callers.current.get()
        if caller is callers.INSECURE:
            return record
        if caller.node_name != record.name:
            raise WrongIdentity(
                f"certificate of {caller.identity} cannot say hello as node {record.name!r}"
            )
        return dataclasses.replace(record, labels={**record.labels, **caller.labels})

    async def _hello(self, context: Context) -> pb.Hello:
        try:
            first = await asyncio.wait_for(context.read(), HELLO_TIMEOUT_S)
        except TimeoutError:
            first = None
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, MALFORMED)
            raise
        if not isinstance(first, pb.AgentMessage):  # timed out, or grpc.aio.EOF: no hello
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"no hello within {HELLO_TIMEOUT_S:.0f} s"
            )
            raise AssertionError("unreachable: abort raises")
        if first.WhichOneof("body") != "hello":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message on the stream must be hello"
            )
        if first.hello.versions.protocol != PROTOCOL_VERSION:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"agent speaks link protocol {first.hello.versions.protocol}, this hub speaks "
                f"{PROTOCOL_VERSION}: install matching gpufleet versions",
            )
        return first.hello

    def _welcome(self, session: AgentSession) -> pb.Welcome:
        return pb.Welcome(
            node_name=session.name,
            heartbeat_interval=duration(session.interval),
            telemetry_interval=duration(session.telemetry_interval),
            hub_version=self.hub_version,
        )

    def _heartbeat(self, session: AgentSession, beat: pb.Heartbeat) -> None:
        mono = self.monotonic()
        sent = beat.sent_at.ToNanoseconds() / 1e9 if beat.HasField("sent_at") else None
        if not session.allow_heartbeat(mono, session.flood_interval, sent):
            session.close(
                f"heartbeats arrive far faster than one per {session.flood_interval:g} s",
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )
            return
        now = utcnow()
        self.registry.heartbeat(session, mono, now)
        if beat.HasField("projects") and not self._projects(session, beat.projects):
            return
        if beat.HasField("envs"):
            envs = envs_reported(session.name, beat.envs.envs)
            if envs is not None:
                self.envs.report(session.name, envs)
        if beat.HasField("caches"):
            cached = caches_reported(session.name, beat.caches.caches)
            if cached is not None:
                self.caches.replace(session.name, cached)
        if beat.HasField("inventory"):
            inventory = convert.inventory_from_proto(beat.inventory)
            gpus = inventory[2]
            session.gpu_uuids = {gpu.index: gpu.uuid for gpu in gpus}
            log.info("node %s: inventory changed (%d GPUs, %d preflight problems)",
                     session.name, len(gpus), len(inventory[3]))  # fmt: skip
            # Written with the next batch: a chatty agent costs one write per interval.
            session.inventory = inventory
        if not beat.telemetry_unchanged:
            self._telemetry(session, beat.gpus, now)

    def _telemetry(
        self, session: AgentSession, gpus: Sequence[types_pb2.GpuTelemetry], now: datetime
    ) -> None:
        """Every GPU telemetry report passes here, once: kept in the session (written to the
        database in batches when it changed), GPU state changes written at once."""
        samples = tuple(convert.telemetry_from_proto(sample) for sample in gpus)
        if self.recorder is not None and samples:
            self.recorder.record(session.name, samples, now)
        if not session.report(samples, now):
            return
        for sample in session.telemetry:
            before = session.gpu_states.get(sample.index, "ok")
            session.gpu_states[sample.index] = sample.state
            if before == sample.state:
                continue
            uuid = session.gpu_uuids.get(sample.index, "?")
            if sample.state == "lost":
                kind, text = (
                    "gpu_lost",
                    f"GPU {sample.index} ({uuid}) lost: the driver reports it gone",
                )
            else:
                kind, text = (
                    "gpu_recovered",
                    f"GPU {sample.index} ({uuid}) is back ({sample.state})",
                )
            log.warning("node %s: %s", session.name, text)
            self.db.submit(
                self.store.gpu_state_changed, session.name, sample.index, sample.state, now,
                kind, text,
            )  # fmt: skip

    def _projects(self, session: AgentSession, report: pb.ProjectsReport) -> bool:
        """What the agent runs changed (a container stopped, a health check started or
        stopped passing): as after a hello, it becomes the node's state unless an operation
        holds the node; the session's project is updated either way. False: refused."""
        services = sum(len(project.services) for project in report.projects)
        if len(report.projects) > MAX_PROJECTS or services > MAX_SERVICES:
            session.close(
                f"heartbeat.projects: {len(report.projects)} projects with {services} services "
                f"(at most {MAX_PROJECTS} and {MAX_SERVICES}): upgrade the agent",
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            return False
        self.on_connect(session, None if report.unknown else list(report.projects))
        return True

    async def _read(self, session: AgentSession, context: Context) -> None:
        try:
            # No name holds the message while the next is awaited: the last one of each of
            # 10,000 streams would stay alive.
            while self._receive(session, await context.read()):
                pass
        except asyncio.CancelledError:
            raise
        except convert.InvalidHello as exc:
            session.close(str(exc), grpc.StatusCode.INVALID_ARGUMENT)
        except DecodeError:
            session.close(MALFORMED, grpc.StatusCode.INVALID_ARGUMENT)
        except Exception as exc:  # the transport failed under us: the stream is over
            session.close(f"stream broke: {exc}")

    def _receive(self, session: AgentSession, message: object) -> bool:
        """One message of the agent (grpc.aio.EOF: it closed the stream); False: the stream
        is closed for it."""
        if not isinstance(message, pb.AgentMessage):
            session.close("agent closed the stream")
            return False
        kind = message.WhichOneof("body")
        if kind == "heartbeat":
            self._heartbeat(session, message.heartbeat)
        elif kind == "task_result":
            if not session.resolve(message.task_result):
                session.close(
                    f"task result for unknown task {message.task_result.task_id!r}",
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
                return False
        elif kind == "task_event":
            event = message.task_event
            if event.HasField("progress"):
                progress = convert.progress_from_proto(event.progress)
                session.progress(event.task_id, progress, self.monotonic())
        else:
            session.close(f"unexpected {kind} message", grpc.StatusCode.INVALID_ARGUMENT)
            return False
        return True
