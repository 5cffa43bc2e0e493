"""What a task may use on this host, handed to every task so no task reaches into another.

One TaskContext is built at start-up (agent/main.py); the runner gives each task a copy that
shares everything but the progress callback, which reports for that task alone.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from agent.compose import Container, Podman
from agent.probes import GpuProbe
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
    ) -> TaskContext:
        return cls(store, podman, probe, {**os.environ, **env}, asyncio.Lock(),
                   watcher=watcher or NoWatcher(),
                   preflight=preflight or NoPreflight())  # fmt: skip

    def for_task(self, on_progress: ReportProgress) -> TaskContext:
        return replace(self, on_progress=on_progress)

    def progress(self, phase: str, message: str, percent: float | None = None) -> None:
        """Tell the hub what the task is doing (from the event loop, not a worker thread); the
        runner throttles it and sends it to the stream that asked for the task."""
        self.on_progress(phase, message, percent)

    async def running(self, name: str) -> Running:
        """What project `name` runs now (podman ps)."""
        containers = tuple(await self.podman.containers(name))
        digest = self.store.project(name).digest() if containers else ""
        return Running(name, digest, containers)

    async def projects(self) -> list[Running]:
        """Every project this agent started that runs now, for the hello."""
        found = []
        for project in self.store.known():
            running = await self.running(project.name)
            if running.containers:
                found.append(running)
        return found
