"""Each node's llama-cpp-python environments, as its agent last reported them (Hello.envs, then
Heartbeat.envs whenever they changed). Kept in memory: the agent is the authority and reports
them again at every connect; a node that went down keeps what it said last, flagged as such.

EnvInfo <-> EnvView is converted here and nowhere else; a report is bounded (at most MAX_ENVS
environments, strings cut) and an environment whose state the hub does not know is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gpufleet import envnames
from gpufleet.envkey import version_order
from gpufleet.v1 import agent_link_pb2 as pb
from hub import limits

MAX_ENVS = 64  # environments one node may report
MAX_PROJECTS = 16  # projects one environment may say run from it
STATES = ("building", "ready", "failed", "broken")
BACKENDS = envnames.BACKENDS
READY = "ready"


class TooManyEnvs(ValueError):
    """A report with more environments than MAX_ENVS: a broken or hostile agent."""


@dataclass(frozen=True)
class EnvBuild:
    """What to build: BuildEnv's fields (validated by the service that asked)."""

    backend: str
    version: str = ""  # empty: the agent's default
    extra_targets: tuple[str, ...] = ()
    no_cache: bool = False

    @property
    def environment(self) -> str:
        """What a process would name: the backend, or BACKEND-VERSION."""
        return f"{self.backend}-{self.version}" if self.version else self.backend


@dataclass(frozen=True)
class EnvView:
    name: str  # BACKEND-VERSION
    backend: str
    version: str
    state: str
    message: str = ""
    gpu_offload: bool = False
    devices: tuple[str, ...] = ()
    size_bytes: int = 0
    built_at: datetime | None = None
    origin: str = ""  # compiled | cache
    key: str = ""
    system_info: str = ""
    # The host process projects (model-NAME) its agent says run from it now.
    projects: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.state == READY


def env_from_proto(info: pb.EnvInfo) -> EnvView | None:
    """None for an environment the hub cannot use (unknown state or backend, bad name)."""
    if info.state not in STATES or info.backend not in BACKENDS:
        return None
    name = limits.message(info.name, 64)
    if name != f"{info.backend}-{info.version}" or not name.isprintable():
        return None
    try:
        built = info.built_at.ToDatetime(tzinfo=UTC) if info.HasField("built_at") else None
    except ValueError:  # out of range: a broken agent clock, not a reason to drop the link
        built = None
    return EnvView(
        name=name,
        backend=info.backend,
        version=name.partition("-")[2],
        state=info.state,
        message=limits.message(info.message, 2000),
        gpu_offload=info.gpu_offload,
        devices=tuple(limits.message(d, 200) for d in info.devices[:16]),
        size_bytes=info.size_bytes,
        built_at=built,
        origin=limits.message(info.origin, 16),
        key=limits.message(info.key, 64),
        system_info=limits.message(info.system_info, 2000),
        projects=tuple(limits.message(p, 64) for p in info.projects[:MAX_PROJECTS]),
    )


def env_to_proto(view: EnvView) -> pb.EnvInfo:
    found = pb.EnvInfo(
        name=view.name, backend=view.backend, version=view.version, state=view.state,
        message=view.message, gpu_offload=view.gpu_offload, devices=list(view.devices),
        size_bytes=view.size_bytes, origin=view.origin, key=view.key,
        system_info=view.system_info, projects=list(view.projects),
    )  # fmt: skip
    if view.built_at is not None:
        found.built_at.FromDatetime(view.built_at)
    return found


def envs_from_proto(infos: Sequence[pb.EnvInfo]) -> tuple[EnvView, ...]:
    """TooManyEnvs past MAX_ENVS; environments the hub cannot use are left out."""
    if len(infos) > MAX_ENVS:
        raise TooManyEnvs(f"{len(infos)} environments reported (at most {MAX_ENVS}): upgrade "
                          "the agent")  # fmt: skip
    return tuple(v for v in (env_from_proto(i) for i in infos) if v is not None)


class NodeEnvs:
    """node -> its environments. Written by the agent link, read by listings and operations."""

    def __init__(self) -> None:
        self._envs: dict[str, tuple[EnvView, ...]] = {}
        # Per node, the backends its agent runs from a --llama-env directory (from its hello).
        self._given: dict[str, frozenset[str]] = {}

    def report(self, node: str, envs: tuple[EnvView, ...],
               given: Sequence[str] | None = None) -> None:  # fmt: skip
        """The node's environments (a hello or a heartbeat); `given` (hello only): the
        backends its agent was started with --llama-env for."""
        self._envs[node] = envs
        if given is not None:
            backends = frozenset(b for b in given if b in BACKENDS)
            if backends:
                self._given[node] = backends
            else:  # most nodes: no entry rather than an empty set each (200 bytes)
                self._given.pop(node, None)

    def update(self, node: str, env: EnvView) -> None:
        """One environment as a task's result says it is now (before the next heartbeat)."""
        others = tuple(e for e in self.of(node) if e.name != env.name)
        self._envs[node] = (*others, env)

    def of(self, node: str) -> tuple[EnvView, ...]:
        return self._envs.get(node, ())

    def nodes(self) -> list[str]:
        return sorted(self._envs)

    def items(self) -> Iterable[tuple[str, tuple[EnvView, ...]]]:
        return sorted(self._envs.items())

    def resolve(self, node: str, environment: str) -> EnvView | None:
        """The environment a process of `environment` (a backend, or BACKEND-VERSION) would
        run from on the node, as the agent resolves it (agent/envs/store.py): the named one, or
        the newest ready one of the backend; None when there is none. (An agent started with
        --llama-env BACKEND=DIR runs a backend's processes from DIR: `ready` knows.)"""
        envs = self.of(node)
        if "-" in environment:
            return next((e for e in envs if e.name == environment), None)
        ready = [e for e in envs if e.backend == environment and e.ready]
        return max(ready, key=lambda e: version_order(e.version), default=None)

    def ready(self, node: str, environment: str) -> bool:
        """A process of `environment` can start on the node now: the backend was given to
        its agent with --llama-env, or the environment it resolves to is ready."""
        if environment in self._given.get(node, ()):
            return True
        found = self.resolve(node, environment)
        return found is not None and found.ready
