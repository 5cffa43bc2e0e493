"""Protobuf <-> hub domain objects, one place per type."""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from gpufleet.gpus import STATES, TELEMETRY_OPTIONAL, VENDORS, gpu_to_proto
from gpufleet.v1 import agent_link_pb2 as link_pb
from gpufleet.v1 import hub_pb2, types_pb2
from hub import limits
from hub.limits import MAX_GPUS, MAX_MEMORY_MB, OutOfBounds
from hub.sessions import TaskProgress
from hub.store import Gpu, GpuRecord, GpuTelemetryRecord, Node, NodeEvent, NodeHello, NodeStatus
from hub.store.models import NodeTransition
from hub.store.store import as_utc

P = ParamSpec("P")
R = TypeVar("R")
STATUS_CODES = {
    NodeStatus.READY.value: types_pb2.NODE_STATUS_READY,
    NodeStatus.DOWN.value: types_pb2.NODE_STATUS_DOWN,
}
NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")


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
    """What an agent sent is malformed or out of range: its stream is closed with this."""


def _present(message: Message, names: tuple[str, ...]) -> dict[str, Any]:
    """Optional fields the sender set; unset ones stay None (n/a)."""
    return {name: getattr(message, name) for name in names if message.HasField(name)}


def _processes(where: str, message: types_pb2.Gpu | types_pb2.GpuTelemetry
               ) -> tuple[tuple[int, int, int], ...]:  # fmt: skip
    """(pid, MiB, 1 when gpufleet started it else 0): the GPU row's JSON keeps the three."""
    if len(message.processes) > limits.MAX_PROCESSES:
        raise OutOfBounds(
            f"{where} lists {len(message.processes)} processes: at most {limits.MAX_PROCESSES}"
        )
    return tuple(
        (limits.integer(f"{where} process pid", p.pid, limits.MAX_PID),
         limits.integer(f"{where} process used_memory_mb", p.used_memory_mb, MAX_MEMORY_MB),
         int(p.managed))
        for p in message.processes
    )  # fmt: skip


PREFLIGHT_LINES = 32  # the agent's podman preflight problems kept per node
PREFLIGHT_CHARS = 500


def preflight_from_proto(inventory: types_pb2.Inventory) -> tuple[str, ...]:
    """Free text from the agent: cut (count and length), not refused."""
    return tuple(limits.message(line, PREFLIGHT_CHARS).replace("\n", " ")
                 for line in inventory.preflight[:PREFLIGHT_LINES])  # fmt: skip


def _telemetry(where: str, sample: types_pb2.Gpu | types_pb2.GpuTelemetry) -> dict[str, Any]:
    """The changing fields of a GPU, each within its range (NaN and infinities refused)."""
    values: dict[str, Any] = _present(sample, TELEMETRY_OPTIONAL)
    limits.integer(f"{where} memory_used_mb", sample.memory_used_mb, MAX_MEMORY_MB)
    if "memory_free_mb" in values:
        limits.integer(f"{where} memory_free_mb", values["memory_free_mb"], MAX_MEMORY_MB)
    if "utilization_percent" in values:
        limits.integer(f"{where} utilization_percent", values["utilization_percent"], 100)
    if "temperature_c" in values:
        limits.real(f"{where} temperature_c", values["temperature_c"], *limits.TEMPERATURE_C)
    if "power_draw_w" in values:
        limits.real(f"{where} power_draw_w", values["power_draw_w"], 0.0, limits.MAX_POWER_W)
    return values


def _where(index: int) -> str:
    return f"GPU {limits.integer('GPU index', index, limits.MAX_GPU_INDEX)}"


