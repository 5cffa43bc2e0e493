"""The static probe: GPUs listed in an inventory file, for tests and hosts where detection
is not possible.

    gpus:
      - index: 0
        uuid: GPU-5f2c...
        name: NVIDIA RTX A5500
        vendor: nvidia
        memory_total_mb: 24564
        memory_used_mb: 19304
        compute_capability: "8.6"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.probes.base import VENDORS, GpuInfo, ProbeResult

REQUIRED = ("index", "uuid", "name", "vendor", "memory_total_mb")


class InventoryError(ValueError):
    pass


def _int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InventoryError(f"{where}: {key} must be a whole number >= 0, got {value!r}")
    return value


def _gpu(where: str, entry: Any) -> GpuInfo:
    if not isinstance(entry, dict):
        raise InventoryError(f"{where}: expected a mapping with {', '.join(REQUIRED)}")
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        raise InventoryError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(set(entry) - {*REQUIRED, "memory_used_mb", "compute_capability"})
    if unknown:
        raise InventoryError(f"{where}: unknown field {', '.join(map(str, unknown))}")
    vendor = str(entry["vendor"]).lower()
    if vendor not in VENDORS:
        raise InventoryError(f"{where}: vendor must be one of {', '.join(VENDORS)}, got {vendor!r}")
    total = _int(where, "memory_total_mb", entry["memory_total_mb"])
    used = _int(where, "memory_used_mb", entry.get("memory_used_mb", 0))
    if used > total:
        raise InventoryError(f"{where}: memory_used_mb ({used}) exceeds memory_total_mb ({total})")
    return GpuInfo(
        index=_int(where, "index", entry["index"]),
        uuid=str(entry["uuid"]),
        name=str(entry["name"]),
        vendor=vendor,
        memory_total_mb=total,
        memory_used_mb=used,
        compute_capability=str(entry.get("compute_capability", "")),
    )


def load_inventory(path: Path) -> tuple[GpuInfo, ...]:
    """Parse and check an inventory file; InventoryError names the file, entry and field."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InventoryError(f"inventory {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"inventory {path}: invalid YAML ({exc})".replace("\n", " ")) from None
    if document is None:
        document = {"gpus": []}
    if not isinstance(document, dict) or not isinstance(document.get("gpus", []), list):
        raise InventoryError(f"inventory {path}: expected a mapping with a list under 'gpus'")
    entries = document.get("gpus", [])
    gpus = tuple(_gpu(f"inventory {path}: gpus[{i}]", entry) for i, entry in enumerate(entries))
    seen: set[int] = set()
    for gpu in gpus:
        if gpu.index in seen:
            raise InventoryError(f"inventory {path}: GPU index {gpu.index} is listed twice")
        seen.add(gpu.index)
    return gpus


@dataclass
class StaticProbe:
    path: Path
    name: str = field(default="static", init=False)

    def inventory(self) -> ProbeResult:
        """Re-read the file each time, so an edited inventory shows up on the next hello."""
        try:
            return ProbeResult(self.name, load_inventory(self.path))
        except InventoryError as exc:
            return ProbeResult(self.name, error=str(exc))
