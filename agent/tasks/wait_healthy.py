"""wait_healthy: poll every health check until all pass, or fail naming the service, what its
check saw and the last lines of its log (a host process project's log file, else podman logs).

Services GPU assignments put on other nodes are not checked: this node does not run them. A
container that stops fails the wait at once (agent/probing.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from agent import overrides
from agent.probing import Check, wait_healthy
from agent.projects import check_name, expand
from agent.tasks.base import ProjectKind
from agent.tasks.context import Running, TaskContext
from agent.tasks.outcome import Outcome, Status
from gpufleet.v1 import agent_link_pb2 as pb

ALIVE_STATES = ("running", "created", "configured")


@dataclass(frozen=True)
class HealthSpec:
    project: str
    checks: tuple[Check, ...]  # URLs as the hub sent them, ${VAR} not yet expanded


def assigned_elsewhere(directory: Path) -> set[str]:
    """Services GPU assignments put on other nodes: this node does not run them."""
    recorded = overrides.read_state(directory)
    if recorded is None:
        return set()
    return {name for name, t in recorded.current.items() if not t.here}


class WaitHealthy(ProjectKind[HealthSpec]):
    kind = "wait_healthy"

    def parse(self, request: pb.TaskRequest) -> HealthSpec:
        task = request.wait_healthy
        checks = tuple(
            Check(c.service, c.url, c.expect_status or 200,
                  c.timeout.ToTimedelta().total_seconds() or 300.0,
                  c.interval.ToTimedelta().total_seconds() or 5.0, c.expect_model)
            for c in task.checks
        )  # fmt: skip
        return HealthSpec(check_name(task.project), checks)

    async def run(self, ctx: TaskContext, spec: HealthSpec, check: bool) -> Outcome[Running]:
        elsewhere = assigned_elsewhere(ctx.store.project(spec.project).directory)
        checks = [replace(c, url=expand(c.url, ctx.env)) for c in spec.checks
                  if c.service not in elsewhere]  # fmt: skip

        def progress(healthy: int, total: int, line: str) -> None:
            ctx.progress("health", f"{healthy} of {total} services healthy; {line}",
                         100.0 * healthy / total)  # fmt: skip

        unit = "process" if ctx.processes.is_process(spec.project) else "container"

        async def gone(services: list[str]) -> tuple[str, str] | None:
            now = await ctx.running(spec.project)
            states = {c.service: c.state for c in now.containers}
            for service in services:
                if states.get(service, "missing") not in ALIVE_STATES:
                    return service, f"its {unit} is {states.get(service, 'missing')}"
            return None

        verdict = await wait_healthy(checks, progress=progress, gone=gone)
        if verdict.ok:  # the project was reported by start; the result needs no podman ps
            await ctx.watcher.passed(spec.project, [c.service for c in checks])
            every = "the service" if len(checks) == 1 else f"all {len(checks)} services"
            return Outcome(Status.OK, f"{every} healthy after {verdict.waited_s:.1f} s")
        current = await ctx.running(spec.project)
        failed = next(c for c in checks if c.service == verdict.service)
        container = next((c for c in current.containers if c.service == verdict.service), None)
        logs = await ctx.service_log(spec.project, container, 20) if container else ""
        last = " | ".join(logs.splitlines()[-5:]) or "no log lines"
        state = container.state if container else f"no {unit}"
        what = verdict.seen if verdict.seen.startswith(f"its {unit}") else (
            f"{failed.url} gave {verdict.seen} ({unit} {state})")  # fmt: skip
        return Outcome(Status.FAILED, f"service {verdict.service} not healthy after "
                                      f"{verdict.waited_s:.0f} s: {what}; last log lines: {last}",
                       current)  # fmt: skip
