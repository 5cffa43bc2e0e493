"""Hub API messages -> plain dicts: what --json prints and what the tables show."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from gpufleet.v1 import hub_pb2, types_pb2

VENDORS = {
    types_pb2.GPU_VENDOR_NVIDIA: "nvidia",
    types_pb2.GPU_VENDOR_AMD: "amd",
    types_pb2.GPU_VENDOR_OTHER: "other",
}
STATUSES = {types_pb2.NODE_STATUS_READY: "ready", types_pb2.NODE_STATUS_DOWN: "down"}
STATES = {types_pb2.GPU_STATE_OK: "ok", types_pb2.GPU_STATE_LOST: "lost"}
OPTIONAL = ("memory_free_mb", "utilization_percent", "temperature_c", "power_draw_w",
            "power_limit_w")  # fmt: skip


def _time(message: hub_pb2.Node | hub_pb2.NodeEvent, field: str) -> str | None:
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    return stamp.ToDatetime().isoformat(timespec="seconds") + "Z"


def _optional(message: types_pb2.Gpu, name: str) -> float | int | None:
    """None (JSON null, shown n/a) where the GPU does not report the field."""
    if not message.HasField(name):
        return None
    value: float | int = getattr(message, name)
    return round(value, 2) if isinstance(value, float) else value


def gpu(message: types_pb2.Gpu) -> dict[str, Any]:
    return {
        "index": message.index,
        "uuid": message.uuid,
        "name": message.name,
        "vendor": VENDORS.get(message.vendor, "unknown"),
        "memory_total_mb": message.memory_total_mb,
        "memory_used_mb": message.memory_used_mb,
        "compute_capability": message.compute_capability or None,
        "state": STATES.get(message.state, "unknown"),
        **{name: _optional(message, name) for name in OPTIONAL},
        "gfx_target": message.gfx_target or None,
        "pci_bus_id": message.pci_bus_id or None,
        "driver_version": message.driver_version or None,
        "processes": [
            {"pid": p.pid, "used_memory_mb": p.used_memory_mb} for p in message.processes
        ],
    }


def node(message: hub_pb2.Node, with_gpus: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": message.name,
        "status": STATUSES.get(message.status, "unknown"),
        "labels": dict(sorted(message.labels.items())),
        "gpu_count": message.gpu_count,
        "last_seen": _time(message, "last_seen"),
        "status_since": _time(message, "status_since"),
        "first_seen": _time(message, "first_seen"),
        "hostname": message.hostname,
        "address": message.address,
        "agent_version": message.agent_version,
        "probe": message.probe,
        "probe_error": message.probe_error or None,
    }
    if with_gpus:
        out["gpus"] = [gpu(g) for g in message.gpus]
        out["events"] = [
            {"at": _time(e, "at"), "kind": e.kind, "message": e.message} for e in message.events
        ]
    return out


def node_gpu(message: hub_pb2.NodeGpu) -> dict[str, Any]:
    return {
        "node": message.node,
        "node_status": STATUSES.get(message.node_status, "unknown"),
        **gpu(message.gpu),
    }