def _bounded(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn OutOfBounds from a conversion into InvalidHello naming what was refused."""

    def wrap(convert: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(convert)
        def bounded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return convert(*args, **kwargs)
            except OutOfBounds as exc:
                raise InvalidHello(f"{what}: {exc}") from None

        return bounded

    return wrap


def check_inventory(inventory: types_pb2.Inventory) -> None:
    indexes = [gpu.index for gpu in inventory.gpus]
    if len(indexes) > MAX_GPUS or len(set(indexes)) != len(indexes):
        raise InvalidHello(
            f"inventory lists a GPU index twice or more than {MAX_GPUS} GPUs: {indexes[:16]}"
        )


HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def advertised_from_proto(hello: link_pb.Hello) -> str:
    """The host part of the endpoints of the node's model servers ("" when not given): a host
    name, an IPv4 address, or an IPv6 address (bracketed here); InvalidHello, one line, for
    anything else."""
    given = hello.advertise_address
    if not given:
        return ""
    try:
        address = ipaddress.ip_address(given.strip("[]"))
    except ValueError:
        if HOST.match(given):
            return given
        raise InvalidHello(
            f"hello has an advertise_address that is no host name or IP address: {given[:64]!r}"
        ) from None
    return f"[{address}]" if address.version == 6 else str(address)


@_bounded("hello refused")
def hello_from_proto(hello: link_pb.Hello, address: str) -> NodeHello:
    if not NODE_NAME.match(hello.node_name):
        raise InvalidHello(f"hello has an invalid node_name {hello.node_name[:64]!r}")
    if not hello.agent_id:
        raise InvalidHello("hello has no agent_id")
    check_inventory(hello.inventory)
    return NodeHello(
        name=hello.node_name,
        agent_id=limits.text("agent_id", hello.agent_id),
        hostname=limits.text("hostname", hello.hostname),
        address=address[:128],
        agent_version=limits.text("agent_version", hello.versions.agent),
        probe=limits.text("probe", hello.inventory.probe),
        probe_error=limits.message(hello.inventory.probe_error),
        labels=limits.labels("labels", hello.labels),
        gpus=_gpus(hello.inventory),
        preflight=preflight_from_proto(hello.inventory),
    )


def _gpus(inventory: types_pb2.Inventory) -> tuple[GpuRecord, ...]:
    return tuple(_gpu(gpu) for gpu in inventory.gpus)


@_bounded("inventory refused")
def gpus_from_proto(inventory: types_pb2.Inventory) -> tuple[GpuRecord, ...]:
    limits.text("probe", inventory.probe)
    return _gpus(inventory)


Inventory = tuple[str, str, tuple[GpuRecord, ...], tuple[str, ...]]


def inventory_from_proto(inventory: types_pb2.Inventory) -> Inventory:
    """A heartbeat's changed inventory: probe, its error (cut), the GPUs, all bounded, and the
    podman preflight's problems (cut)."""
    check_inventory(inventory)
    gpus = gpus_from_proto(inventory)
    return (inventory.probe, limits.message(inventory.probe_error), gpus,
            preflight_from_proto(inventory))  # fmt: skip


def _gpu(gpu: types_pb2.Gpu) -> GpuRecord:
    where = _where(gpu.index)
    static: dict[str, Any] = {name: limits.text(
        f"{where} {name}", getattr(gpu, name), limits.CHARS[name]) for name in (
        "uuid", "name", "compute_capability", "gfx_target", "pci_bus_id", "driver_version",
    )}  # fmt: skip
    if gpu.HasField("power_limit_w"):
        static["power_limit_w"] = limits.real(
            f"{where} power_limit_w", gpu.power_limit_w, 0.0, limits.MAX_POWER_W
        )
    total = limits.integer(f"{where} memory_total_mb", gpu.memory_total_mb, MAX_MEMORY_MB)
    return GpuRecord(
        index=gpu.index,
        state=STATES.get(gpu.state, "ok"),
        memory_used_mb=gpu.memory_used_mb,
        processes=_processes(where, gpu),
        vendor=VENDORS.get(gpu.vendor, ""),
        memory_total_mb=total,
        **_telemetry(where, gpu),
        **static,
    )


gpu_from_proto = _bounded("GPU refused")(_gpu)


@_bounded("heartbeat refused")
def telemetry_from_proto(sample: types_pb2.GpuTelemetry) -> GpuTelemetryRecord:
    where = _where(sample.index)
    return GpuTelemetryRecord(
        index=sample.index,
        state=STATES.get(sample.state, "ok"),
        memory_used_mb=sample.memory_used_mb,
        processes=_processes(where, sample),
        **_telemetry(where, sample),
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
        preflight=list(node.preflight or []),
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
