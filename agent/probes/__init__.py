"""GPU probes behind one interface (GpuProbe): static inventory file, none."""

from __future__ import annotations

from pathlib import Path

from agent.probes.base import GpuInfo, GpuProbe, NoProbe, ProbeResult
from agent.probes.static import InventoryError, StaticProbe, load_inventory

__all__ = [
    "GpuInfo",
    "GpuProbe",
    "InventoryError",
    "NoProbe",
    "ProbeResult",
    "StaticProbe",
    "load_inventory",
    "make_probe",
]


def make_probe(inventory: Path | None) -> GpuProbe:
    """The static probe when an inventory file is given, checked now; otherwise none."""
    if inventory is None:
        return NoProbe()
    load_inventory(inventory)
    return StaticProbe(inventory)
