"""`--gpu-probe auto`: NVML first, then AMD sysfs; the first that works is kept."""

from __future__ import annotations

from dataclasses import dataclass

from agent.probes.base import GpuProbe, ProbeResult


@dataclass
class AutoProbe:
    candidates: tuple[GpuProbe, ...]
    chosen: GpuProbe | None = None

    @property
    def name(self) -> str:
        return self.chosen.name if self.chosen else "auto"

    def inventory(self) -> ProbeResult:
        if self.chosen is not None:
            return self.chosen.inventory()
        reasons = []
        for probe in self.candidates:
            result = probe.inventory()
            if not result.error:
                self.chosen = probe
                return result
            reasons.append(f"{probe.name}: {result.error}")
        return ProbeResult(self.name, error="; ".join(reasons))
