"""Agent domain objects <-> protobuf, one place per type (GPUs: gpufleet.gpus, shared with
the hub)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.overrides import Fallback
from agent.probes import ProbeResult
from agent.tasks.context import Running
from agent.tasks.outcome import Report, Status
from agent.tasks.throttle import Progress
from gpufleet import process
from gpufleet.gpus import gpu_to_proto
from gpufleet.health import HealthCheck
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2


def inventory_to_proto(result: ProbeResult, preflight: Sequence[str] = ()) -> types_pb2.Inventory:
    """The GPUs, and the podman preflight's problems (agent/preflight.py)."""
    return types_pb2.Inventory(
        probe=result.probe,
        probe_error=result.error,
        gpus=[gpu_to_proto(gpu) for gpu in result.gpus],
        preflight=list(preflight),
    )


MESSAGE_CHARS = 300  # a health message: what one check saw

STATUS_CODES = {
    Status.OK: types_pb2.TASK_STATUS_OK,
    Status.CHANGED: types_pb2.TASK_STATUS_CHANGED,
    Status.FAILED: types_pb2.TASK_STATUS_FAILED,
    Status.CANCELLED: types_pb2.TASK_STATUS_CANCELLED,
}


def task_result(task_id: str, status: Status, message: str) -> pb.TaskResult:
    return pb.TaskResult(task_id=task_id, status=STATUS_CODES[status], message=message)


def running_to_proto(
    running: Running, health: Mapping[str, tuple[str, str]] | None = None
) -> pb.RunningProject:
    """A project as it runs; with `health` (service -> (health, message)) from the monitor."""
    found = health or {}
    return pb.RunningProject(
        name=running.name,
        digest=running.digest,
        services=[
            pb.ServiceStatus(
                name=c.service,
                container_id=c.container_id,
                state=c.state,
                health=found.get(c.service, ("", ""))[0],
                health_message=found.get(c.service, ("", ""))[1][:MESSAGE_CHARS],
            )
            for c in running.containers
        ],
    )


def process_from_proto(found: pb.HostProcess) -> process.ProcessSpec:
    """A host process project's spec (gpufleet.process); ProcessSpecError (a ValueError, one
    line) for one no agent could run. Unset check fields take the defaults wait_healthy uses."""
    health = None
    if found.HasField("health"):
        check = found.health
        health = HealthCheck(
            check.url,
            check.expect_status or 200,
            check.timeout.ToTimedelta().total_seconds() or 300.0,
            check.interval.ToTimedelta().total_seconds() or 5.0,
            check.expect_model,
        )
    return process.make(found.service, found.environment, list(found.args), dict(found.env),
                        health)  # fmt: skip


def _fallback_to_proto(f: Fallback) -> pb.GpuFallback:
    return pb.GpuFallback(
        service=f.service, assigned=list(f.assigned), used=list(f.used), reason=f.reason
    )


def report_to_proto(report: Report) -> pb.AssignmentReport:
    found = pb.AssignmentReport(
        recreated=report.recreated,
        removed=report.removed,
        fallbacks=[_fallback_to_proto(f) for f in report.fallbacks],
    )
    if report.project is not None:
        found.project.CopyFrom(running_to_proto(report.project))
    return found


def progress_to_proto(task_id: str, event: Progress) -> pb.TaskEvent:
    progress = pb.Progress(phase=event.phase, message=event.message)
    if event.percent is not None:
        progress.percent = event.percent
    return pb.TaskEvent(task_id=task_id, progress=progress)
