"""The switch tasks on the agent: start, stop, wait until healthy, drain.

Each is idempotent and honours check mode: it reports what it would change and changes
nothing. Results carry the project as the agent now runs it.

Starting a project with GPU assignments first checks its assigned GPUs against the probe: a
GPU lost or missing since the assignment was applied is replaced by another GPU of this node
(agent/overrides.py, as applying does), and the result says so. Such a result carries an
AssignmentReport (its fallbacks, and the project) instead of the bare project.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from agent import overrides
from agent.compose import Container, Podman
from agent.probes import GpuProbe
from agent.probing import Check, Probe, drain, wait_healthy
from agent.projects import Project, ProjectError, ProjectStore, expand
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2

log = logging.getLogger(__name__)
OK, CHANGED, FAILED = (
    types_pb2.TASK_STATUS_OK,
    types_pb2.TASK_STATUS_CHANGED,
    types_pb2.TASK_STATUS_FAILED,
)
Emit = Callable[[pb.AgentMessage], None]


def assigned_elsewhere(directory: Path) -> set[str]:
    """Services GPU assignments put on other nodes: this node does not run them."""
    recorded = overrides.read_state(directory)
    if recorded is None:
        return set()
    return {name for name, t in recorded.current.items() if not t.here}


def result(status: int, message: str, project: pb.RunningProject | None = None) -> pb.TaskResult:
    answer = pb.TaskResult(status=status, message=message)  # type: ignore[arg-type]
    if project is not None:
        answer.project.CopyFrom(project)
    return answer


def started(
    status: int, message: str, project: pb.RunningProject, found: overrides.Recheck
) -> pb.TaskResult:
    """A start's result: with an AssignmentReport when a GPU fell back."""
    if found.rewritten and not found.fallbacks:
        message += "; GPU override rendered again: the assigned GPUs are usable again"
    if not found.fallbacks:
        return result(status, message, project)
    message += "; " + overrides.describe(found.fallbacks)
    report = overrides.report(found.fallbacks, project=project)
    return pb.TaskResult(status=status, message=message, assignment=report)  # type: ignore[arg-type]


