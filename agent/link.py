"""The agent's side of the link: dial the hub, say hello, heartbeat, run tasks, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import random
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import grpc
from google.protobuf.duration_pb2 import Duration

import gpufleet
from agent import managed
from agent.backoff import Backoff
from agent.cache.index import CachedEntry
from agent.cache.protos import caches_report, entry_to_proto
from agent.cache.store import ModelCache
from agent.convert import inventory_to_proto, running_to_proto
from agent.envs.protos import env_to_proto, envs_report
from agent.envs.record import EnvRecord
from agent.envs.store import EnvStore
from agent.health import HealthMonitor, Observed
from agent.pace import Beats, Pace, telemetry_due
from agent.probes import GpuInfo, GpuProbe, ProbeResult
from agent.processes import Processes
from agent.tasks.context import NoPreflight, Preflight
from agent.tasks.runner import TaskRunner
from gpufleet.channel import PROTOCOL_VERSION, SETTINGS
from gpufleet.gpus import telemetry_to_proto
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc

# Each environment with the host process projects that run from it, as last sent.
EnvsSeen = tuple[tuple[EnvRecord, tuple[str, ...]], ...]
log = logging.getLogger(__name__)

WELCOME_TIMEOUT_S = 30.0
PROJECTS_TIMEOUT_S = 15.0
STABLE_S = 10.0  # a session that lasted this long resets the reconnect backoff
DEFAULT_PACE = Pace(5.0)  # until a hub tells its own: telemetry with every heartbeat
HELLO_PREFLIGHT_S = 3.0  # a slower podman preflight reaches the hub with a later heartbeat

Call = grpc.aio.StreamStreamCall[pb.AgentMessage, pb.HubMessage]
ChannelFactory = Callable[[], AbstractAsyncContextManager[grpc.aio.Channel]]


@dataclass(frozen=True)
class Identity:
    name: str
    agent_id: str
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = field(default_factory=socket.gethostname)
    # Where the cluster reaches this host's model servers; "": its hostname.
    advertise_address: str = ""


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
    ) -> None:
        # Jitter of heartbeats and reconnects; tests inject a seeded one.
        self.rng = rng or random.Random()
        # What the hub asked for in its welcome, or later in a Pace message.
        self.pace = DEFAULT_PACE
        # The GPU telemetry last sent on this stream, and when (the loop's clock).
        self._sent_gpus: tuple[GpuInfo, ...] | None = None
        self._sent_gpus_at = 0.0
        # The model cache's entries: in the hello, in a heartbeat when changed.
        self.caches = caches
        self._sent_caches: tuple[CachedEntry, ...] | None = None
        # Backends given with --llama-env: told in the hello (they need no build).
        self.llama_env_backends = tuple(llama_env_backends)
        # The llama-cpp-python environments, each with the host processes that run from it
        # (`processes`): in the hello, in a heartbeat when changed.
        self.envs = envs
        self.processes = processes
        self._sent_envs: EnvsSeen | None = None
        # Podman problems, sent with the inventory (in the hello; in a heartbeat when changed).
        self.preflight = preflight or NoPreflight()
        # What runs and its health, for hellos and heartbeats; None: podman ps alone.
        self.monitor = monitor
        # Told after each dial: True once connected, False when the attempt failed (the
        # daemon sends systemd READY=1 after the first either way).
        self.on_attempt = on_attempt
        self.projects_timeout_s = projects_timeout_s
        self.hub = hub
        self.identity = identity
        self.probe = probe
        # None: the agent runs no tasks (and no projects), as in benchmarks of the link alone.
        self.tasks = tasks if tasks is not None else TaskRunner({})
        self.channel = channel or insecure_channel(hub)
        self.backoff = backoff or Backoff(rng=self.rng)
        self.connected = asyncio.Event()
        self._sent_static: tuple[object, ...] | None = None
        self._last_probe: ProbeResult | None = None

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

    @property
    def last_probe(self) -> ProbeResult | None:
        return self._last_probe

    async def _probe(self) -> ProbeResult:
        try:
            found = await asyncio.to_thread(self.probe.inventory)
        except Exception:
            # A probe bug must not cost the node its link, nor its GPUs at the hub.
            log.exception("GPU probe %s failed; reporting the last result", self.probe.name)
            return self._last_probe or ProbeResult(self.probe.name, error="probe failed")
        if self.monitor is not None:  # which GPU processes are this agent's (containers, servers)
            found = await asyncio.to_thread(
                managed.mark, found, self.monitor.container_ids(),
                sessions=self.monitor.sessions(),
            )  # fmt: skip
        self._last_probe = found
        if self._sent_static is None or found.static() != self._sent_static[0]:
            if found.error:
                log.warning("GPU probe %s: %s", found.probe, found.error)
            lost = [str(gpu.index) for gpu in found.gpus if gpu.state == "lost"]
            log.info("GPU inventory (%s): %d GPUs%s", found.probe, len(found.gpus),
                     f", lost: {', '.join(lost)}" if lost else "")  # fmt: skip
        return found

    async def _projects(self) -> list[pb.RunningProject] | None:
        """What runs now (health re-checked first); None when podman cannot tell in time."""
        context = self.tasks.context
        if context is None:
            return []
        if self.monitor is not None:
            try:
                checked = await asyncio.wait_for(self.monitor.recheck(), self.projects_timeout_s)
            except TimeoutError:
                log.warning("cannot check what runs within %g s", self.projects_timeout_s)
                return None
            except Exception as exc:  # a bad stored file must not keep the node off the hub
                log.warning("cannot check what runs: %r", exc)
                return None
            return None if checked is None else [observed_to_proto(o) for o in checked]
        try:
            found = await asyncio.wait_for(context.projects(), self.projects_timeout_s)
        except Exception as exc:  # podman trouble must not keep the node off the hub
            log.warning("cannot list running projects: %s", exc or type(exc).__name__)
            return None
        return [running_to_proto(running) for running in found]

    async def hello(self) -> pb.Hello:
        found = await self._probe()
        self._sent_gpus = None  # a new stream: its first heartbeat carries the telemetry
        problems = await self.preflight.current(HELLO_PREFLIGHT_S)
        self._sent_static = (found.static(), problems)
        projects = await self._projects()
        envs = self._envs()
        self._sent_envs = envs
        caches = self._caches()
        self._sent_caches = caches
        return pb.Hello(
            caches=[entry_to_proto(record) for record in caches or ()],
            envs=[env_to_proto(record, projects) for record, projects in envs or ()],
            llama_env_backends=list(self.llama_env_backends),
            projects=projects or [],
            projects_unknown=projects is None,
            node_name=self.identity.name,
            agent_id=self.identity.agent_id,
            labels=self.identity.labels,
            hostname=self.identity.hostname,
            advertise_address=self.identity.advertise_address,
            versions=pb.Versions(
                agent=gpufleet.__version__,
                python=platform.python_version(),
                protocol=PROTOCOL_VERSION,
            ),
            inventory=inventory_to_proto(found, problems),
        )

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
        # The hub counts liveness from its welcome: the first beat falls within an interval.
        beats = Beats(self.pace.heartbeat_s, asyncio.get_running_loop().time(), self.rng)
        repaced = asyncio.Event()
        jobs = {
            asyncio.create_task(self._write(call, outbox)),
            asyncio.create_task(self._heartbeat(outbox, beats, repaced)),
            asyncio.create_task(self._read(call, beats, repaced)),
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

    async def _heartbeat(
        self, outbox: asyncio.Queue[pb.AgentMessage], beats: Beats, repaced: asyncio.Event
    ) -> None:
        """When each beat is due: probe, send telemetry when it changed (or is due), and the
        inventory when it changed. A shorter pace wakes the wait (`repaced`)."""
        loop = asyncio.get_running_loop()
        seq = 0
        while True:
            while loop.time() < beats.due:
                repaced.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(beats.due):
                        await repaced.wait()
            outbox.put_nowait(pb.AgentMessage(heartbeat=await self.heartbeat(seq := seq + 1)))
            beats.beat(loop.time())

    async def heartbeat(self, seq: int) -> pb.Heartbeat:
        found = await self._probe()
        beat = pb.Heartbeat(seq=seq)
        now = asyncio.get_running_loop().time()
        since = now - self._sent_gpus_at
        if telemetry_due(self._sent_gpus, found.gpus, since, self.pace.telemetry_s):
            beat.gpus.extend(telemetry_to_proto(gpu) for gpu in found.gpus)
            self._sent_gpus, self._sent_gpus_at = found.gpus, now
        else:
            beat.telemetry_unchanged = True
        beat.sent_at.GetCurrentTime()
        problems = await self.preflight.current(0.0)  # a due check runs meanwhile
        if (found.static(), problems) != self._sent_static:
            beat.inventory.CopyFrom(inventory_to_proto(found, problems))
            self._sent_static = (found.static(), problems)
        envs = self._envs()
        if envs is not None and envs != self._sent_envs:
            beat.envs.CopyFrom(envs_report(envs))
            self._sent_envs = envs
        caches = self._caches()
        if caches is not None and caches != self._sent_caches:
            beat.caches.CopyFrom(caches_report(caches))
            self._sent_caches = caches
        if self.monitor is not None:
            changed, running = self.monitor.changed()
            if changed:
                beat.projects.CopyFrom(pb.ProjectsReport(
                    projects=[observed_to_proto(o) for o in running or []],
                    unknown=running is None,
                ))  # fmt: skip
        return beat

    def _envs(self) -> EnvsSeen | None:
        if self.envs is None:
            return None
        try:
            used = self.envs.in_use(self.processes) if self.processes is not None else {}
            return tuple((r, tuple(used.get(r.name, ()))) for r in self.envs.records())
        except OSError as exc:  # an unreadable envs dir must not cost the node its link
            log.warning("cannot list the llama-cpp-python environments: %s", exc)
            return self._sent_envs

    def _caches(self) -> tuple[CachedEntry, ...] | None:
        if self.caches is None:
            return None
        try:
            return tuple(self.caches.index.records())
        except OSError as exc:  # an unreadable cache must not cost the node its link
            log.warning("cannot list the model cache: %s", exc)
            return self._sent_caches

    async def _read(self, call: Call, beats: Beats, repaced: asyncio.Event) -> None:
        async for message in _messages(call):
            kind = message.WhichOneof("body")
            if kind == "pace":
                self._repace(message.pace, beats)
                repaced.set()
            elif kind == "task":
                self.tasks.submit(message.task)
            elif kind == "cancel":
                self.tasks.cancel(message.cancel.task_id)
            elif kind == "goodbye":
                raise Ended(f"hub said goodbye: {message.goodbye.reason}")
            else:
                log.warning("ignoring unexpected %s message from the hub", kind)
        raise Ended("hub closed the stream")

    def _repace(self, message: pb.Pace, beats: Beats) -> None:
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
        beats.repace(pace.heartbeat_s, asyncio.get_running_loop().time())


def pace_from(heartbeat: Duration, telemetry: Duration) -> Pace | None:
    """The pace a Welcome or Pace message asks for; None without a heartbeat interval."""
    heartbeat_s = heartbeat.ToTimedelta().total_seconds()
    if heartbeat_s <= 0:
        return None
    return Pace(heartbeat_s, max(0.0, telemetry.ToTimedelta().total_seconds()))


def telemetry_words(pace: Pace) -> str:
    if pace.telemetry_s <= 0:
        return "telemetry with every heartbeat"
    return f"telemetry when changed or every {pace.telemetry_s:g} s"


def observed_to_proto(found: Observed) -> pb.RunningProject:
    health = {name: (h.state, h.message) for name, h in found.health.items()}
    return running_to_proto(found.running, health)


async def _messages(call: Call) -> AsyncIterator[pb.HubMessage]:
    while True:
        message = await call.read()
        if not isinstance(message, pb.HubMessage):  # grpc.aio.EOF
            return
        yield message
