"""NodeAgent over a live agent stream: each step is a task; protobuf stays in this module."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection

from google.protobuf.duration_pb2 import Duration

from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from hub.configs import Configuration
from hub.ops.steps import Running, StepResult, Unreachable
from hub.sessions import AgentSession, NodeDisconnected

STATUS = {
    types_pb2.TASK_STATUS_OK: "ok",
    types_pb2.TASK_STATUS_CHANGED: "changed",
    types_pb2.TASK_STATUS_SKIPPED: "ok",
}
# A task that runs compose gets podman-compose's own limit (agent/compose.py) plus slack;
# waits get their configured timeout plus slack. Past it the hub cancels the task.
COMPOSE_LIMIT_S = 900.0 + 60.0
SLACK_S = 60.0


def seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


def fallback_lines(report: pb.AssignmentReport) -> list[tuple[str, str]]:
    """("fallback", message) events for the GPUs a node used instead of the assigned ones."""
    return [
        (
            "fallback",
            f"{f.service}: GPU {','.join(map(str, f.assigned))} unavailable ({f.reason}); "
            f"using GPU {','.join(map(str, f.used))}",
        )
        for f in report.fallbacks
    ]


def running_from_proto(project: pb.RunningProject) -> Running:
    return Running(
        project.name,
        project.digest,
        bool(project.services) and all(s.state == "running" for s in project.services),
    )


class RemoteAgent:
    def __init__(self, session: AgentSession, operation_id: str) -> None:
        self.session = session
        self.operation_id = operation_id

    async def _run(
        self, request: pb.TaskRequest, limit_s: float = COMPOSE_LIMIT_S
    ) -> tuple[StepResult, pb.TaskResult]:
        request.task_id = f"{self.operation_id}-{uuid.uuid4().hex[:8]}"
        try:
            result = await asyncio.wait_for(self.session.run_task(request), limit_s)
        except NodeDisconnected as exc:
            raise Unreachable(str(exc)) from None
        except TimeoutError:
            self.session.cancel_task(request.task_id)
            kind = request.WhichOneof("task")
            failed = pb.TaskResult(status=types_pb2.TASK_STATUS_FAILED)
            return StepResult("failed", f"{kind} gave no result within {limit_s:.0f} s; "
                                        "cancelled it on the node"), failed  # fmt: skip
        if result.HasField("project"):
            self.session.project = running_from_proto(result.project)
        return StepResult(STATUS.get(result.status, "failed"), result.message), result

    async def drain(self, config: Configuration) -> StepResult:
        probes = [
            pb.DrainProbe(service=s.name, url=s.drain.url, metric=s.drain.metric)
            for s in config.services
            if s.drain is not None
        ]
        if not probes:
            return StepResult("ok", f"{config.name} has no drain probe: nothing to wait for")
        timeout = max(s.drain.timeout_s for s in config.services if s.drain is not None)
        drain = pb.Drain(project=config.name, probes=probes, timeout=seconds(timeout))
        step, _ = await self._run(pb.TaskRequest(drain=drain), timeout + SLACK_S)
        return step

    async def stop(self, project: str) -> StepResult:
        step, _ = await self._run(pb.TaskRequest(stop_project=pb.StopProject(project=project)))
        if step.status != "failed":
            self.session.project = None
        return step

    async def start(self, config: Configuration) -> StepResult:
        start = pb.StartProject(project=config.name, compose=config.text, digest=config.digest)
        step, answer = await self._run(pb.TaskRequest(start_project=start))
        if not answer.HasField("assignment"):
            return step
        # A start that fell back to other GPUs reports them with the project.
        self.session.project = running_from_proto(answer.assignment.project)
        notes = tuple(fallback_lines(answer.assignment))
        return StepResult(step.status, step.message, notes)

    async def wait_healthy(
        self, config: Configuration, services: Collection[str] | None = None
    ) -> StepResult:
        """Wait for the health checks of the configuration's services (or the named ones)."""
        chosen = [s for s in config.services if services is None or s.name in services]
        checks = [
            pb.HealthCheck(
                service=s.name,
                url=s.health.url,
                expect_status=s.health.expect_status,
                timeout=seconds(s.health.timeout_s),
                interval=seconds(s.health.interval_s),
            )
            for s in chosen
        ]
        wait = pb.WaitHealthy(project=config.name, checks=checks)
        limit = max((s.health.timeout_s for s in chosen), default=0) + SLACK_S
        step, _ = await self._run(pb.TaskRequest(wait_healthy=wait), limit)
        return step

    async def apply_assignment(self, task: pb.ApplyAssignment) -> tuple[StepResult, pb.TaskResult]:
        """Write a project's GPU override on the node and recreate what changed."""
        step, answer = await self._run(pb.TaskRequest(apply_assignment=task))
        if answer.HasField("assignment") and answer.assignment.HasField("project"):
            project = answer.assignment.project
            if project.services:
                self.session.project = running_from_proto(project)
        return step, answer
