"""GPU probes behind one interface (GpuProbe): nvml, amd, static inventory file, none."""

from __future__ import annotations

from pathlib import Path

from agent.probes.amd import AmdProbe
from agent.probes.auto import AutoProbe
from agent.probes.base import GpuInfo, GpuProbe, GpuProcess, NoProbe, ProbeResult
from agent.probes.nvml import NvmlProbe
from agent.probes.static import InventoryError, StaticProbe, load_inventory

__all__ = [
    "PROBES",
    "GpuInfo",
    "GpuProbe",
    "GpuProcess",
    "InventoryError",
    "NoProbe",
    "ProbeResult",
    "StaticProbe",
    "load_inventory",
    "make_probe",
]

PROBES = ("auto", "nvml", "amd", "static", "none")


def make_probe(
    kind: str = "auto", inventory: Path | None = None, sysfs: Path = Path("/sys")
) -> GpuProbe:
    """The probe `--gpu-probe` names. `auto` with an inventory file means static."""
    if kind not in PROBES:
        raise ValueError(f"unknown GPU probe {kind!r}: choose one of {', '.join(PROBES)}")
    if kind == "static" or (kind == "auto" and inventory is not None):
        if inventory is None:
            raise ValueError("--gpu-probe static needs --inventory FILE")
        load_inventory(inventory)  # a broken file stops the agent at start, with the reason
        return StaticProbe(inventory)
    if kind == "nvml":
        return NvmlProbe()
    if kind == "amd":
        return AmdProbe(sysfs)
    if kind == "none":
        return NoProbe()
    return AutoProbe((NvmlProbe(), AmdProbe(sysfs)))
