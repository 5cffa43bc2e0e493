"""The agent's side of the link: dial the hub, say hello, heartbeat, run tasks, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager

import grpc

from agent.backoff import Backoff
from agent.beating import EARLY_CHECK_S, Heartbeats, pace_from, telemetry_words
from agent.cache.store import ModelCache
from agent.envs.store import EnvStore
from agent.health import HealthMonitor
from agent.pace import Pace
from agent.probes import GpuProbe, ProbeResult
from agent.processes import Processes
from agent.reporter import PROJECTS_TIMEOUT_S, Identity, Reporter, observed_to_proto
from agent.tasks.context import Preflight
from agent.tasks.runner import TaskRunner
from gpufleet.channel import SETTINGS
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc

__all__ = ["AgentLink", "ChannelFactory", "Identity", "insecure_channel", "observed_to_proto"]
log = logging.getLogger(__name__)

WELCOME_TIMEOUT_S = 60.0  # a restarted hub registers 10,000 hellos in a burst
STABLE_S = 10.0  # a session that lasted this long resets the reconnect backoff

Call = grpc.aio.StreamStreamCall[pb.AgentMessage, pb.HubMessage]
ChannelFactory = Callable[[], AbstractAsyncContextManager[grpc.aio.Channel]]


class Ended(Exception):
    """The session ended in an orderly way (hub said goodbye or closed the stream)."""


class LinkDown(Exception):
    """The call failed before or while we wrote to it (grpc.aio raises InvalidStateError)."""


async def write(call: Call, message: pb.AgentMessage) -> None:
    try:
        await call.write(message)
    except asyncio.InvalidStateError:
        code = await call.code()
        details = await call.details()
        raise LinkDown(f"{code.name}: {details}") from None


def insecure_channel(target: str) -> ChannelFactory:
    def factory() -> AbstractAsyncContextManager[grpc.aio.Channel]:
        return grpc.aio.insecure_channel(target, options=SETTINGS.client_options())

    return factory


class AgentLink:
    """The link to the hub. What it says (hello, heartbeats) comes from its Reporter; when it
    says it, from the hub's pace (agent/pace.py), with an early beat when a change waits."""

    def __init__(
        self,
        hub: str,
        identity: Identity,
        probe: GpuProbe,
        channel: ChannelFactory | None = None,
        backoff: Backoff | None = None,
        tasks: TaskRunner | None = None,
        projects_timeout_s: float = PROJECTS_TIMEOUT_S,
        on_attempt: Callable[[bool], None] | None = None,
        monitor: HealthMonitor | None = None,
        preflight: Preflight | None = None,
        envs: EnvStore | None = None,
        processes: Processes | None = None,
        llama_env_backends: Sequence[str] = (),
        caches: ModelCache | None = None,
        rng: random.Random | None = None,
        early_check_s: float = EARLY_CHECK_S,
    ) -> None:
        # Jitter of heartbeats and reconnects; tests inject a seeded one.
        self.rng = rng or random.Random()
        # What runs and its health, watched while the link runs; None: podman ps alone.
        self.monitor = monitor
        # None: the agent runs no tasks (and no projects), as in benchmarks of the link alone.
        self.tasks = tasks if tasks is not None else TaskRunner({})
        self.reporter = Reporter(
            identity, probe, self.tasks, projects_timeout_s=projects_timeout_s, monitor=monitor,
            preflight=preflight, envs=envs, processes=processes,
            llama_env_backends=llama_env_backends, caches=caches,
        )  # fmt: skip
        # How often a change that waits is looked for between beats (0: no early beats).
        self.early_check_s = early_check_s
        # Told after each dial: True once connected, False when the attempt failed (the
        # daemon sends systemd READY=1 after the first either way).
        self.on_attempt = on_attempt
        self.hub = hub
        self.identity = identity
        self.channel = channel or insecure_channel(hub)
        self.backoff = backoff or Backoff(rng=self.rng)
        self.connected = asyncio.Event()

    @property
    def pace(self) -> Pace:
        """What the hub asked for in its welcome, or later in a Pace message."""
        return self.reporter.pace

    @pace.setter
    def pace(self, pace: Pace) -> None:
        self.reporter.pace = pace

    @property
    def last_probe(self) -> ProbeResult | None:
        return self.reporter.last_probe

    async def hello(self) -> pb.Hello:
        return await self.reporter.hello()

    async def heartbeat(self, seq: int) -> pb.Heartbeat:
        return await self.reporter.heartbeat(seq)

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set; reconnect with backoff whenever the link drops."""
        loop = asyncio.get_running_loop()
        watching = None
        if self.monitor is not None:
            watching = asyncio.create_task(self.monitor.watch(stop), name="health")
        while not stop.is_set():
            began = loop.time()
            try:
                await self._session(stop)
            except Ended as exc:
                log.info("link to hub %s ended: %s", self.hub, exc)
            except grpc.aio.AioRpcError as exc:
                self._log_rpc_error(exc)
            except LinkDown as exc:
                log.warning("link to hub %s down: %s", self.hub, exc)
            except Exception:  # a bug in a session must not end the daemon: log, back off
                log.exception("link to hub %s failed unexpectedly", self.hub)
            if not self.connected.is_set() and self.on_attempt is not None:
                self.on_attempt(False)
            held = self.connected.is_set() and loop.time() - began >= STABLE_S
            self.connected.clear()
            if stop.is_set():
                break
            # Only a link that held starts over (no tight reconnect loops), and at a random
            # point of a heartbeat interval: the hub paced it for the cluster's size, so the
            # cluster's redials reach a restarted hub at about the rate its heartbeats did.
            delay = self.backoff.after_link(self.pace.heartbeat_s) if held else self.backoff.next()
            log.info("reconnecting to %s in %.1f s", self.hub, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        await self.tasks.shutdown()
        if watching is not None:
            await watching

    def _log_rpc_error(self, exc: grpc.aio.AioRpcError) -> None:
        code, details = exc.code(), exc.details() or ""
        if code in (
            grpc.StatusCode.ALREADY_EXISTS,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED,
        ):
            log.error("hub %s refused this agent: %s", self.hub, details)
        elif code == grpc.StatusCode.UNAVAILABLE and not self.connected.is_set():
            reason = details.splitlines()[0] if details else code.name
            log.warning("cannot reach hub at %s: %s", self.hub, reason)
        else:
            log.warning("link to hub %s lost: %s %s", self.hub, code.name, details)

    async def _session(self, stop: asyncio.Event) -> None:
        hello = await self.hello()  # before dialing: probing must not eat the hub's hello timeout
        async with self.channel() as channel:
            call = agent_link_pb2_grpc.AgentLinkStub(channel).Connect()
            try:
                await write(call, pb.AgentMessage(hello=hello))
                try:
                    first = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT_S)
                except TimeoutError:
                    raise LinkDown(f"no welcome within {WELCOME_TIMEOUT_S:.0f} s") from None
                if not isinstance(first, pb.HubMessage) or first.WhichOneof("body") != "welcome":
                    raise Ended("hub did not welcome this agent")
                welcome = first.welcome
                pace = pace_from(welcome.heartbeat_interval, welcome.telemetry_interval)
                if pace is None:
                    raise Ended("hub welcomed this agent without a heartbeat interval")
                self.pace = pace
                log.info(
                    "connected to hub %s as %s (heartbeat every %g s, %s)",
                    self.hub,
                    welcome.node_name,
                    pace.heartbeat_s,
                    telemetry_words(pace),
                )
                self.connected.set()
                if self.on_attempt is not None:
                    self.on_attempt(True)
                await self._converse(call, stop)
            finally:
                call.cancel()

    async def _converse(self, call: Call, stop: asyncio.Event) -> None:
        outbox: asyncio.Queue[pb.AgentMessage] = asyncio.Queue()
        self.tasks.attach(outbox.put_nowait)
        beats = Heartbeats(self.pace.heartbeat_s, self.rng, self.heartbeat, outbox.put_nowait,
                           self.reporter.pending, self.early_check_s)  # fmt: skip
        jobs = {
            asyncio.create_task(self._write(call, outbox)),
            asyncio.create_task(beats.run()),
            asyncio.create_task(self._read(call, beats)),
            asyncio.create_task(stop.wait()),
        }
        try:
            done, _ = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
            for job in done:
                job.result()  # re-raise what ended the session
            if stop.is_set():
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    await asyncio.wait_for(call.done_writing(), 1.0)
        finally:
            self.tasks.attach(lambda _message: None)
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    @staticmethod
    async def _write(call: Call, outbox: asyncio.Queue[pb.AgentMessage]) -> None:
        while True:
            await write(call, await outbox.get())

    async def _read(self, call: Call, beats: Heartbeats) -> None:
        async for message in _messages(call):
            kind = message.WhichOneof("body")
            if kind == "pace":
                self._repace(message.pace, beats)
            elif kind == "task":
                self.tasks.submit(message.task)
            elif kind == "cancel":
                self.tasks.cancel(message.cancel.task_id)
            elif kind == "goodbye":
                raise Ended(f"hub said goodbye: {message.goodbye.reason}")
            else:
                log.warning("ignoring unexpected %s message from the hub", kind)
        raise Ended("hub closed the stream")

    def _repace(self, message: pb.Pace, beats: Heartbeats) -> None:
        pace = pace_from(message.heartbeat_interval, message.telemetry_interval)
        if pace is None:
            log.warning("ignoring a pace from the hub without a heartbeat interval")
            return
        if pace == self.pace:
            return
        log.info(
            "hub %s paced this agent: heartbeat every %g s, %s (was every %g s, %s)",
            self.hub,
            pace.heartbeat_s,
            telemetry_words(pace),
            self.pace.heartbeat_s,
            telemetry_words(self.pace),
        )
        self.pace = pace
        beats.repace(pace.heartbeat_s)


async def _messages(call: Call) -> AsyncIterator[pb.HubMessage]:
    while True:
        message = await call.read()
        if not isinstance(message, pb.HubMessage):  # grpc.aio.EOF
            return
        yield message
