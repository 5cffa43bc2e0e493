"""The GPU probe interface. Probes are synchronous (NVML and sysfs calls block); the agent
calls them on a worker thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

VENDORS = ("nvidia", "amd", "other")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    name: str
    vendor: str
    memory_total_mb: int
    memory_used_mb: int
    compute_capability: str = ""


@dataclass(frozen=True)
class ProbeResult:
    """What a probe saw. `error` says why there are no GPUs when the probe could not run."""

    probe: str
    gpus: tuple[GpuInfo, ...] = ()
    error: str = ""


class GpuProbe(Protocol):
    name: str

    def inventory(self) -> ProbeResult: ...


@dataclass
class NoProbe:
    """For hosts without GPUs, or where the operator wants none reported."""

    name: str = field(default="none", init=False)

    def inventory(self) -> ProbeResult:
        return ProbeResult(self.name)
