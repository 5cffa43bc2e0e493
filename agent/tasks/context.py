"""What a task may use on this host, handed to every task so no task reaches into another.

One TaskContext is built at start-up (agent/main.py); the runner gives each task a copy that
shares everything but the progress callback, which reports for that task alone.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from agent.compose import Container, Podman
from agent.envs.build import Builder
from agent.envs.store import EnvStore
from agent.probes import GpuProbe
from agent.processes import Processes
from agent.projects import ProjectStore

# phase, message, percent (0-100 where the task can tell)
ReportProgress = Callable[[str, str, float | None], None]


def _ignore(_phase: str, _message: str, _percent: float | None) -> None:
    pass


class Watcher(Protocol):
    """The health monitor (agent/health.py), told what tasks did to projects."""

    def touched(self, project: str) -> None: ...

    async def passed(self, project: str, services: Collection[str]) -> None: ...


class Preflight(Protocol):
    """The podman preflight (agent/preflight.py): what will make a compose run fail."""

    async def problems(self) -> tuple[str, ...]: ...

    async def current(self, wait: float) -> tuple[str, ...]: ...

    def stale(self) -> None: ...


class NoPreflight:
    async def problems(self) -> tuple[str, ...]:
        return ()

    async def current(self, wait: float) -> tuple[str, ...]:
        return ()

    def stale(self) -> None:
        pass


class NoWatcher:
    def touched(self, project: str) -> None:
        pass

    async def passed(self, project: str, services: Collection[str]) -> None:
        pass


@dataclass(frozen=True)
class Running:
    """A project as podman shows it now; no containers: it does not run."""

    name: str
    digest: str  # of the configuration it runs; "" when it does not run
    containers: tuple[Container, ...] = ()


@dataclass(frozen=True)
class TaskContext:
    store: ProjectStore
    podman: Podman
    probe: GpuProbe
    # URLs expand with what podman-compose expands the files with: the process's environment
    # (e.g. systemd Environment=) plus --env.
    env: Mapping[str, str]
    # One compose run at a time on this host, even if the hub retries after a reconnect.
    compose_lock: asyncio.Lock
    # Host process projects (agent/processes.py) and the llama-cpp-python environment
    # directory of each backend they may run from (--llama-env BACKEND=DIR).
    processes: Processes
    llama_envs: Mapping[str, Path] = field(default_factory=dict)
    # The llama-cpp-python environments built here (STATE_DIR/envs), and their builder (None:
    # this agent builds none).
    envs: EnvStore = field(default_factory=lambda: EnvStore(Path("/nonexistent")))
    builder: Builder | None = None
    node_name: str = "N"  # for the lines that tell the user what to run
    on_progress: ReportProgress = _ignore
    # Told when a task changed a project or found it healthy.
    watcher: Watcher = field(default_factory=NoWatcher)
    # Checked before each compose run; told when one failed (so it checks again).
    preflight: Preflight = field(default_factory=NoPreflight)

    @classmethod
    def create(
        cls,
        store: ProjectStore,
        podman: Podman,
        probe: GpuProbe,
        env: Mapping[str, str],
        watcher: Watcher | None = None,
        preflight: Preflight | None = None,
        processes: Processes | None = None,
        llama_envs: Mapping[str, Path] | None = None,
        envs: EnvStore | None = None,
        builder: Builder | None = None,
        node_name: str = "N",
    ) -> TaskContext:
        return cls(store, podman, probe, {**os.environ, **env}, asyncio.Lock(),
                   processes or Processes(store.root.parent), dict(llama_envs or {}),
                   envs=envs or EnvStore(store.root.parent), builder=builder,
                   node_name=node_name, watcher=watcher or NoWatcher(),
                   preflight=preflight or NoPreflight())  # fmt: skip

    def llama_env(self, environment: str) -> Path:
        """The directory a host process of `environment` (a backend or an environment name)
        runs from; EnvError (one line naming the fix) when there is none."""
        return self.envs.resolve(environment, self.llama_envs, self.node_name)

    def for_task(self, on_progress: ReportProgress) -> TaskContext:
        return replace(self, on_progress=on_progress)

    def progress(self, phase: str, message: str, percent: float | None = None) -> None:
        """Tell the hub what the task is doing (from the event loop, not a worker thread); the
        runner throttles it and sends it to the stream that asked for the task."""
        self.on_progress(phase, message, percent)

    async def running(self, name: str) -> Running:
        """What project `name` runs now (its supervised process, else podman ps)."""
        if self.processes.is_process(name):
            return Running(name, *self.processes.listing(name))
        containers = tuple(await self.podman.containers(name))
        digest = self.store.project(name).digest() if containers else ""
        return Running(name, digest, containers)

    async def projects(self) -> list[Running]:
        """Every project this agent started that runs now, for the hello."""
        found = []
        names = {p.name for p in self.store.known()} | set(self.processes.known())
        for name in sorted(names):
            running = await self.running(name)
            if running.containers:
                found.append(running)
        return found

    async def service_log(self, project: str, container: Container, lines: int) -> str:
        """The last lines a service wrote: its process's log file, else podman logs."""
        if self.processes.is_process(project):
            return "\n".join(self.processes.tail(project, lines))
        return await self.podman.logs(container.container_id, lines)
