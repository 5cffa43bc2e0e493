"""Protobuf <-> hub domain objects, one place per type."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from gpufleet.v1 import agent_link_pb2 as link_pb
from gpufleet.v1 import hub_pb2, types_pb2
from hub.store import Gpu, GpuRecord, Node, NodeHello, NodeStatus
from hub.store.store import as_utc

VENDORS = {
    types_pb2.GPU_VENDOR_NVIDIA: "nvidia",
    types_pb2.GPU_VENDOR_AMD: "amd",
    types_pb2.GPU_VENDOR_OTHER: "other",
}
VENDOR_CODES = {name: code for code, name in VENDORS.items()}
STATUS_CODES = {
    NodeStatus.READY.value: types_pb2.NODE_STATUS_READY,
    NodeStatus.DOWN.value: types_pb2.NODE_STATUS_DOWN,
}


def node_status(status: str) -> types_pb2.NodeStatus:
    return STATUS_CODES.get(status, types_pb2.NODE_STATUS_UNSPECIFIED)


class InvalidHello(ValueError):
    pass


def hello_from_proto(hello: link_pb.Hello, address: str) -> NodeHello:
    if not hello.node_name:
        raise InvalidHello("hello has no node_name")
    if not hello.agent_id:
        raise InvalidHello("hello has no agent_id")
    indexes = [gpu.index for gpu in hello.inventory.gpus]
    if len(set(indexes)) != len(indexes):
        raise InvalidHello(f"hello lists a GPU index twice: {sorted(indexes)}")
    return NodeHello(
        name=hello.node_name,
        agent_id=hello.agent_id,
        hostname=hello.hostname,
        address=address,
        agent_version=hello.versions.agent,
        probe=hello.inventory.probe,
        probe_error=hello.inventory.probe_error,
        labels=dict(hello.labels),
        gpus=tuple(gpu_from_proto(gpu) for gpu in hello.inventory.gpus),
    )


def gpu_from_proto(gpu: types_pb2.Gpu) -> GpuRecord:
    return GpuRecord(
        index=gpu.index,
        uuid=gpu.uuid,
        name=gpu.name,
        vendor=VENDORS.get(gpu.vendor, ""),
        memory_total_mb=gpu.memory_total_mb,
        memory_used_mb=gpu.memory_used_mb,
        compute_capability=gpu.compute_capability,
    )


def gpu_to_proto(gpu: Gpu) -> types_pb2.Gpu:
    return types_pb2.Gpu(
        index=gpu.index,
        uuid=gpu.uuid,
        name=gpu.name,
        vendor=VENDOR_CODES.get(gpu.vendor, types_pb2.GPU_VENDOR_UNSPECIFIED),
        memory_total_mb=gpu.memory_total_mb,
        memory_used_mb=gpu.memory_used_mb,
        compute_capability=gpu.compute_capability,
    )


def timestamp(moment: datetime | None) -> Timestamp | None:
    moment = as_utc(moment)
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def node_to_proto(
    node: Node, gpu_count: int, gpus: list[Gpu] | None = None, live_seen: datetime | None = None
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
    )
