"""What the agent tells the hub about its node: the hello, and each heartbeat with what changed
since it was last sent (GPU telemetry when it moved or is due, the inventory, environments,
model cache, what runs and its health). `pending()` says whether a change waits that the hub
must hear before the next regular beat (agent/beating.py then sends an early one)."""

from __future__ import annotations

import asyncio
import logging
import platform
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import gpufleet
from agent import managed
from agent.cache.index import CachedEntry
from agent.cache.protos import caches_report, entry_to_proto
from agent.cache.store import ModelCache
from agent.convert import inventory_to_proto, running_to_proto
from agent.envs.protos import env_to_proto, envs_report
from agent.envs.record import EnvRecord
from agent.envs.store import EnvStore
from agent.health import HealthMonitor, Observed
from agent.pace import Pace, telemetry_due
from agent.probes import GpuInfo, GpuProbe, ProbeResult
from agent.processes import Processes
from agent.tasks.context import NoPreflight, Preflight
from agent.tasks.runner import TaskRunner
from gpufleet.channel import PROTOCOL_VERSION
from gpufleet.gpus import telemetry_to_proto
from gpufleet.v1 import agent_link_pb2 as pb

# Each environment with the host process projects that run from it, as last sent.
EnvsSeen = tuple[tuple[EnvRecord, tuple[str, ...]], ...]
log = logging.getLogger("agent.link")  # its lines belong to the link's (benchmarks read them)

PROJECTS_TIMEOUT_S = 15.0
DEFAULT_PACE = Pace(5.0)  # until a hub tells its own: telemetry with every heartbeat
HELLO_PREFLIGHT_S = 3.0  # a slower podman preflight reaches the hub with a later heartbeat


@dataclass(frozen=True)
class Identity:
    name: str
    agent_id: str
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = field(default_factory=socket.gethostname)
    # Where the cluster reaches this host's model servers; "": its hostname.
    advertise_address: str = ""


class Reporter:
    def __init__(
        self,
        identity: Identity,
        probe: GpuProbe,
        tasks: TaskRunner,
        projects_timeout_s: float = PROJECTS_TIMEOUT_S,
        monitor: HealthMonitor | None = None,
        preflight: Preflight | None = None,
        envs: EnvStore | None = None,
        processes: Processes | None = None,
        llama_env_backends: Sequence[str] = (),
        caches: ModelCache | None = None,
    ) -> None:
        self.identity = identity
        self.probe = probe
        self.tasks = tasks
        self.projects_timeout_s = projects_timeout_s
        # What the hub asked for in its welcome, or later in a Pace message.
        self.pace = DEFAULT_PACE
        # The GPU telemetry last sent on this stream, and when (the loop's clock).
        self._sent_gpus: tuple[GpuInfo, ...] | None = None
        self._sent_gpus_at = 0.0
        # Each GPU's state as the hub last heard it (in the hello or with telemetry).
        self._sent_states: tuple[tuple[int, str], ...] = ()
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
        self._sent_static: tuple[object, ...] | None = None
        self._logged_static: tuple[object, ...] | None = None
        self._last_probe: ProbeResult | None = None

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
        if found.static() != self._logged_static:
            self._logged_static = found.static()
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
        self._sent_states = states(found.gpus)
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

    async def heartbeat(self, seq: int) -> pb.Heartbeat:
        found = await self._probe()
        beat = pb.Heartbeat(seq=seq)
        now = asyncio.get_running_loop().time()
        since = now - self._sent_gpus_at
        if telemetry_due(self._sent_gpus, found.gpus, since, self.pace.telemetry_s):
            beat.gpus.extend(telemetry_to_proto(gpu) for gpu in found.gpus)
            self._sent_gpus, self._sent_gpus_at = found.gpus, now
            self._sent_states = states(found.gpus)
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

    async def pending(self) -> bool:
        """Whether the hub has yet to hear a change it acts on at once: what runs or its
        health, a GPU lost or back, the inventory (GPUs, podman problems), the environments
        or the model cache. Telemetry readings wait for the regular beat."""
        if self.monitor is not None and self.monitor.pending():
            return True
        found = await self._probe()
        if states(found.gpus) != self._sent_states:
            return True
        if (found.static(), await self.preflight.current(0.0)) != self._sent_static:
            return True
        envs = self._envs()
        if envs is not None and envs != self._sent_envs:
            return True
        caches = self._caches()
        return caches is not None and caches != self._sent_caches

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


def states(gpus: Sequence[GpuInfo]) -> tuple[tuple[int, str], ...]:
    return tuple((gpu.index, gpu.state) for gpu in gpus)


def observed_to_proto(found: Observed) -> pb.RunningProject:
    health = {name: (h.state, h.message) for name, h in found.health.items()}
    return running_to_proto(found.running, health)
