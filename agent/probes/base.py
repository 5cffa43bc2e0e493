"""The GPU probe interface. Probes are synchronous (NVML and sysfs calls block); the agent
calls them on a worker thread."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Protocol

VENDORS = ("nvidia", "amd", "other")
OK, LOST = "ok", "lost"


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_memory_mb: int
    # The process runs in a container of a compose project this agent started (set by the
    # agent, agent/managed.py; probes report False).
    managed: bool = False


@dataclass(frozen=True)
class GpuInfo:
    """One GPU. None means the GPU or driver does not report that field (shown as n/a)."""

    index: int
    uuid: str
    name: str
    vendor: str
    memory_total_mb: int
    memory_used_mb: int
    compute_capability: str = ""
    state: str = OK
    memory_free_mb: int | None = None
    utilization_percent: int | None = None
    temperature_c: float | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    gfx_target: str = ""
    pci_bus_id: str = ""
    driver_version: str = ""
    processes: tuple[GpuProcess, ...] = ()

    def static(self) -> tuple[object, ...]:
        """The fields that do not change while the GPU runs: a change is re-sent as inventory."""
        return tuple(getattr(self, name) for name in STATIC_FIELDS)


STATIC_FIELDS = (
    "index", "uuid", "name", "vendor", "memory_total_mb", "compute_capability",
    "power_limit_w", "gfx_target", "pci_bus_id", "driver_version",
)  # fmt: skip
assert set(STATIC_FIELDS) <= {f.name for f in fields(GpuInfo)}


@dataclass(frozen=True)
class ProbeResult:
    """What a probe saw. `error` says why there are no GPUs when the probe could not run."""

    probe: str
    gpus: tuple[GpuInfo, ...] = ()
    error: str = ""

    def static(self) -> tuple[object, ...]:
        return (self.probe, self.error, tuple(gpu.static() for gpu in self.gpus))


class GpuProbe(Protocol):
    @property
    def name(self) -> str: ...

    def inventory(self) -> ProbeResult: ...


@dataclass
class NoProbe:
    """For hosts without GPUs, or where the operator wants none reported."""

    name: str = field(default="none", init=False)
    reason: str = ""

    def inventory(self) -> ProbeResult:
        return ProbeResult(self.name, error=self.reason)
