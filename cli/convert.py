"""Hub API messages -> plain dicts: what --json prints and what the tables show."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
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


def stamp(message: Message, field: str) -> str | None:
    """A Timestamp field as ISO 8601 in UTC ('2026-11-30T12:00:01Z'), None where unset."""
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    return value.ToDatetime().isoformat(timespec="seconds") + "Z"


def _optional(message: types_pb2.Gpu, name: str) -> float | int | None:
    """None (JSON null, shown n/a) where the GPU does not report the field."""
    if not message.HasField(name):
        return None
    value: float | int = getattr(message, name)
    return round(value, 2) if isinstance(value, float) else value


def gpu(message: types_pb2.Gpu) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": message.index,
        "uuid": message.uuid,
        "name": message.name,
        "vendor": VENDORS.get(message.vendor, "unknown"),
        "memory_total_mb": message.memory_total_mb,
        "memory_used_mb": message.memory_used_mb,
        "compute_capability": message.compute_capability or None,
        "state": STATES.get(message.state, "unknown"),
    }
    for name in OPTIONAL:  # inline, not a call per field: `hubctl gpus` converts 40,000 rows
        out[name] = _optional(message, name) if message.HasField(name) else None
    out["gfx_target"] = message.gfx_target or None
    out["pci_bus_id"] = message.pci_bus_id or None
    out["driver_version"] = message.driver_version or None
    out["processes"] = [
        {"pid": p.pid, "used_memory_mb": p.used_memory_mb} for p in message.processes
    ]
    return out


def node(message: hub_pb2.Node, with_gpus: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": message.name,
        "status": STATUSES.get(message.status, "unknown"),
        "labels": dict(sorted(message.labels.items())),
        "gpu_count": message.gpu_count,
        "last_seen": stamp(message, "last_seen"),
        "status_since": stamp(message, "status_since"),
        "first_seen": stamp(message, "first_seen"),
        "hostname": message.hostname,
        "address": message.address,
        "agent_version": message.agent_version,
        "probe": message.probe,
        "probe_error": message.probe_error or None,
        "preflight": list(message.preflight),
    }
    out["state"] = message.state
    out["configuration"] = message.configuration or None
    out["state_since"] = stamp(message, "state_since")
    out["state_message"] = message.state_message or None
    if with_gpus:
        out["transitions"] = [
            {"at": stamp(t, "at"), "from": t.from_state, "to": t.to_state,
             "configuration": t.configuration or None, "operation_id": t.operation_id or None,
             "message": t.message or None}
            for t in message.transitions
        ]  # fmt: skip
        out["gpus"] = [gpu(g) for g in message.gpus]
        out["events"] = [
            {"at": stamp(e, "at"), "kind": e.kind, "message": e.message} for e in message.events
        ]
    return out


def node_gpu(message: hub_pb2.NodeGpu) -> dict[str, Any]:
    return {
        "node": message.node,
        "node_status": STATUSES.get(message.node_status, "unknown"),
        **gpu(message.gpu),
    }


def configuration(message: hub_pb2.Configuration) -> dict[str, Any]:
    return {
        "name": message.name,
        "description": message.description,
        "use_case": message.use_case,
        "digest": message.digest,
        "services": [
            {"name": s.name, "vram_gb": s.vram_gb, "gpu_count": s.gpu_count,
             "latency_class": s.latency_class, "model": s.model or None,
             "health_url": s.health_url, "drains": s.drains,
             "model_ref": s.model_ref or None}
            for s in message.services
        ],
    }  # fmt: skip


def node_state(message: hub_pb2.NodeState) -> dict[str, Any]:
    return {
        "node": message.node,
        "status": STATUSES.get(message.status, "unknown"),
        "state": message.state,
        "configuration": message.configuration or None,
        "since": stamp(message, "since"),
        "message": message.message or None,
        "operation_id": message.operation_id or None,
    }


def operation_event(message: hub_pb2.OperationEvent) -> dict[str, Any]:
    """A step of the operation, or (progress) an agent's report from inside a task."""
    return {
        "seq": message.seq,
        "at": stamp(message, "at"),
        "node": message.node or None,
        "step": message.step,
        "message": message.message,
        "progress": message.progress,
        "percent": round(message.percent, 1) if message.HasField("percent") else None,
    }


def operation(message: hub_pb2.Operation, with_events: bool = False) -> dict[str, Any]:
    """`with_events`: also the events the hub stored (GetOperation with_events)."""
    out: dict[str, Any] = {
        "id": message.id,
        "kind": message.kind,
        "configuration": message.configuration or None,
        "status": message.status,
        "check": message.check,
        "created": stamp(message, "created"),
        "finished": stamp(message, "finished"),
        "message": message.message,
        "nodes": [
            {"node": n.node, "result": n.result, "message": n.message,
             "started": stamp(n, "started"),
             "finished": stamp(n, "finished"),
             "progress_dropped": n.progress_dropped,
             "warnings": list(n.warnings)}
            for n in message.nodes
        ],
    }  # fmt: skip
    if with_events:
        out["events"] = [operation_event(e) for e in message.events]
    return out


def result_counts(found: dict[str, Any]) -> dict[str, int]:
    counts = dict.fromkeys(["ok", "changed", "failed", "unreachable", "skipped"], 0)
    for node in found["nodes"]:
        counts[node["result"]] = counts.get(node["result"], 0) + 1
    return counts