class Switching:
    def __init__(
        self,
        store: ProjectStore,
        podman: Podman,
        env: Mapping[str, str],
        probe: GpuProbe | None = None,
    ) -> None:
        self.store = store
        self.podman = podman
        # Where assigned GPUs are checked before a start; None: they are used as assigned.
        self.probe = probe
        # URLs expand with what podman-compose expands the files with: the process's
        # environment (e.g. systemd Environment=) plus --env.
        self.env = {**os.environ, **env}
        # One compose run at a time on this host, even if the hub retries after a reconnect.
        self.compose_lock = asyncio.Lock()

    async def running(self, name: str) -> tuple[pb.RunningProject, list[Container]]:
        project = self.store.project(name)
        containers = await self.podman.containers(name)
        return pb.RunningProject(
            name=name,
            digest=project.digest() if containers else "",
            services=[
                pb.ServiceStatus(name=c.service, container_id=c.container_id, state=c.state)
                for c in containers
            ],
        ), containers

    async def projects(self) -> list[pb.RunningProject]:
        """What runs now, for the hello."""
        found = []
        for project in self.store.known():
            running, containers = await self.running(project.name)
            if containers:
                found.append(running)
        return found

    async def _recheck(self, project: Project, write: bool) -> overrides.Recheck:
        """The project's assigned GPUs against what the probe sees now."""
        if self.probe is None or overrides.read_state(project.directory) is None:
            return overrides.Recheck()
        usable = await overrides.usable_gpus(self.probe)
        return overrides.recheck(project.directory, self.store.runtime, usable, write)

    async def start(self, request: pb.TaskRequest, emit: Emit) -> pb.TaskResult:
        task = request.start_project
        try:
            project = self.store.project(task.project)
            before, containers = await self.running(task.project)
            if (
                containers
                and before.digest == task.digest
                and all(c.state == "running" for c in containers)
            ):
                return result(OK, f"{task.project} already runs, nothing restarted", before)
            if request.check_mode:
                found = await self._recheck(project, write=False)
                return started(CHANGED, f"would start {task.project}", before, found)
            project = self.store.write(task.project, task.compose, task.digest)
        except ProjectError as exc:
            return result(FAILED, str(exc))
        async with self.compose_lock:
            found = await self._recheck(project, write=True)
            done = await self.podman.up(project.name, project.compose_file)
        after, containers = await self.running(task.project)
        if done.code != 0:
            return started(FAILED, f"compose up failed: {done.tail()}", after, found)
        message = f"started {task.project}: {len(containers)} containers"
        return started(CHANGED, message, after, found)

    async def stop(self, request: pb.TaskRequest, emit: Emit) -> pb.TaskResult:
        name = request.stop_project.project
        try:
            project = self.store.project(name)
        except ProjectError as exc:
            return result(FAILED, str(exc))
        before, containers = await self.running(name)
        if not containers:
            return result(OK, f"{name} is not running", before)
        if request.check_mode:
            return result(CHANGED, f"would stop {name}", before)
        if not project.compose_file.is_file():
            return result(FAILED, f"{name} was not started by this agent: refusing to stop it")
        async with self.compose_lock:
            done = await self.podman.down(name, project.compose_file)
        if done.code != 0:
            after, _ = await self.running(name)
            return result(FAILED, f"compose down failed: {done.tail()}", after)
        return result(CHANGED, f"stopped {name} ({len(containers)} containers)",
                      pb.RunningProject(name=name))  # fmt: skip

    async def wait_healthy(self, request: pb.TaskRequest, emit: Emit) -> pb.TaskResult:
        task = request.wait_healthy
        checks = [
            Check(c.service, expand(c.url, self.env), c.expect_status or 200,
                  c.timeout.ToTimedelta().total_seconds() or 300.0,
                  c.interval.ToTimedelta().total_seconds() or 5.0)
            for c in task.checks
        ]  # fmt: skip

        elsewhere = assigned_elsewhere(self.store.project(task.project).directory)
        checks = [c for c in checks if c.service not in elsewhere]

        def progress(line: str) -> None:
            emit(pb.AgentMessage(task_event=pb.TaskEvent(task_id=request.task_id,
                                                         log=pb.LogLine(line=line))))  # fmt: skip

        async def gone(services: list[str]) -> tuple[str, str] | None:
            _, containers = await self.running(task.project)
            states = {c.service: c.state for c in containers}
            for service in services:
                if states.get(service, "missing") not in ("running", "created", "configured"):
                    return service, f"its container is {states.get(service, 'missing')}"
            return None

        verdict = await wait_healthy(checks, progress=progress, gone=gone)
        if verdict.ok:  # the project was reported by start; no need to ask podman again
            return result(OK, f"all {len(checks)} services healthy after "
                              f"{verdict.waited_s:.1f} s")  # fmt: skip
        current, containers = await self.running(task.project)
        check = next(c for c in checks if c.service == verdict.service)
        container = next((c for c in containers if c.service == verdict.service), None)
        logs = await self.podman.logs(container.container_id) if container else ""
        last = " | ".join(logs.splitlines()[-5:]) or "no log lines"
        state = container.state if container else "no container"
        what = verdict.seen if verdict.seen.startswith("its container") else (
            f"{check.url} gave {verdict.seen} (container {state})")  # fmt: skip
        return result(FAILED, f"service {verdict.service} not healthy after "
                              f"{verdict.waited_s:.0f} s: {what}; last log lines: {last}",
                      current)  # fmt: skip

    async def drain(self, request: pb.TaskRequest, emit: Emit) -> pb.TaskResult:
        task = request.drain
        probes = [Probe(p.service, expand(p.url, self.env), p.metric) for p in task.probes]
        timeout = task.timeout.ToTimedelta().total_seconds() or 120.0
        if request.check_mode:
            return result(CHANGED, f"would drain {task.project}")
        outcome = await drain(probes, timeout)
        if outcome.drained:
            return result(CHANGED, f"drained after {outcome.waited_s:.1f} s")
        return result(CHANGED, f"drain timed out after {outcome.waited_s:.0f} s with "
                               f"{outcome.detail}; proceeding")  # fmt: skip
