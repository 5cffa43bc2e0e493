"""GPUs on the wire, for the agent (which reports them), the hub (which stores and serves
them) and hubctl (which shows them): the enum words and one converter per message."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from gpufleet.v1 import types_pb2

VENDORS = {
    types_pb2.GPU_VENDOR_NVIDIA: "nvidia",
    types_pb2.GPU_VENDOR_AMD: "amd",
    types_pb2.GPU_VENDOR_OTHER: "other",
}
VENDOR_CODES = {name: code for code, name in VENDORS.items()}
STATES = {types_pb2.GPU_STATE_OK: "ok", types_pb2.GPU_STATE_LOST: "lost"}
STATE_CODES = {name: code for code, name in STATES.items()}
# Unset on the wire where the GPU does not report them (shown as n/a).
TELEMETRY_OPTIONAL = ("memory_free_mb", "utilization_percent", "temperature_c", "power_draw_w")
STATIC_OPTIONAL = ("power_limit_w",)


class Telemetry(Protocol):
    """What a heartbeat says of a GPU: the agent's GpuInfo and the hub's row both have it."""

    @property
    def index(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def memory_used_mb(self) -> int: ...
    @property
    def memory_free_mb(self) -> int | None: ...
    @property
    def utilization_percent(self) -> int | None: ...
    @property
    def temperature_c(self) -> float | None: ...
    @property
    def power_draw_w(self) -> float | None: ...
    @property
    def processes(self) -> Iterable[Any]: ...


class Gpu(Telemetry, Protocol):
    @property
    def uuid(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def vendor(self) -> str: ...
    @property
    def memory_total_mb(self) -> int: ...
    @property
    def compute_capability(self) -> str: ...
    @property
    def power_limit_w(self) -> float | None: ...
    @property
    def gfx_target(self) -> str: ...
    @property
    def pci_bus_id(self) -> str: ...
    @property
    def driver_version(self) -> str: ...


def _reported(gpu: object, names: tuple[str, ...]) -> dict[str, Any]:
    found = {}
    for name in names:
        if (value := getattr(gpu, name)) is not None:
            found[name] = value
    return found


def processes_to_proto(processes: Iterable[Any]) -> list[types_pb2.GpuProcess]:
    """[pid, MiB, managed 1|0] rows (the hub's; old rows have no third value: not managed), or
    objects with pid, used_memory_mb and managed (the agent's probe results)."""
    found = []
    for p in processes:
        if hasattr(p, "pid"):
            pid, used, managed = p.pid, p.used_memory_mb, getattr(p, "managed", False)
        else:
            pid, used, managed = p[0], p[1], len(p) > 2 and bool(p[2])
        found.append(types_pb2.GpuProcess(pid=pid, used_memory_mb=used, managed=managed))
    return found


def gpu_to_proto(gpu: Gpu) -> types_pb2.Gpu:
    return types_pb2.Gpu(**gpu_fields(gpu))


def gpu_fields(gpu: Gpu) -> dict[str, Any]:
    """A types_pb2.Gpu's fields, as keyword arguments: a message that holds a GPU takes them
    as the dict itself (`NodeGpu(gpu=gpu_fields(g))`), half the cost of a Gpu message copied
    into it."""
    return dict(
        index=gpu.index,
        uuid=gpu.uuid,
        name=gpu.name,
        vendor=VENDOR_CODES.get(gpu.vendor, types_pb2.GPU_VENDOR_UNSPECIFIED),
        memory_total_mb=gpu.memory_total_mb,
        memory_used_mb=gpu.memory_used_mb,
        compute_capability=gpu.compute_capability,
        state=STATE_CODES.get(gpu.state, types_pb2.GPU_STATE_UNSPECIFIED),
        gfx_target=gpu.gfx_target,
        pci_bus_id=gpu.pci_bus_id,
        driver_version=gpu.driver_version,
        processes=processes_to_proto(gpu.processes),
        **_reported(gpu, (*TELEMETRY_OPTIONAL, *STATIC_OPTIONAL)),
    )


def telemetry_to_proto(gpu: Telemetry) -> types_pb2.GpuTelemetry:
    return types_pb2.GpuTelemetry(
        index=gpu.index,
        state=STATE_CODES.get(gpu.state, types_pb2.GPU_STATE_UNSPECIFIED),
        memory_used_mb=gpu.memory_used_mb,
        processes=processes_to_proto(gpu.processes),
        **_reported(gpu, TELEMETRY_OPTIONAL),
    )
