"""Protobuf <-> hub domain objects, one place per type."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from gpufleet.gpus import STATES, STATIC_OPTIONAL, TELEMETRY_OPTIONAL, VENDORS, gpu_to_proto
from gpufleet.v1 import agent_link_pb2 as link_pb
from gpufleet.v1 import hub_pb2, types_pb2
from hub.sessions import TaskProgress
from hub.store import Gpu, GpuRecord, GpuTelemetryRecord, Node, NodeEvent, NodeHello, NodeStatus
from hub.store.models import NodeTransition
from hub.store.store import as_utc

STATUS_CODES = {
    NodeStatus.READY.value: types_pb2.NODE_STATUS_READY,
    NodeStatus.DOWN.value: types_pb2.NODE_STATUS_DOWN,
}
NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
MAX_GPUS = 1024


PHASE_CHARS = 16  # an operation event's step column
PROGRESS_CHARS = 300


def progress_from_proto(progress: link_pb.Progress) -> TaskProgress:
    """Bounded: an agent's progress is shown to operators and stored with the operation."""
    percent = progress.percent if progress.HasField("percent") else None
    if percent is not None:
        percent = min(100.0, max(0.0, percent)) if math.isfinite(percent) else None
    phase = "".join(c for c in progress.phase[:PHASE_CHARS] if c.isprintable()) or "progress"
    message = "".join(c for c in progress.message[:PROGRESS_CHARS] if c.isprintable())
    return TaskProgress(phase, message, percent)


def node_status(status: str) -> types_pb2.NodeStatus:
    return STATUS_CODES.get(status, types_pb2.NODE_STATUS_UNSPECIFIED)


class InvalidHello(ValueError):
    pass


def _present(message: Message, names: tuple[str, ...]) -> dict[str, Any]:
    """Optional fields the sender set; unset ones stay None (n/a)."""
    return {name: getattr(message, name) for name in names if message.HasField(name)}


def _processes(message: types_pb2.Gpu | types_pb2.GpuTelemetry) -> tuple[tuple[int, int], ...]:
    return tuple((p.pid, p.used_memory_mb) for p in message.processes)


def check_inventory(inventory: types_pb2.Inventory) -> None:
    indexes = [gpu.index for gpu in inventory.gpus]
    if len(indexes) > MAX_GPUS or len(set(indexes)) != len(indexes):
        raise InvalidHello(f"inventory lists a GPU index twice or too many GPUs: {indexes[:16]}")


def hello_from_proto(hello: link_pb.Hello, address: str) -> NodeHello:
    if not NODE_NAME.match(hello.node_name):
        raise InvalidHello(f"hello has an invalid node_name {hello.node_name[:64]!r}")
    if not hello.agent_id:
        raise InvalidHello("hello has no agent_id")
    check_inventory(hello.inventory)
    return NodeHello(
        name=hello.node_name,
        agent_id=hello.agent_id,
        hostname=hello.hostname,
        address=address,
        agent_version=hello.versions.agent,
        probe=hello.inventory.probe,
        probe_error=hello.inventory.probe_error,
        labels=dict(hello.labels),
        gpus=gpus_from_proto(hello.inventory),
    )


def gpus_from_proto(inventory: types_pb2.Inventory) -> tuple[GpuRecord, ...]:
    return tuple(gpu_from_proto(gpu) for gpu in inventory.gpus)


def gpu_from_proto(gpu: types_pb2.Gpu) -> GpuRecord:
    return GpuRecord(
        index=gpu.index,
        state=STATES.get(gpu.state, "ok"),
        memory_used_mb=gpu.memory_used_mb,
        processes=_processes(gpu),
        uuid=gpu.uuid,
        name=gpu.name,
        vendor=VENDORS.get(gpu.vendor, ""),
        memory_total_mb=gpu.memory_total_mb,
        compute_capability=gpu.compute_capability,
        gfx_target=gpu.gfx_target,
        pci_bus_id=gpu.pci_bus_id,
        driver_version=gpu.driver_version,
        **_present(gpu, (*TELEMETRY_OPTIONAL, *STATIC_OPTIONAL)),
    )


def telemetry_from_proto(sample: types_pb2.GpuTelemetry) -> GpuTelemetryRecord:
    return GpuTelemetryRecord(
        index=sample.index,
        state=STATES.get(sample.state, "ok"),
        memory_used_mb=sample.memory_used_mb,
        processes=_processes(sample),
        **_present(sample, TELEMETRY_OPTIONAL),
    )


def timestamp(moment: datetime | None) -> Timestamp | None:
    moment = as_utc(moment)
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def event_to_proto(event: NodeEvent) -> hub_pb2.NodeEvent:
    return hub_pb2.NodeEvent(at=timestamp(event.at), kind=event.kind, message=event.message)


def node_to_proto(
    node: Node,
    gpu_count: int,
    gpus: list[Gpu] | None = None,
    live_seen: datetime | None = None,
    events: list[NodeEvent] | None = None,
    transitions: list[NodeTransition] | None = None,
) -> hub_pb2.Node:
    """`live_seen` is the in-memory heartbeat time of a connected node, fresher than the row."""
    return hub_pb2.Node(
        name=node.name,
        status=node_status(node.status),
        labels=node.labels,
        hostname=node.hostname,
        address=node.address,
        agent_version=node.agent_version,
        first_seen=timestamp(node.first_seen),
        last_seen=timestamp(live_seen or node.last_seen),
        status_since=timestamp(node.status_since),
        gpu_count=gpu_count,
        probe=node.probe,
        probe_error=node.probe_error,
        gpus=[gpu_to_proto(gpu) for gpu in gpus or []],
        events=[event_to_proto(event) for event in events or []],
        state=node.state,
        configuration=node.configuration,
        state_since=timestamp(node.state_since),
        state_message=node.state_message,
        transitions=[
            hub_pb2.StateTransition(
                at=timestamp(t.at), from_state=t.from_state, to_state=t.to_state,
                configuration=t.configuration, operation_id=t.operation_id, message=t.message,
            )
            for t in transitions or []
        ],
    )  # fmt: skip
