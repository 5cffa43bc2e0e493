"""Agent domain objects <-> protobuf, one place per type."""

from __future__ import annotations

from typing import Any

from agent.overrides import Fallback
from agent.probes import GpuInfo, GpuProcess, ProbeResult
from agent.tasks.context import Running
from agent.tasks.outcome import Report, Status
from agent.tasks.throttle import Progress
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2

VENDOR_CODES = {
    "nvidia": types_pb2.GPU_VENDOR_NVIDIA,
    "amd": types_pb2.GPU_VENDOR_AMD,
    "other": types_pb2.GPU_VENDOR_OTHER,
}
STATE_CODES = {"ok": types_pb2.GPU_STATE_OK, "lost": types_pb2.GPU_STATE_LOST}
OPTIONAL = ("memory_free_mb", "utilization_percent", "temperature_c", "power_draw_w")


def _reported(gpu: GpuInfo, names: tuple[str, ...]) -> dict[str, Any]:
    """Only fields the GPU reports: unset optional fields mean n/a on the wire."""
    return {name: getattr(gpu, name) for name in names if getattr(gpu, name) is not None}


def _processes(processes: tuple[GpuProcess, ...]) -> list[types_pb2.GpuProcess]:
    return [types_pb2.GpuProcess(pid=p.pid, used_memory_mb=p.used_memory_mb) for p in processes]


def gpu_to_proto(gpu: GpuInfo) -> types_pb2.Gpu:
    return types_pb2.Gpu(
        index=gpu.index,
        uuid=gpu.uuid,
        name=gpu.name,
        vendor=VENDOR_CODES.get(gpu.vendor, types_pb2.GPU_VENDOR_UNSPECIFIED),
        memory_total_mb=gpu.memory_total_mb,
        memory_used_mb=gpu.memory_used_mb,
        compute_capability=gpu.compute_capability,
        state=STATE_CODES[gpu.state],
        gfx_target=gpu.gfx_target,
        pci_bus_id=gpu.pci_bus_id,
        driver_version=gpu.driver_version,
        processes=_processes(gpu.processes),
        **_reported(gpu, (*OPTIONAL, "power_limit_w")),
    )


def telemetry_to_proto(gpu: GpuInfo) -> types_pb2.GpuTelemetry:
    return types_pb2.GpuTelemetry(
        index=gpu.index,
        state=STATE_CODES[gpu.state],
        memory_used_mb=gpu.memory_used_mb,
        processes=_processes(gpu.processes),
        **_reported(gpu, OPTIONAL),
    )


def inventory_to_proto(result: ProbeResult) -> types_pb2.Inventory:
    return types_pb2.Inventory(
        probe=result.probe,
        probe_error=result.error,
        gpus=[gpu_to_proto(gpu) for gpu in result.gpus],
    )


STATUS_CODES = {
    Status.OK: types_pb2.TASK_STATUS_OK,
    Status.CHANGED: types_pb2.TASK_STATUS_CHANGED,
    Status.FAILED: types_pb2.TASK_STATUS_FAILED,
    Status.CANCELLED: types_pb2.TASK_STATUS_CANCELLED,
}


def task_result(task_id: str, status: Status, message: str) -> pb.TaskResult:
    return pb.TaskResult(task_id=task_id, status=STATUS_CODES[status], message=message)


def running_to_proto(running: Running) -> pb.RunningProject:
    return pb.RunningProject(
        name=running.name,
        digest=running.digest,
        services=[
            pb.ServiceStatus(name=c.service, container_id=c.container_id, state=c.state)
            for c in running.containers
        ],
    )


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
